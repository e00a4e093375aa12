"""The server's dispatch table against the messages each role may send."""

import asyncio
import typing

import pytest

from routeflow.config.loader import parse_config
from routeflow.model import Fib, Interface, PortDesc, Route
from routeflow.protocol.messages import ACCEPTED, SENT_BY, SESSION, DatapathJoin, FibAudit, FibSnapshot, Role
from routeflow.server.peers import Peer
from routeflow.server.service import DISPATCH, RFServer

CONFIG = parse_config({"manage_vms": False, "vms": [
    {"name": "rA", "dpid": 1, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]}]})


class Writer:
    """A peer's end that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.transport = self

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def get_write_buffer_size(self) -> int:
        return 0


def test_every_role_of_the_protocol_has_its_messages_and_its_table():
    assert set(SENT_BY) == set(typing.get_args(Role)) == set(DISPATCH) == set(ACCEPTED)


@pytest.mark.parametrize("role", typing.get_args(Role))
def test_the_table_of_each_role_handles_exactly_what_it_may_send(role):
    """Total: every message the role may send has a handler; and no handler waits for a
    message the role is refused (the session's own the connection handles itself)."""
    assert set(DISPATCH[role]) == set(SENT_BY[role])
    assert set(ACCEPTED[role]) == set(SENT_BY[role]) | set(SESSION)
    assert not set(SENT_BY[role]) & set(SESSION)


def test_messages_reach_the_core_through_the_table_of_their_peers_role():
    async def scenario() -> None:
        server = RFServer(CONFIG)
        controller = Peer("controller", "ctl", Writer(), 1 << 30)
        server.controller = controller  # the active one: a controller standing by is not heard
        client = Peer("client", "rA", Writer(), 1 << 30)
        server._dispatch(controller, DatapathJoin(1, (PortDesc(1, "s1-eth1", "02:00:00:00:00:01", True),)))
        assert set(server.core.nib.datapaths[1].ports) == {1}
        iface = Interface("eth1", "02:00:00:00:00:0a", True, ("172.31.1.1/24",))
        # A snapshot in parts reaches the core once whole.
        server._dispatch(client, FibSnapshot(Fib((iface,), (Route("10.0.0.0/24"),)), more=True))
        assert not server.core.nib.vms["rA"].synced
        server._dispatch(client, FibSnapshot(Fib(routes=(Route("10.0.1.0/24"),))))
        assert server.core.nib.vms["rA"].synced
        assert set(server.core.nib.vms["rA"].routes) == {"10.0.0.0/24", "10.0.1.0/24"}
        server._dispatch(client, FibAudit(audits=1, repaired=0))
        assert server.core.nib.vms["rA"].audit == FibAudit(audits=1, repaired=0)

    asyncio.run(scenario())
