"""The RF-Client daemon: runs inside a virtual router next to its routing engine.

It streams the kernel FIB to the RF-Server (a full snapshot on every connect,
then deltas), announces each NIC with mapping packets until the server says
where that NIC is plugged, sets NICs up or down when the switch port they
mirror changes, and answers snapshot requests with a fresh Netlink dump.
Routing-engine agnostic: whatever writes the Linux FIB is mirrored.

    python -m routeflow.client --vm rA --server unix:/run/routeflow/server.sock
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol

from pyroute2 import AsyncIPRoute

from routeflow.client import AUDIT_INTERVAL, add_audit_option, add_keys_option
from routeflow.client.watcher import Update, Watcher, fresh_fib
from routeflow.model import Fib
from routeflow.protocol import auth, mapping
from routeflow.protocol.codec import ProtocolError
from routeflow.protocol.messages import (
    FibDelta,
    FibSnapshot,
    Goodbye,
    LinkState,
    Message,
    PortMapped,
    ResolveNextHops,
    SnapshotRequest,
    delta_parts,
    snapshot_parts,
)
from routeflow.protocol.transport import (
    DEFAULT_SERVER,
    Address,
    AsyncSession,
    Credential,
    load_credential,
    parse_addresses,
)

log = logging.getLogger("routeflow.client")

#: Seconds between mapping packets for a NIC the server has not mapped yet.
MAPPING_INTERVAL = 1.0
#: Reconnect back-off, doubling from BACKOFF_MIN. Capped at a second: a restarted
#: server (kill -9, or SIGUSR1, and started again) has every client back within a
#: second of its return, which leaves its flows verified within two; a retry per
#: second is one failed connect on a socket that is not there, costing nothing.
BACKOFF_MIN = 0.2
BACKOFF_MAX = 1.0
#: Seconds to wait for the server's answer to our hello.
HANDSHAKE_TIMEOUT = 10.0


class FibSource(Protocol):
    """Where the agent's FIB comes from (:class:`~routeflow.client.watcher.Watcher`)."""

    def updates(self) -> AsyncIterator[Update]: ...

    def fib(self) -> Fib: ...

    def nics(self) -> dict[str, str]: ...


class Host(Protocol):
    """What the agent does to the virtual router itself (:class:`LinuxHost`)."""

    async def fresh_fib(self) -> Fib: ...

    async def set_link_state(self, ifname: str, up: bool) -> None: ...

    def send_frame(self, ifname: str, frame: bytes) -> None: ...

    def solicit(self, ifname: str, address: str) -> None: ...


#: UDP port the resolution probes go to (discard): whatever answers, the kernel
#: has to resolve the next hop's MAC address first, which is the point.
DISCARD_PORT = 9


