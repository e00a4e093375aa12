"""The controller's role state machine: the server's word in, role requests out."""

from __future__ import annotations

import itertools
import struct

import pytest

from routeflow.controller.roles import OFPRRFC_STALE, Role, RoleRequest, Roles, decode_role_status

S1, S2 = 0x1, 0x2
TERM = 1_700_000_000_000


@pytest.fixture
def roles() -> Roles:
    return Roles(itertools.count(100).__next__)


def test_until_the_server_says_it_stands_by_and_asks_for_no_role(roles):
    assert roles.connected(S1) == []
    assert not roles.active and not roles.may_write(S1)


def test_a_server_without_elections_leaves_the_switches_equal_and_the_controller_writing(roles):
    roles.connected(S1)
    assert roles.assign(True, 0) == []
    assert roles.may_write(S1)
    assert roles.role_of(S1) == ""  # no role asked, none told


def test_active_asks_every_switch_for_master_with_the_term_as_generation_id(roles):
    roles.connected(S1)
    roles.connected(S2)
    assert roles.assign(True, TERM) == [RoleRequest(S1, Role.MASTER, TERM, 100), RoleRequest(S2, Role.MASTER, TERM, 101)]
    # The request goes ahead of any write on the same connection: writing need not wait for the reply.
    assert roles.may_write(S1) and roles.may_write(S2)
    roles.reply(S1, 100, Role.MASTER, TERM)
    assert roles.role_of(S1) == "master"


def test_standing_by_asks_for_slave_and_writes_nothing(roles):
    roles.connected(S1)
    assert roles.assign(False, TERM) == [RoleRequest(S1, Role.SLAVE, TERM, 100)]
    assert not roles.may_write(S1)
    roles.reply(S1, 100, Role.SLAVE, TERM)
    assert roles.role_of(S1) == "slave"


def test_a_switch_connecting_later_is_asked_for_the_role_of_the_current_term(roles):
    roles.assign(True, TERM)
    assert roles.connected(S1) == [RoleRequest(S1, Role.MASTER, TERM, 100)]
    roles.disconnected(S1)
    assert not roles.may_write(S1)  # not connected
    assert roles.connected(S1) == [RoleRequest(S1, Role.MASTER, TERM, 101)]


def test_promotion_asks_for_master_in_the_new_term(roles):
    roles.connected(S1)
    roles.assign(False, TERM)
    roles.reply(S1, 100, Role.SLAVE, TERM)
    assert roles.assign(True, TERM + 1) == [RoleRequest(S1, Role.MASTER, TERM + 1, 101)]
    assert roles.active and roles.may_write(S1)


def test_a_term_older_than_the_one_held_is_ignored(roles):
    roles.connected(S1)
    roles.assign(True, TERM + 1)
    assert roles.assign(False, TERM) == []
    assert roles.active and roles.term == TERM + 1 and roles.may_write(S1)


def test_a_stale_refusal_of_master_stops_writes_to_that_switch_until_the_next_term(roles):
    roles.connected(S1)
    roles.connected(S2)
    roles.assign(True, TERM)
    assert roles.refused(S1, 100, OFPRRFC_STALE)  # the switch has seen a newer election
    assert not roles.may_write(S1) and roles.may_write(S2)
    assert roles.assign(True, TERM + 5) == [RoleRequest(S1, Role.MASTER, TERM + 5, 102),
                                            RoleRequest(S2, Role.MASTER, TERM + 5, 103)]
    assert roles.may_write(S1)


def test_an_error_for_another_request_is_not_a_refusal(roles):
    roles.connected(S1)
    roles.assign(True, TERM)
    assert not roles.refused(S1, 99, OFPRRFC_STALE)
    assert not roles.refused(S2, 100, OFPRRFC_STALE)
    roles.reply(S1, 100, Role.MASTER, TERM)
    assert not roles.refused(S1, 100, OFPRRFC_STALE)  # answered already
    assert roles.may_write(S1)


def test_demoted_by_a_role_status_it_stops_writing_to_that_switch(roles):
    roles.connected(S1)
    roles.connected(S2)
    roles.assign(True, TERM)
    roles.status(S1, Role.SLAVE, TERM + 1)  # another controller asked to be master, newer
    assert not roles.may_write(S1) and roles.may_write(S2)
    assert roles.role_of(S1) == "slave"


def test_a_role_status_to_a_controller_standing_by_changes_nothing_it_does(roles):
    roles.connected(S1)
    roles.assign(False, TERM)
    roles.status(S1, Role.SLAVE, TERM)
    assert not roles.may_write(S1)
    roles.status(S2, Role.SLAVE, TERM)  # not connected: ignored


def test_role_status_body_is_decoded():
    body = struct.pack("!IB3xQ", 3, 0, TERM)
    assert decode_role_status(body) == (Role.SLAVE, 0, TERM)
    assert decode_role_status(body[:-1]) is None
    assert decode_role_status(struct.pack("!IB3xQ", 9, 0, TERM)) is None
