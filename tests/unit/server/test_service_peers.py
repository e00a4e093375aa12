"""The RF-Server service in one process, its peers on Unix sockets: a controller in
front of fake switches, rA's client and an operator. What is checked is where the
switches send packets and what status and verify tell the operator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable

from tests.datapath import CONNECTED, IFACES, NEIGHBOURS, VM, ip_packet, ports
from tests.fakeswitch import FakeSwitch
from tests.waiting import until

from routeflow.config.loader import parse_config
from routeflow.model import Fib, NextHop, PortDesc, Route
from routeflow.protocol.messages import (
    ControllerStats,
    DatapathJoin,
    DumpTable,
    FibSnapshot,
    Message,
    SnapshotRequest,
    StatsRequest,
    StatusRequest,
    TableDump,
    TableMod,
    VerifyReply,
    VerifyRequest,
)
from routeflow.protocol.transport import AsyncSession, load_credential, parse_address
from routeflow.server.service import RFServer

REMOTE = Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.2"), NextHop("eth3", "10.0.3.2")), proto="ospf")
FIB = Fib(IFACES, CONNECTED + (REMOTE,), NEIGHBOURS)
TO_REMOTE = ip_packet("172.31.4.7")
#: How long a step may take before the test gives up on it.
STEP = 5.0


class Peers:
    """The server's peers, each answering what the server asks; every message any of
    them handles wakes whoever waits on :meth:`until`."""

    def __init__(self, server: RFServer, address: str, keys: Path) -> None:
        self.server, self.address, self.keys = server, address, keys
        self.rfvs = server.config.rfvs.dpid
        self.switches = {VM.dpid: FakeSwitch(VM.dpid, ports()),
                         self.rfvs: FakeSwitch(self.rfvs, {7: PortDesc(7, "rA-eth1", "aa:00:00:00:01:07", True)})}
        #: What rA's kernel holds: what its client reports, and answers a verify with.
        self.fib = FIB
        self.changed = asyncio.Condition()
        self.tasks: list[asyncio.Task[None]] = []
        self.sessions: dict[str, AsyncSession] = {}

    async def open(self, role: str, name: str, answer: Callable[[AsyncSession, Any], Awaitable[None]]) -> AsyncSession:
        credential = load_credential(parse_address(self.address), self.keys, role, name)
        session = await AsyncSession.open(parse_address(self.address), role, name, credential)  # type: ignore[arg-type]
        self.sessions[role] = session

        async def serve() -> None:
            while True:
                try:
                    msg = await session.receive()
                except ConnectionError:
                    return
                await answer(session, msg)
                async with self.changed:
                    self.changed.notify_all()

        self.tasks.append(asyncio.create_task(serve()))
        return session

    async def controller(self, session: AsyncSession, msg: Message) -> None:
        if isinstance(msg, TableMod):
            self.switches[msg.dpid].apply(msg)
        elif isinstance(msg, DumpTable):
            # In two parts, as a large table comes.
            whole = self.switches[msg.dpid].dump(msg.request_id)
            half = len(whole.flows) // 2
            await session.send(TableDump(msg.request_id, msg.dpid, whole.flows[:half], (), more=True),
                               TableDump(msg.request_id, msg.dpid, whole.flows[half:], whole.groups))
        elif isinstance(msg, StatsRequest):
            await session.send(ControllerStats(msg.request_id, {VM.dpid: 3}, {}, {VM.dpid: {"arp": 3}}))

    async def client(self, session: AsyncSession, msg: Message) -> None:
        if isinstance(msg, SnapshotRequest):
            await session.send(FibSnapshot(Fib(self.fib.interfaces), msg.request_id, more=True),
                               FibSnapshot(Fib(routes=self.fib.routes, neighbours=self.fib.neighbours),
                                           msg.request_id))

    async def connect(self) -> None:
        controller = await self.open("controller", "ctl", self.controller)
        await controller.send(*(DatapathJoin(s.dpid, tuple(s.ports.values())) for s in self.switches.values()))
        client = await self.open("client", "rA", self.client)
        await client.send(FibSnapshot(self.fib))

    async def until(self, condition: Callable[[], object]) -> None:
        """Wait until ``condition()`` holds, checked whenever a peer has handled a message."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(condition), STEP)

    async def ask(self, request: Message) -> Any:
        """An operator's request and the server's reply."""
        operator = await self.open("operator", "cli", _ignore)
        self.tasks.pop().cancel()  # its replies are read here
        await operator.send(request)
        reply = await asyncio.wait_for(operator.receive(), STEP)
        await operator.close()
        return reply

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for session in self.sessions.values():
            await session.close()


