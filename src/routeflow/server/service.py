"""The RF-Server process: asyncio I/O around :class:`~routeflow.server.core.ServerCore`.

Listens on Unix and TCP sockets for the controller, the VMs' clients and
operators; feeds each decoded message to the core and delivers what it
returns; coalesces flow programming so a burst of FIB changes becomes one
TableMod per datapath. Optionally owns the virtual environment (the VMs).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from routeflow.config.schema import Config, Limits
from routeflow.lograte import RateLimit
from routeflow.private import SHARED_DIR_MODE, private_dir
from routeflow.protocol import auth, codec, pki
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    ControllerRole,
    ControllerStats,
    DatapathJoin,
    DatapathLeave,
    FibAudit,
    FibDelta,
    FibSnapshot,
    Goodbye,
    Hello,
    LinkChange,
    MappingSeen,
    Message,
    Ping,
    Pong,
    PortChange,
    ReloadRequest,
    StatusRequest,
    SwitchError,
    TableDump,
    TableMod,
    VerifyRequest,
    Welcome,
)
from routeflow.protocol.transport import parse_address
from routeflow.server.core import ServerCore
from routeflow.server.core_vms import CONTROLLER, Out, VmChange
from routeflow.server.events import EventLog
from routeflow.server.handshake import AuthenticationFailed, Handshake
from routeflow.server.metrics import ServerMetrics
from routeflow.server.operations import Operations
from routeflow.server.peers import MAX_REQUESTS, FibParts, Peer
from routeflow.server.requests import PeerRequests
from routeflow.server.store import NibStore, NibWriter, changed_items
from routeflow.server.vmhost import DONE, VmWork

log = logging.getLogger("routeflow.server")
# Peers decide how often the server logs their refusal: a flood of them is summarised.
log.addFilter(RateLimit())
#: How often the server looks for next hops due for another resolution attempt.
RESOLVE_TICK = 0.5


class RFServer(Operations):
    """The RF-Server service: sockets, peers, request/reply plumbing."""

    def __init__(self, config: Config, limits: Limits | None = None, keys: Path = auth.KEY_DIR,
                 store: NibStore | None = None, config_path: Path | None = None) -> None:
        self.config = config
        #: What one peer may hold of the server: the config's unless given (tests).
        self.limits = limits or config.limits
        self.key_dir = keys
        #: Every peer's key by identity (:mod:`routeflow.protocol.auth`), read at start.
        self._keys: dict[str, bytes] = {}
        #: Peers that failed to prove who they said they were.
        self.auth_failures = 0
        self.core = ServerCore(config)
        #: The VM changes under way (VMs for switches that join, reloads), on the virtual
        #: environment once the server runs one (``vm_work.host``).
        self.vm_work = VmWork()
        #: The file ``config`` was read from, read again by a reload (None: it cannot be).
        self.config_path = config_path
        #: Whether a listener speaks TLS (a VM made at runtime then needs a certificate too).
        self.tls = False
        #: What happened, for the operator's API, and the Prometheus metrics.
        self.events = EventLog()
        self.metrics = ServerMetrics(self.core.nib)
        self._connections = 0
        #: Every peer past its handshake, for keepalives.
        self._peers: set[Peer] = set()
        self._keepalive: asyncio.Task[None] | None = None
        #: The active controller, every controller connected (the active one among them, the
        #: others standing by, first come first), and the term of the last election.
        self.controller: Peer | None = None
        self.controllers: list[Peer] = []
        self.term = 0
        self.clients: dict[str, Peer] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self.requests = PeerRequests()
        self._reload_lock = asyncio.Lock()
        self._reconcile_scheduled = False
        self._stopping = False
        self._ticker: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        #: Where the NIB is kept for a successor (a server pair's etcd), if anywhere.
        self.writer = NibWriter(store, self.core.nib) if store is not None else None
        #: Set when the store refused a write: another server is active (see election).
        self.deposed = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        if self.writer is not None:
            await self.writer.restore()  # before anyone is served: what the predecessor knew
        idents = ["controller", "operator", *(auth.identity("client", vm.name) for vm in self.config.vms)]
        self._keys = auth.ensure_keys(self.key_dir, idents)
        addresses = [parse_address(text) for text in self.config.listen]
        tls = None
        if any(address.kind == "tls" for address in addresses):
            made = pki.ensure(self.key_dir, [pki.SERVER, *idents])  # each VM's own, as it is configured
            if made:
                log.info("TLS credentials made in %s: %s", pki.tls_dir(self.key_dir), ", ".join(made))
            tls = pki.server_context(self.key_dir)
            self.tls = True
        for address in addresses:
            if address.kind == "unix":
                path = Path(address.host)
                private_dir(path.parent, mode=SHARED_DIR_MODE)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                # Created under a umask that leaves it the owner's alone, then said so
                # explicitly: no moment where another user could connect.
                old_umask = os.umask(0o177)
                try:
                    server = await asyncio.start_unix_server(self._serve, str(path), limit=1 << 20,
                                                             backlog=self.limits.max_connections)
                finally:
                    os.umask(old_umask)
                os.chmod(path, 0o600)
            else:
                server = await asyncio.start_server(
                    self._serve, address.host, address.port, limit=1 << 20, reuse_address=True,
                    backlog=self.limits.max_connections, ssl=tls if address.kind == "tls" else None,
                    ssl_handshake_timeout=self.limits.handshake_timeout if address.kind == "tls" else None)
            self._servers.append(server)
            log.info("listening on %s", address)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())
        if self.writer is not None:
            self._flusher = asyncio.get_running_loop().create_task(self.writer.run(self.deposed))

    def fence(self) -> None:
        """Stop serving at once (another server may be active): no listener, no peer."""
        for server in self._servers:
            server.close()
        for peer in list(self._peers):
            peer.writer.transport.abort()

    async def stop(self) -> None:
        self._stopping = True  # peers closed now are not replaced (no election on the way out)
        for task in (self._ticker, self._keepalive, self._flusher):
            if task is not None:
                task.cancel()
        for peer in [*self.controllers, *self.clients.values()]:
            peer.close("server shutting down")
        for server in self._servers:
            server.close()
            await server.wait_closed()
        for text in self.config.listen:
            address = parse_address(text)
            if address.kind == "unix":
                with contextlib.suppress(FileNotFoundError):
                    Path(address.host).unlink()

    # -- connections -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Until it has said hello a peer may send a hello and no more.
        conn = codec.Connection(codec.HELLO_MAX_FRAME)
        peer: Peer | None = None
        handshake = Handshake(self._keys.__getitem__, self._unknown, writer.get_extra_info("ssl_object") is not None,
                              writer.get_extra_info("peercert"))
        where = writer.get_extra_info("peername") or "unix socket"
        self._connections += 1
        try:
            if self._connections > self.limits.max_connections:
                raise codec.RemoteProtocolError(f"too many connections (at most {self.limits.max_connections})")
            deadline = asyncio.get_running_loop().time() + self.limits.handshake_timeout
            while True:
                if peer is None:
                    try:
                        async with asyncio.timeout_at(deadline):
                            data = await reader.read(1 << 20)
                    except TimeoutError:
                        raise codec.RemoteProtocolError(
                            f"no hello within {self.limits.handshake_timeout:g} s") from None
                else:
                    data = await reader.read(1 << 20)
                    peer.heard = time.monotonic()
                if not data:
                    break
                for msg in conn.receive_data(data):
                    if peer is not None:
                        codec.check_accepted(peer.role, msg)  # type: ignore[arg-type]
                        if isinstance(msg, Pong):
                            continue  # heard from: that is all a pong says
                        if isinstance(msg, Goodbye):
                            log.info("%s %s says goodbye: %s", peer.role, peer.name, msg.reason)
                            return
                        while peer.requests >= MAX_REQUESTS:
                            peer.request_done.clear()
                            await peer.request_done.wait()
                        self._dispatch(peer, msg)
                        continue
                    answer, proven = handshake.receive(msg)
                    if answer is not None:
                        writer.write(codec.encode(answer))
                    if proven is not None:
                        peer = self._welcome(proven, writer)
                        conn.max_frame = codec.MAX_FRAME
        except AuthenticationFailed as exc:
            self.auth_failures += 1
            self.metrics.auth_failures.inc()
            log.warning("refused %s %r from %s: %s (%d refused so far)", exc.hello.role, exc.hello.name, where,
                        exc.reason, self.auth_failures)
            with contextlib.suppress(Exception):
                writer.write(codec.encode(Goodbye(str(exc))))
        except codec.RemoteProtocolError as exc:
            who = f"{peer.role} {peer.name}" if peer else f"peer {where}"
            log.warning("closing %s: %s", who, exc)
            with contextlib.suppress(Exception):
                writer.write(codec.encode(Goodbye(str(exc))))
        except (ConnectionError, OSError) as exc:
            log.info("connection lost (%s): %s", peer.name if peer else where, exc)
        finally:
            self._connections -= 1
            writer.close()
            if peer is not None:
                self._peers.discard(peer)
                self._disconnected(peer)

    def _unknown(self, hello: Hello) -> str | None:
        """Why the peer a hello names cannot exist, if it cannot."""
        if hello.role == "client" and self.config.vm(hello.name) is None:
            return f"unknown VM {hello.name!r}"
        return None

    def _welcome(self, hello: Hello, writer: asyncio.StreamWriter) -> Peer:
        """A peer proven: welcome it; a controller or client replaces its predecessor."""
        peer = Peer(hello.role, hello.name, writer, self.limits.unread.get(hello.role, 64 << 20))
        self._peers.add(peer)
        self.metrics.peer_connections.labels(hello.role).inc()
        if hello.role != "operator":
            self.events.record(f"{hello.role}_up", f"{hello.role} {hello.name} connected",
                               vm=hello.name if hello.role == "client" else None)
        if hello.role == "controller":
            self._controller_joins(peer)
            return peer
        peer.send(Welcome(PROTOCOL_VERSION, rfvs=(self.config.rfvs.dpid,)))
        if hello.role == "client":
            old_client = self.clients.pop(hello.name, None)
            if old_client is not None:
                old_client.close("replaced by a new connection of the same VM")
            self.clients[hello.name] = peer
            log.info("client of VM %s connected", hello.name)
            self._deliver(self.core.on_client_up(hello.name))
        return peer

    def _controller_joins(self, peer: Peer) -> None:
        """A controller proven. One of the same name replaces its predecessor (most likely
        a dead connection); it is elected if there is no active controller or it replaces
        the active one, else it stands by (two controllers, each connected to every switch,
        so that either can die)."""
        old = next((c for c in self.controllers if c.name == peer.name), None)
        if old is not None:
            self.controllers.remove(old)
            old.close("replaced by a new controller connection")
        self.controllers.append(peer)
        if self.controller is not None and self.controller is old:
            self.controller = None
            self._deliver(self.core.on_controller_down())
        if self.controller is None:
            self._elect(peer, welcome=True)
        else:
            peer.send(Welcome(PROTOCOL_VERSION, rfvs=(self.config.rfvs.dpid,), controller_active=False,
                              term=self.term))
            log.info("controller %s connected, standing by (%s is active)", peer.name, self.controller.name)

    def _elect(self, peer: Peer, welcome: bool = False) -> None:
        """Make ``peer`` the active controller in a new term, and tell every controller."""
        # Terms are the switches' generation ids, which must only grow: by the clock (ms),
        # so that a restarted server's first term is newer than its predecessor's last.
        self.term = max(self.term + 1, time.time_ns() // 1_000_000)
        self.controller = peer
        if welcome:
            peer.send(Welcome(PROTOCOL_VERSION, rfvs=(self.config.rfvs.dpid,), controller_active=True,
                              term=self.term))
        else:
            peer.send(ControllerRole(True, self.term))
        for other in self.controllers:
            if other is not peer:
                other.send(ControllerRole(False, self.term))
        log.info("controller %s %s, active in term %d", peer.name, "connected" if welcome else "elected", self.term)
        self._deliver(self.core.on_controller_up())

    def _disconnected(self, peer: Peer) -> None:
        if peer.role != "operator":
            self.events.record(f"{peer.role}_down", f"{peer.role} {peer.name} disconnected",
                               vm=peer.name if peer.role == "client" else None)
        if peer.role == "controller" and peer in self.controllers:
            self.controllers.remove(peer)
            if self.controller is not peer:
                log.warning("controller %s (standing by) disconnected", peer.name)
                return
            self.controller = None
            log.warning("controller %s disconnected", peer.name)
            self.requests.controller_lost()
            self._deliver(self.core.on_controller_down())
            if self.controllers and not self._stopping:  # the one standing by takes over
                self._elect(self.controllers[0])
        elif peer.role == "client" and self.clients.get(peer.name) is peer:
            del self.clients[peer.name]
            log.warning("client of VM %s disconnected", peer.name)
            self._deliver(self.core.on_client_down(peer.name))

    # -- dispatch ----------------------------------------------------------------

    def _dispatch(self, peer: Peer, msg: Message) -> None:
        """Hand ``msg``, which its peer's role may send (checked), to its handler in :data:`DISPATCH`."""
        if peer.role == "controller" and peer is not self.controller:
            return  # a controller standing by has nothing to say until elected
        self.events.on_message(peer.role, peer.name, msg)
        if type(msg) is FibDelta:
            self.metrics.fib_changed(peer.name, time.monotonic())
        self._deliver(DISPATCH[peer.role][type(msg)](self, peer, msg))
        if self.writer is not None:
            self.writer.mark(changed_items(peer.role, peer.name, msg))
        if self.core.has_dirty:
            self._schedule_reconcile()

    def _on_reply(self, peer: Peer, msg: ControllerStats) -> list[Out]:
        self.requests.resolve(msg.request_id, msg)
        return []

    def _on_table_dump(self, peer: Peer, msg: TableDump) -> list[Out]:
        whole = self.requests.table_part(msg)
        if whole is not None and self.writer is not None:
            self.writer.check_dump(whole)
        return self.core.on_table_dump(whole) if whole is not None else []

    def _on_fib_snapshot(self, peer: Peer, msg: FibSnapshot) -> list[Out]:
        if self.requests.fib_part(msg):  # a FIB verify asked for
            return []
        if msg.request_id:
            log.debug("%s: part of an abandoned FIB request %d", peer.name, msg.request_id)
        else:  # the client's whole state, in parts: the core sees it once complete
            if peer.snapshot is None:
                peer.snapshot = FibParts(self.core.nib.vms[peer.name].routes)
            peer.snapshot.add(msg.fib)
            if not msg.more:
                complete, peer.snapshot = peer.snapshot.fib(), None
                return self.core.on_fib_snapshot(peer.name, FibSnapshot(complete))
        return []

    def _deliver(self, out: list[Out]) -> None:
        if self.writer is not None:
            self.writer.mark(changed_items(CONTROLLER, "", *(item.msg for item in out if isinstance(item.msg, Message))))
        for item in out:
            if isinstance(item.msg, VmChange):
                self._vm_change(item.msg)
                continue
            peer = self.controller if item.to == CONTROLLER else self.clients.get(item.to)
            if peer is not None:
                peer.send(item.msg)

    def _vm_change(self, change: VmChange) -> None:
        """The core made, changed or retired a VM (a switch admitted or gone for its grace
        period, a reload): its client's key, its client's session, and the VM itself in the
        virtual environment, if the server runs one."""
        self.config = self.core.config
        if change.kind == "add":
            ident = auth.identity("client", change.vm.name)
            self._keys.update(auth.ensure_keys(self.key_dir, [ident]))
            if self.tls:
                pki.ensure(self.key_dir, [ident])
        elif change.kind == "remove" and change.vm.name in self.clients:
            self.clients[change.vm.name].close("its VM is removed")
        self.events.record(f"vm_{change.kind}", f"VM {change.vm.name} {DONE[change.kind]} "
                           f"(datapath {change.vm.dpid:#x})", change.vm.dpid, change.vm.name)
        self.vm_work.submit(change)

    def _schedule_reconcile(self) -> None:
        # Run once after the current burst of messages, so many FIB changes
        # arriving together become one TableMod per datapath.
        if not self._reconcile_scheduled:
            self._reconcile_scheduled = True
            asyncio.get_running_loop().call_soon(self._reconcile)

    def _reconcile(self) -> None:
        self._reconcile_scheduled = False
        out = self.core.reconcile()
        self._deliver(out)
        self.metrics.tables_sent([vm.name for item in out if isinstance(item.msg, TableMod)
                                  for vm in self.config.vms_of_dpid(item.msg.dpid)], time.monotonic())

    async def _keep_alive(self) -> None:
        """Ping every peer each ``keepalive`` seconds; drop one silent past ``idle_timeout``
        that has nothing left to read."""
        for seq in itertools.count():
            await asyncio.sleep(self.limits.keepalive)
            now = time.monotonic()
            for peer in list(self._peers):
                # A peer still working through what it was sent (a controller installing a
                # million flows) is busy, not gone: only one that has read it all must answer.
                backlog = peer.writer.transport.get_write_buffer_size()
                if now - peer.heard > self.limits.idle_timeout and not backlog:
                    log.warning("dropping %s %s: not heard from for %.0f s", peer.role, peer.name, now - peer.heard)
                    peer.close(f"not heard from for {self.limits.idle_timeout:g} s")
                    peer.writer.transport.abort()
                else:
                    peer.send(Ping(seq))

    async def _tick(self) -> None:
        """Next-hop resolution retries and the end of the RFVS hold, every RESOLVE_TICK."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RESOLVE_TICK)
            self._deliver(self.core.resolve_due(loop.time()))
            self._deliver(self.core.retire_due(loop.time()))
            self.core.settle_due(loop.time())
            if self.core.has_dirty:
                self._schedule_reconcile()


#: What the server does with a message from a peer: a handler of ``(server, peer, message)``
#: returning what to deliver.
Handler = Callable[[RFServer, Peer, Any], list[Out]]


def _core_event(on_event: Callable[[ServerCore, Any], list[Out]]) -> Handler:
    """A controller's report, which the core handles as it comes."""
    return lambda server, peer, msg: on_event(server.core, msg)


