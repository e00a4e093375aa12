"""Two controllers on one RF-Server: one elected active, the other standing by, promoted
when the active one goes (over a real socket, each proving the controller's key)."""

from __future__ import annotations

import asyncio

from routeflow.config.loader import parse_config
from routeflow.model import PortDesc
from routeflow.protocol import auth
from routeflow.protocol.messages import ControllerRole, DatapathJoin, DiscoveryPlan, DumpTable, Goodbye, Ping, RelayMap
from routeflow.protocol.transport import AsyncSession, Credential, parse_address
from routeflow.server.service import RFServer


def _config(address: str):
    return parse_config({"listen": [address], "manage_vms": False, "vms": [
        {"name": "rA", "dpid": 1, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]}]})


async def _next(session: AsyncSession, kind: type) -> object:
    """The next message of ``kind`` the session receives (pings are answered by the session)."""
    while True:
        msg = await asyncio.wait_for(session.receive(), 2)
        if isinstance(msg, kind):
            return msg
        assert not isinstance(msg, Goodbye), msg


async def _nothing_but_pings(session: AsyncSession, seconds: float) -> None:
    try:
        while True:
            msg = await asyncio.wait_for(session.receive(), seconds)
            assert isinstance(msg, Ping), msg
    except TimeoutError:
        pass


def test_the_first_controller_is_active_the_second_stands_by_and_takes_over(tmp_path):
    address = f"unix:{tmp_path}/rf.sock"
    keys = tmp_path / "keys"

    async def scenario() -> None:
        server = RFServer(_config(address), keys=keys)
        await server.start()
        key = Credential(key=auth.load_key(keys, "controller"))
        try:
            a = await AsyncSession.open(parse_address(address), "controller", "a", key)
            assert a.welcome.controller_active and a.welcome.term > 0
            await _next(a, RelayMap)
            b = await AsyncSession.open(parse_address(address), "controller", "b", key)
            assert not b.welcome.controller_active and b.welcome.term == a.welcome.term
            assert server.controller is not None and server.controller.name == "a"
            # A controller standing by is not heard: its reports reach nothing.
            await b.send(DatapathJoin(1, (PortDesc(1, "s1-eth1", "02:00:00:00:00:01", True),)))
            await _nothing_but_pings(b, 0.3)
            assert 1 not in server.core.nib.datapaths
            # The active one goes: b is elected in a newer term and given what an active one is.
            await a.close()
            role = await _next(b, ControllerRole)
            assert role == ControllerRole(True, role.term) and role.term > a.welcome.term
            await _next(b, RelayMap)
            await _next(b, DiscoveryPlan)
            await b.send(DatapathJoin(1, (PortDesc(1, "s1-eth1", "02:00:00:00:00:01", True),)))
            assert (await _next(b, DumpTable)).dpid == 1  # its table is read, to send only the difference
            # a comes back: it stands by, told the current term.
            a2 = await AsyncSession.open(parse_address(address), "controller", "a", key)
            assert not a2.welcome.controller_active and a2.welcome.term == role.term
            assert [(c.name, c is server.controller) for c in server.controllers] == [("b", True), ("a", False)]
            for session in (a2, b):
                await session.close()
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_a_controller_of_the_same_name_replaces_its_predecessor_in_its_place(tmp_path):
    """The active controller reconnecting (its old connection most likely dead) stays active,
    in a new term; one standing by reconnecting stays standing by."""
    address = f"unix:{tmp_path}/rf.sock"
    keys = tmp_path / "keys"

    async def scenario() -> None:
        server = RFServer(_config(address), keys=keys)
        await server.start()
        key = Credential(key=auth.load_key(keys, "controller"))
        try:
            a = await AsyncSession.open(parse_address(address), "controller", "a", key)
            b = await AsyncSession.open(parse_address(address), "controller", "b", key)
            a2 = await AsyncSession.open(parse_address(address), "controller", "a", key)
            assert a2.welcome.controller_active and a2.welcome.term > a.welcome.term
            role = await _next(b, ControllerRole)  # told of the new term, still standing by
            assert role == ControllerRole(False, a2.welcome.term)
            b2 = await AsyncSession.open(parse_address(address), "controller", "b", key)
            assert not b2.welcome.controller_active and b2.welcome.term == a2.welcome.term
            assert [c.name for c in server.controllers] == ["a", "b"] and server.controller.name == "a"
            for session in (a, b, a2, b2):
                await session.close()
        finally:
            await server.stop()

    asyncio.run(scenario())