async def _ignore(session: AsyncSession, msg: Message) -> None:
    pass


def run(tmp_path: Path, scenario: Callable[[Peers], Awaitable[None]]) -> None:
    address = f"unix:{tmp_path}/rf.sock"
    config = parse_config({"listen": [address], "manage_vms": False, "vms": [{
        "name": "rA", "dpid": VM.dpid, "engine": "none",
        "interfaces": [{"name": i.name, "port": i.port, "addresses": list(i.addresses)} for i in VM.interfaces]}]})

    async def main() -> None:
        server = RFServer(config, keys=tmp_path / "keys")
        await server.start()
        peers = Peers(server, address, tmp_path / "keys")
        try:
            await peers.connect()
            await scenario(peers)
        finally:
            await peers.close()
            await server.stop()

    asyncio.run(main())


def test_the_switches_are_programmed_and_verify_finds_them_as_the_vm_says(tmp_path):
    async def scenario(peers: Peers) -> None:
        switch = peers.switches[VM.dpid]
        await peers.until(lambda: sorted(b[0]["port"] for b in switch.forward(TO_REMOTE).buckets) == [2, 3])
        # The RFVS relays what the VM sends to the controller (its NICs are not mapped yet).
        assert peers.switches[peers.rfvs].forward({"in_port": 7, "eth_type": 0x0800}).controller
        reply = await peers.ask(VerifyRequest(1))
        assert isinstance(reply, VerifyReply) and reply.ok, reply.differences
        assert reply.checked == {"datapaths": 2, "flows": len(switch.flows) + len(peers.switches[peers.rfvs].flows),
                                 "routes": len(FIB.routes)}
        status = (await peers.ask(StatusRequest(2, detail=False))).status
        (rA,) = status["vms"]
        assert status["controller_connected"] and rA["client_connected"] and rA["synced"]
        (dp,) = [d for d in status["datapaths"] if d["dpid"] == f"{VM.dpid:#x}"]
        assert dp["packet_in"] == {"arp": 3} and dp["flow_count"] == len(switch.flows)

    run(tmp_path, scenario)


def test_verify_names_a_flow_a_switch_lost_and_a_route_the_server_never_heard_of(tmp_path):
    async def scenario(peers: Peers) -> None:
        switch = peers.switches[VM.dpid]
        await peers.until(lambda: switch.forward(TO_REMOTE).buckets)
        # Someone deletes the route's flow behind the controller's back ...
        switch.apply(TableMod(VM.dpid, delete=(switch.forward(TO_REMOTE).entries[-1],)))
        assert switch.forward(TO_REMOTE).controller
        # ... and rA's kernel holds a route its client never reported.
        extra = Route("198.51.100.0/24", (NextHop("eth2", "10.0.2.2"),))
        peers.fib = Fib(FIB.interfaces, FIB.routes + (extra,), FIB.neighbours)
        reply = await peers.ask(VerifyRequest(1))
        assert not reply.ok
        assert [d for d in reply.differences if "missing flow" in d and "172.31.4.0/24" in d]
        assert [d for d in reply.differences if "server lacks route" in d and "198.51.100.0/24" in d]

    run(tmp_path, scenario)


def test_peers_going_away_show_in_status_and_verify(tmp_path):
    async def scenario(peers: Peers) -> None:
        switch = peers.switches[VM.dpid]
        await peers.until(lambda: switch.forward(TO_REMOTE).buckets)
        await peers.sessions.pop("client").close()
        await peers.sessions.pop("controller").close()

        # The server sees each end as it reads it.
        await until(lambda: peers.server.controller is None and "rA" not in peers.server.clients)
        status = (await peers.ask(StatusRequest(1))).status
        assert not status["controller_connected"] and not status["vms"][0]["client_connected"]
        reply = await peers.ask(VerifyRequest(2))
        assert not reply.ok and any("cannot read its FIB" in d for d in reply.differences)
        # The switch forwards on, headless.
        assert sorted(b[0]["port"] for b in switch.forward(TO_REMOTE).buckets) == [2, 3]

    run(tmp_path, scenario)