class LinuxHost:
    """The Linux virtual router the agent runs in (needs CAP_NET_ADMIN and CAP_NET_RAW)."""

    def __init__(self) -> None:
        self._packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self._packet.setblocking(False)

    async def fresh_fib(self) -> Fib:
        return await fresh_fib()

    async def set_link_state(self, ifname: str, up: bool) -> None:
        """Set an interface administratively up or down (as ``ip link set``)."""
        state = "up" if up else "down"
        try:
            async with AsyncIPRoute() as ipr:
                indexes = await ipr.link_lookup(ifname=ifname)
                if not indexes:
                    log.warning("cannot set unknown interface %s %s", ifname, state)
                    return
                await ipr.link("set", index=indexes[0], state=state)
        except OSError as exc:
            log.error("cannot set %s %s: %s", ifname, state, exc)
            return
        log.info("%s set %s", ifname, state)

    def send_frame(self, ifname: str, frame: bytes) -> None:
        try:
            self._packet.sendto(frame, (ifname, 0))
        except OSError as exc:  # e.g. the NIC is down or just went away
            log.debug("cannot send a frame out of %s: %s", ifname, exc)

    def solicit(self, ifname: str, address: str) -> None:
        """Make the kernel resolve ``address`` on ``ifname`` (ARP or ND), as traffic
        towards it would: one empty UDP datagram, sent out of that interface."""
        try:
            info = socket.getaddrinfo(address, DISCARD_PORT, type=socket.SOCK_DGRAM,
                                      flags=socket.AI_NUMERICHOST)[0]
            with socket.socket(info[0], socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
                sock.setblocking(False)
                destination = info[4]
                if info[0] == socket.AF_INET6:  # a link-local next hop needs its interface
                    destination = (address, DISCARD_PORT, 0, socket.if_nametoindex(ifname))
                sock.sendto(b"", destination)
        except OSError as exc:  # no route (NIC down), unknown NIC, unreachable...
            log.debug("cannot solicit %s on %s: %s", address, ifname, exc)

    def close(self) -> None:
        self._packet.close()


class Agent:
    """One RF-Client: a FIB source, the virtual router, and the session to the RF-Server."""

    def __init__(self, vm: str, server: Address | Sequence[Address], watcher: FibSource, host: Host,
                 credential: Credential) -> None:
        self.vm = vm
        #: The server's addresses, tried in turn: a pair's active server is the one listening.
        self.servers: tuple[Address, ...] = (server,) if isinstance(server, Address) else tuple(server)
        self.server = self.servers[0]
        #: The key or certificate of this VM's client, which the server knows it by.
        self.credential = credential
        self.watcher = watcher
        self.host = host
        #: The session once its snapshot is on the way: deltas go there.
        self._session: AsyncSession | None = None
        self._mapped: set[str] = set()
        self._wake_mapper = asyncio.Event()
        self._fib_ready = asyncio.Event()

    async def run(self) -> None:
        """Run until cancelled; raises only on errors it cannot recover from."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._pump(), name="fib-pump")
            tasks.create_task(self._connect_forever(), name="session")
            tasks.create_task(self._announce_ports(), name="mapping")

    # -- FIB ---------------------------------------------------------------------------

    async def _pump(self) -> None:
        """Forward watcher updates to the synchronised session, if any.

        No await sits between the watcher producing an update and writing it,
        so the wire order is the order of the watcher's state: a snapshot
        taken from :meth:`Watcher.fib` is always followed by exactly the
        deltas that came after it."""
        async for update in self.watcher.updates():
            if isinstance(update, FibSnapshot):
                self._fib_ready.set()
            elif isinstance(update, FibDelta) and update.interfaces_set:
                self._wake_mapper.set()  # maybe a new NIC to announce
            session = self._session
            if session is not None:
                if isinstance(update, FibSnapshot):
                    await self._send(session, *snapshot_parts(update.fib, 0))
                elif isinstance(update, FibDelta):
                    await self._send(session, *delta_parts(update))
                else:
                    await self._send(session, update)

    async def _send(self, session: AsyncSession, *msgs: Message) -> None:
        try:
            await session.send(*msgs)
        except OSError as exc:
            # The session's receive loop sees the same failure and reconnects.
            log.debug("could not send %s: %s", type(msgs[0]).__name__, exc)

    # -- session -----------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        await self._fib_ready.wait()  # a server must never see a half-read FIB
        delay = BACKOFF_MIN
        while True:
            try:
                session = await self._open()
            except (OSError, ProtocolError) as exc:
                log.info("cannot reach the server at %s (%s); retrying in %.1f s",
                         ",".join(map(str, self.servers)), exc, delay)
            else:
                started = time.monotonic()
                await self._serve(session)
                if time.monotonic() - started >= BACKOFF_MAX:
                    delay = BACKOFF_MIN  # a session that lasted resets the back-off
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _open(self) -> AsyncSession:
        """A session with the first of the server's addresses that answers."""
        for address in self.servers:
            try:
                opening = AsyncSession.open(address, "client", self.vm, self.credential)
                session = await asyncio.wait_for(opening, HANDSHAKE_TIMEOUT)
            except OSError:
                if address == self.servers[-1]:
                    raise
                continue
            self.server = address
            return session
        raise AssertionError("no server address")

    async def _serve(self, session: AsyncSession) -> None:
        """Synchronise a new session and handle what the server sends until it ends."""
        log.info("connected to %s as VM %r", self.server, self.vm)
        self._mapped.clear()
        replies: set[asyncio.Task[None]] = set()
        # Set before the snapshot is written so that no delta produced meanwhile is skipped.
        self._session = session
        try:
            # In parts, as any FIB travels; written at once, so no delta comes between them.
            await session.send(*snapshot_parts(self.watcher.fib(), 0))
            self._wake_mapper.set()
            while True:
                msg = await session.receive()
                if isinstance(msg, PortMapped):
                    log.info("%s is datapath %#x port %d", msg.ifname, msg.dpid, msg.port)
                    self._mapped.add(msg.ifname)
                elif isinstance(msg, LinkState):
                    await self.host.set_link_state(msg.ifname, msg.up)
                elif isinstance(msg, ResolveNextHops):
                    log.debug("resolving %d next hops", len(msg.hops))
                    for ifname, gateway in msg.hops:
                        self.host.solicit(ifname, gateway)
                elif isinstance(msg, SnapshotRequest):
                    task = asyncio.create_task(self._answer_snapshot(session, msg.request_id))
                    replies.add(task)
                    task.add_done_callback(replies.discard)
                elif isinstance(msg, Goodbye):
                    log.warning("the server closed the session: %s", msg.reason)
                    return
                else:
                    raise ProtocolError(f"unexpected {type(msg).__name__} from the server")
        except ProtocolError as exc:
            log.error("protocol error: %s", exc)
            await self._send(session, Goodbye(f"protocol error: {exc}"))
        except asyncio.CancelledError:  # shutting down
            await self._send(session, Goodbye("client shutting down"))
            raise
        except OSError as exc:
            log.warning("lost the server: %s", exc)
        finally:
            if self._session is session:
                self._session = None
            for task in replies:
                task.cancel()
            await session.close()

    async def _answer_snapshot(self, session: AsyncSession, request_id: int) -> None:
        # Read from the kernel, not from memory: this is what verification trusts.
        await self._send(session, *snapshot_parts(await self.host.fresh_fib(), request_id))

    # -- port identification ---------------------------------------------------------

    async def _announce_ports(self) -> None:
        """Send a mapping packet out of every unmapped NIC each second while connected."""
        while True:
            if self._session is not None:
                for ifname, mac in self.watcher.nics().items():
                    if ifname not in self._mapped:
                        self.host.send_frame(ifname, mapping.encode(self.vm, ifname, mac))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_mapper.wait(), MAPPING_INTERVAL)
            self._wake_mapper.clear()


