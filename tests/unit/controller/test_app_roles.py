"""The os-ken application with OpenFlow roles: what it sends a switch and the server as the
active controller, standing by, promoted, and demoted by the switch."""

from __future__ import annotations

import struct

import pytest
from os_ken.controller import ofp_event
from os_ken.controller.handler import MAIN_DISPATCHER
from os_ken.ofproto import ofproto_v1_3 as ofp

from routeflow.controller.app import RouteFlowController
from routeflow.controller.roles import OFPET_ROLE_REQUEST_FAILED, ONF_EXPERIMENTER_ID, ONFT_ROLE_STATUS, Role
from routeflow.controller.settings import ControllerSettings
from routeflow.model import Flow
from routeflow.protocol.messages import PROTOCOL_VERSION, ControllerRole, DatapathJoin, TableMod, Welcome

from .switches import FakeDatapath
from .test_app import S1, FakeLink, error_message, from_wire, join, port_desc_reply, state_change

TERM = 1_700_000_000_000


@pytest.fixture
def app():
    controller = RouteFlowController(settings=ControllerSettings("unix:/nonexistent", "test"))
    controller.link = FakeLink()
    yield controller
    with controller._lock:
        controller._stopping = True
        controller._wake.notify()


def role_requests(dp) -> list[tuple[int, int, int]]:
    """(xid, role, generation id) of every role request sent to ``dp``."""
    out = []
    for _, xid, raw in dp.of_type(ofp.OFPT_ROLE_REQUEST):
        role, generation = struct.unpack_from("!I4xQ", raw, 8)
        out.append((xid, role, generation))
    return out


def role_status(role: Role, generation: int) -> bytes:
    body = struct.pack("!IB3xQ", role, 0, generation)
    return struct.pack("!BBHIII", ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, 16 + len(body), 0,
                       ONF_EXPERIMENTER_ID, ONFT_ROLE_STATUS) + body


def test_standing_by_it_asks_for_slave_and_tells_the_server_nothing(app):
    app._on_server_connect(Welcome(PROTOCOL_VERSION, controller_active=False, term=TERM))
    dp = join(app, S1)
    # The role request goes first, before anything else the switch is sent.
    assert dp.messages()[0][0] == ofp.OFPT_ROLE_REQUEST
    assert [(role, gen) for _, role, gen in role_requests(dp)] == [(Role.SLAVE, TERM)]
    assert app.link.take() == []  # no join reported
    app.apply_table_mod(TableMod(S1, add=(Flow(0, 1, ()),)))
    assert dp.of_type(ofp.OFPT_FLOW_MOD) == []


def test_promoted_it_asks_for_master_in_the_new_term_and_reports_every_datapath(app):
    app._on_server_connect(Welcome(PROTOCOL_VERSION, controller_active=False, term=TERM))
    dp = join(app, S1)
    app._on_server_message(ControllerRole(True, TERM + 1))
    assert [(role, gen) for _, role, gen in role_requests(dp)] == [(Role.SLAVE, TERM), (Role.MASTER, TERM + 1)]
    assert [type(m) for m in app.link.take()] == [DatapathJoin]
    app.apply_table_mod(TableMod(S1, add=(Flow(0, 1, ()),)))
    assert len(dp.of_type(ofp.OFPT_FLOW_MOD)) == 1


def test_active_from_its_welcome_it_asks_a_switch_connecting_for_master(app):
    app._on_server_connect(Welcome(PROTOCOL_VERSION, controller_active=True, term=TERM))
    dp = FakeDatapath(S1)
    state_change(app, dp, MAIN_DISPATCHER)
    port_desc_reply(app, dp, [])
    assert [(role, gen) for _, role, gen in role_requests(dp)] == [(Role.MASTER, TERM)]
    assert [type(m) for m in app.link.take()] == [DatapathJoin]


def test_demoted_by_the_switch_it_stops_writing_to_it(app):
    app._on_server_connect(Welcome(PROTOCOL_VERSION, controller_active=True, term=TERM))
    dp = join(app, S1)
    app.link.take()
    msg = from_wire(dp, role_status(Role.SLAVE, TERM + 1))  # through the parser guards
    assert msg is not None
    app._experimenter(ofp_event.EventOFPExperimenter(msg))
    assert not app.roles.may_write(S1) and app.roles.role_of(S1) == "slave"
    app.apply_table_mod(TableMod(S1, add=(Flow(0, 1, ()),)))
    assert dp.of_type(ofp.OFPT_FLOW_MOD) == []


def test_a_stale_refusal_is_the_roles_business_not_a_switch_error(app):
    app._on_server_connect(Welcome(PROTOCOL_VERSION, controller_active=True, term=TERM))
    dp = join(app, S1)
    app.link.take()
    ((xid, _, _),) = role_requests(dp)
    msg = from_wire(dp, error_message(OFPET_ROLE_REQUEST_FAILED, 0, xid=xid))
    app._error(ofp_event.EventOFPErrorMsg(msg))
    assert app.link.take() == []
    assert not app.roles.may_write(S1)


def test_other_experimenter_messages_are_still_dropped_unparsed(app):
    dp = join(app, S1)
    other = struct.pack("!BBHIII", ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, 32, 0, ONF_EXPERIMENTER_ID, 1) + bytes(16)
    assert from_wire(dp, other) is None
    short = bytearray(role_status(Role.SLAVE, 1)[:-1])
    struct.pack_into("!H", short, 2, len(short))
    assert from_wire(dp, bytes(short)) is None  # not a role status's size
