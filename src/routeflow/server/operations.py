"""The operator's requests to the RF-Server: status, verify and reload, answered with what
the server asks its peers (the controller's counters and tables, the VMs' FIBs). Mixed into
:class:`~routeflow.server.service.RFServer`, whose peers, core and plumbing they use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable

from routeflow.config.loader import load_config
from routeflow.config.schema import Config, Limits
from routeflow.errors import ConfigError
from routeflow.flows.diff import TableComparison
from routeflow.model import Fib
from routeflow.protocol.messages import (
    ControllerStats,
    Message,
    ReloadReply,
    ReloadRequest,
    StatsRequest,
    StatusReply,
    StatusRequest,
    VerifyReply,
    VerifyRequest,
)
from routeflow.server.core import ServerCore
from routeflow.server.core_vms import Out
from routeflow.server.events import EventLog
from routeflow.server.metrics import ServerMetrics
from routeflow.server.peers import Peer
from routeflow.server.requests import PeerRequests
from routeflow.server.status import status_document
from routeflow.server.verify import differences
from routeflow.server.vmhost import VmWork

log = logging.getLogger("routeflow.server")

#: After a reload's VM changes are done, how long their clients are given to report what
#: changed (new addresses), whose flows the reload's FlowMod count includes.
RELOAD_SETTLE = 1.0


class Operations:
    """What an operator asks: :meth:`status`, :meth:`verify`, :meth:`reload`."""

    # RFServer's, which these requests share.
    config: Config
    config_path: Path | None
    limits: Limits
    core: ServerCore
    requests: PeerRequests
    controller: Peer | None
    controllers: list[Peer]
    clients: dict[str, Peer]
    _peers: set[Peer]
    key_dir: Path
    auth_failures: int
    term: int
    events: EventLog
    metrics: ServerMetrics
    vm_work: VmWork
    _deliver: Callable[[list[Out]], None]
    _schedule_reconcile: Callable[[], None]
    _reload_lock: asyncio.Lock

    def _spawn(self, peer: Peer, work: Awaitable[Message]) -> None:
        async def run() -> None:
            try:
                peer.send(await work)
            except Exception:  # an operator request must never take the server down
                log.exception("operator request failed")
                peer.close("internal error; see the server log")
            finally:
                peer.requests -= 1
                peer.request_done.set()

        peer.requests += 1
        asyncio.get_running_loop().create_task(run())

    async def controller_stats(self) -> ControllerStats | None:
        """The controller's counters now; None if it cannot be asked."""
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            rid = self.core.next_request_id()
            return await self.requests.ask(self.controller, StatsRequest(rid), rid)  # type: ignore[no-any-return]
        return None

    def peer_counts(self) -> dict[str, int]:
        """RF-protocol peers connected now, by role."""
        counts = dict.fromkeys(("controller", "client", "operator"), 0)
        for peer in self._peers:
            counts[peer.role] = counts.get(peer.role, 0) + 1
        return counts

    async def _status(self, peer: Peer, msg: StatusRequest) -> StatusReply:
        return StatusReply(msg.request_id, await self.status(msg.detail))

    async def status(self, detail: bool) -> dict[str, Any]:
        """The status document (see :func:`~routeflow.server.status.status_document`) with the
        controller's counters and the server's listeners."""
        stats = await self.controller_stats()
        document = status_document(self.core.nib, stats, detail, asyncio.get_running_loop().time())
        document["server"] = {
            # Every peer proves who it is on every listener: its key, or over TLS its certificate.
            "listeners": [{"address": text, "authenticated": True, "encrypted": text.startswith("tls:")}
                          for text in self.config.listen],
            "keys": str(self.key_dir),
            "auth_failures": self.auth_failures,
            "http": self.config.http.listen,
            # etcd: this server is the active one of a pair (a standby answers nobody).
            "store": self.config.store.kind.value,
        }
        document["controllers"] = [{"name": c.name, "active": c is self.controller, "term": self.term}
                                   for c in self.controllers]
        return document

    async def compare_table(self, dpid: int, comparison: TableComparison) -> None:
        """Feed a switch's table to ``comparison`` part by part as the controller sends it."""
        await self.requests.compare_table(self.controller, self.core.next_request_id(), dpid, comparison)

    async def fresh_fib(self, vm: str) -> Fib:
        """A VM's FIB read from its kernel now."""
        return await self.requests.fresh_fib(self.clients.get(vm), self.core.next_request_id(),
                                             self.core.nib.vms[vm].routes)

    async def _verify(self, peer: Peer, msg: VerifyRequest) -> VerifyReply:
        return await self.verify(msg.request_id)

    async def verify(self, request_id: int = 0) -> VerifyReply:
        """Compare every VM's real FIB, translated, with the flows its datapath holds
        (:func:`routeflow.server.verify.differences`)."""
        found, checked = await differences(self.core.nib, self)
        self.metrics.verify_runs.inc()
        self.metrics.verify_differences.set(len(found))
        return VerifyReply(request_id, not found, tuple(found), checked)

    async def _reload(self, peer: Peer, msg: ReloadRequest) -> ReloadReply:
        return await self.reload(msg.request_id)

    async def reload(self, request_id: int = 0) -> ReloadReply:
        """Read the config file again and apply only what differs (SIGHUP, ``routeflow
        reload``): see :meth:`~routeflow.server.core_vms.VmLifecycle.reload`. A file with any
        problem is refused whole and nothing changes. The reply counts the FlowMods sent
        until the VMs changed are done and have reported, against the flows and groups the
        datapaths touched hold. One reload at a time."""
        async with self._reload_lock:
            if self.config_path is None:
                return ReloadReply(request_id, False, ("the server was not started from a config file",))
            try:
                new = await asyncio.to_thread(load_config, self.config_path)
                diff, out = self.core.reload(new)
            except ConfigError as exc:
                problems = tuple(f"{exc.file}: {where}: {reason}" for where, reason in exc.problems)
                log.warning("reload refused, nothing changed: %s", "; ".join(problems))
                self.events.record("reload_refused", f"reload refused: {len(problems)} problem(s)")
                self.metrics.reloads.labels("refused").inc()
                return ReloadReply(request_id, False, problems)
            if self.limits == self.config.limits:  # the config's, not a test's own
                self.limits = new.limits
            self.config = self.core.config
            nib = self.core.nib
            before = {dpid: dp.flow_mods for dpid, dp in nib.datapaths.items()}
            self._deliver(out)
            if self.core.has_dirty:
                self._schedule_reconcile()
            await self.vm_work.settled()
            if not diff.empty:
                await asyncio.sleep(RELOAD_SETTLE)
            touched = {dpid: dp for dpid, dp in nib.datapaths.items() if dp.flow_mods != before.get(dpid, 0)}
            sent = {f"{dpid:#x}": dp.flow_mods - before.get(dpid, 0) for dpid, dp in touched.items()}
            size = sum(len(dp.installed.flows) + len(dp.installed.groups) for dp in touched.values() if dp.installed)
            changes = diff.describe()
            self.metrics.reloads.labels("applied").inc()
            for dpid, count in sent.items():
                self.metrics.reload_flow_mods.labels(dpid).inc(count)
            log.info("reload: %s; %d FlowMods sent", "; ".join(changes) or "nothing changed", sum(sent.values()))
            self.events.record("reload", f"reload: {len(changes)} change(s), {sum(sent.values())} FlowMods")
            return ReloadReply(request_id, True, (), tuple(changes), sent, size)