async def run(vm: str, server: str, audit_interval: float | None = AUDIT_INTERVAL, keys: Path = auth.KEY_DIR) -> None:
    """Run the RF-Client for VM ``vm`` against ``server`` (``unix:PATH``,
    ``tcp:HOST:PORT`` or ``tls:HOST:PORT``) until SIGTERM or SIGINT, then return.
    The FIB is audited against the kernel every ``audit_interval`` seconds at
    least (None: never). The VM's key (or TLS credential) is read from ``keys``
    at once: without it no server would take us."""
    addresses = parse_addresses(server)
    credential = load_credential(addresses[0], keys, "client", vm)  # one kind of proof for all (parse_addresses)
    host = LinuxHost()
    agent = Agent(vm, addresses, Watcher(audit_interval=audit_interval), host, credential)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    main = asyncio.create_task(agent.run(), name="agent")
    stopper = asyncio.create_task(stop.wait(), name="stop")
    try:
        await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if main.done():
            main.result()  # a crash: re-raise it
        log.info("stopping")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        for task in (main, stopper):
            task.cancel()
        await asyncio.gather(main, stopper, return_exceptions=True)
        host.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``routeflow client --vm NAME [--server ADDR]``: run the RF-Client."""
    parser = argparse.ArgumentParser(
        prog="routeflow client", description="Mirror this virtual router's FIB to the RF-Server."
    )
    parser.add_argument(
        "--vm", required=True, help="name of this virtual router, as configured on the server"
    )
    parser.add_argument(
        "--server", default=DEFAULT_SERVER, help="unix:PATH, tcp:HOST:PORT or tls:HOST:PORT (default %(default)s)"
    )
    add_audit_option(parser)
    add_keys_option(parser)
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        parse_addresses(args.server)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(run(args.vm, args.server, args.audit_interval or None, args.keys))
    except auth.AuthError as exc:
        parser.exit(2, f"routeflow client: {exc}\n")
    return 0