def _vm_event(on_event: Callable[[ServerCore, str, Any], list[Out]]) -> Handler:
    """A client's report, which the core handles for the client's VM."""
    return lambda server, peer, msg: on_event(server.core, peer.name, msg)


def _operator_request(work: Callable[[RFServer, Peer, Any], Awaitable[Message]]) -> Handler:
    """An operator's request, answered once its work is done; the peer is read on meanwhile."""
    def handle(server: RFServer, peer: Peer, msg: Message) -> list[Out]:
        server._spawn(peer, work(server, peer, msg))
        return []
    return handle


#: The handler of each message each role may send after its handshake (``SENT_BY`` of
#: :mod:`routeflow.protocol.messages`; the connection handles those of the session itself).
DISPATCH: dict[str, dict[type[Message], Handler]] = {
    "controller": {
        DatapathJoin: _core_event(ServerCore.on_datapath_join),
        DatapathLeave: lambda server, peer, msg: server.core.on_datapath_leave(msg, asyncio.get_running_loop().time()),
        PortChange: _core_event(ServerCore.on_port_change),
        MappingSeen: _core_event(ServerCore.on_mapping_seen),
        LinkChange: _core_event(ServerCore.on_link_change),
        TableDump: RFServer._on_table_dump,
        SwitchError: _core_event(ServerCore.on_switch_error),
        ControllerStats: RFServer._on_reply,
    },
    "client": {
        FibSnapshot: RFServer._on_fib_snapshot,
        FibDelta: _vm_event(ServerCore.on_fib_delta),
        FibAudit: _vm_event(ServerCore.on_fib_audit),
    },
    "operator": {
        StatusRequest: _operator_request(RFServer._status),
        VerifyRequest: _operator_request(RFServer._verify),
        ReloadRequest: _operator_request(RFServer._reload),
    },
}
