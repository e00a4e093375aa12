"""The RF-Server's decisions: RF-protocol events in, RF-protocol commands out.

:class:`ServerCore` owns the NIB and does no I/O. Each ``on_*`` method updates
the NIB and returns the messages to send, addressed to the controller or to a
VM's client. :meth:`ServerCore.reconcile` turns the NIB into each datapath's
desired table (the pure compiler) and returns only the differences.
The asyncio service (:mod:`routeflow.server.service`) delivers the messages.
"""

from __future__ import annotations

import itertools
import logging

from routeflow.config.schema import Config, RoutingPlane, VmConfig
from routeflow.flows.compiler import routing_context
from routeflow.flows.diff import apply_changes, diff_tables, is_empty, split_table_mod
from routeflow.flows.incremental import IncrementalCompiler
from routeflow.model import Flow, FlowKey, Group, Table
from routeflow.protocol.messages import (
    DatapathJoin,
    DatapathLeave,
    DiscoveryPlan,
    DumpTable,
    FibAudit,
    FibDelta,
    FibSnapshot,
    LinkChange,
    LinkState,
    MappingSeen,
    PortChange,
    PortMapped,
    RelayEntry,
    RelayMap,
    ResolveNextHops,
    SwitchError,
    TableDump,
    TableMod,
)
from routeflow.server.core_vms import CONTROLLER, VNET, Out, VmChange, VmLifecycle
from routeflow.server.nib import DatapathState, Nib, Retry

log = logging.getLogger("routeflow.server")

#: Back-off of resolution attempts for a next hop with no neighbour entry:
#: the first retry after this many seconds, doubling up to RESOLVE_MAX.
RESOLVE_FIRST = 1.0
RESOLVE_MAX = 60.0
#: The longest the RFVS keeps flows the server cannot account for yet, after the
#: server or the controller (re)starts: trunk flows of NICs not mapped again, wires
#: of virtual links not rediscovered. Deleting them at once would cut slow paths
#: that were working for the moment it takes to put them back.
RFVS_HOLD_MAX = 10.0
#: Discovery probes a virtual-plane VM's links are given to be found again before
#: the RFVS lets go of the wires it holds (see :data:`RFVS_HOLD_MAX`).
RFVS_HOLD_PROBES = 3


#: What a rejected switch holds: the table-miss drop, nothing else.
TABLE_MISS_DROP = Flow(0, 0, ())


class ServerCore(VmLifecycle):
    """The RF-Server's state and decisions (see the module docstring); the VMs that change
    while it runs are :class:`~routeflow.server.core_vms.VmLifecycle`'s."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.nib = Nib(config)
        #: Datapaths to recompile in full, and route/neighbour keys changed per VM.
        self._dirty: set[int] = set()
        self._changed: dict[str, tuple[set[str], set[tuple[str, str]]]] = {}
        #: Each VM's part of its datapath's table, kept current change by change.
        self._compilers: dict[str, IncrementalCompiler] = {}
        self._request_ids = itertools.count(1)
        #: request id -> dpid of dumps the core asked for (to resync).
        self._dumps: dict[int, int] = {}
        #: False while the RFVS keeps the flows it held before (``_rfvs_inherited``,
        #: read from it by the hold's dumps) that the NIB cannot account for yet; when
        #: the hold began (the first tick after the controller came up).
        self.rfvs_settled = False
        self._rfvs_hold_since: float | None = None
        self._rfvs_inherited: frozenset[FlowKey] = frozenset()

    def next_request_id(self) -> int:
        return next(self._request_ids)

    # -- controller events -------------------------------------------------------

    def on_controller_up(self) -> list[Out]:
        self.nib.controller_connected = True
        return [Out(CONTROLLER, self.relay_map()), Out(CONTROLLER, self.discovery_plan())]

    def on_controller_down(self) -> list[Out]:
        """The controller went away: what switches hold is unknown until re-dumped.

        Port states are kept: a controller restart is not a link failure, and
        taking VM interfaces down for it would tear down every adjacency.
        """
        self.nib.controller_connected = False
        self.nib.links.clear()  # rediscovered by the next controller
        self.rfvs_settled, self._rfvs_hold_since = False, None
        for dp in self.nib.datapaths.values():
            dp.installed = None
            dp.dump_pending = False
        self._dumps.clear()
        return []

    def on_datapath_join(self, msg: DatapathJoin) -> list[Out]:
        dp = self.nib.datapaths.setdefault(msg.dpid, DatapathState())
        dp.ports = {p.port_no: p for p in msg.ports}
        dp.installed = None
        log.info("datapath %#x joined with %d ports", msg.dpid, len(msg.ports))
        out = self._request_dump(msg.dpid)
        decision = self.nib.admissions.decisions.get(msg.dpid)
        if decision is not None and decision.vm is not None and decision.vm.name in self.nib.admissions.leaving:
            del self.nib.admissions.leaving[decision.vm.name]
            log.info("datapath %#x is back within its grace period: VM %s mirrors it again", msg.dpid,
                     decision.vm.name)
        elif (not self.config.vms_of_dpid(msg.dpid) and self.config.templates and decision is None
              and msg.dpid != self.config.rfvs.dpid):
            out += self._admit(msg.dpid, msg.ports)
        for vm in self.config.vms_of_dpid(msg.dpid):
            out += self._link_states(vm)
            missing = [f"{nic.name} (port {nic.port})" for nic in vm.interfaces if nic.port not in dp.ports]
            if missing:
                log.warning("datapath %#x has no port for VM %s's %s: down until it has", msg.dpid, vm.name,
                            ", ".join(missing))
        return out

    def on_datapath_leave(self, msg: DatapathLeave, now: float = 0.0) -> list[Out]:
        """A switch left (``now``: the event loop's clock). A VM made for it stays for its
        template's grace period, then goes (:meth:`retire_due`); a rejected one is forgotten."""
        dp = self.nib.datapaths.pop(msg.dpid, None)
        log.info("datapath %#x left", msg.dpid)
        decision = self.nib.admissions.decisions.get(msg.dpid)
        if decision is not None and decision.vm is None:
            self.nib.admissions.release(msg.dpid)  # judged again if it comes back
        elif decision is not None and decision.vm is not None:
            grace = self.nib.admissions.template(decision.template).grace
            self.nib.admissions.leaving[decision.vm.name] = now + grace
            log.info("VM %s stays %g s for its switch %#x to come back", decision.vm.name, grace, msg.dpid)
        if dp is None:
            return []
        # A switch gone means every mirrored link is gone.
        return [Out(vm.name, LinkState(i.name, False)) for vm in self.config.vms_of_dpid(msg.dpid)
                for i in vm.interfaces]

    def on_port_change(self, msg: PortChange) -> list[Out]:
        dp = self.nib.datapaths.get(msg.dpid)
        if dp is None:
            return []
        if msg.deleted:
            dp.ports.pop(msg.port.port_no, None)
        else:
            dp.ports[msg.port.port_no] = msg.port
        self._dirty.add(msg.dpid)
        out = []
        up = msg.port.up and not msg.deleted
        grown = self.nib.admissions.with_port(msg.dpid, msg.port.port_no) if up else None
        if grown is not None:  # a VM made from a template gets a NIC for a port that came up
            log.info("%#x port %d up: VM %s gets NIC eth%d", msg.dpid, msg.port.port_no, grown.name,
                     msg.port.port_no)
            self._set_vms(tuple(grown if v.name == grown.name else v for v in self.config.vms))
            out.append(Out(VNET, VmChange(grown, "update")))
        for vm in self.config.vms_of_dpid(msg.dpid):
            for iface in vm.interfaces:
                if iface.port == msg.port.port_no:  # the port and every VLAN on it
                    log.info("%s: VM %s %s %s", vm.virtual_port(iface), vm.name, iface.name, "up" if up else "down")
                    out.append(Out(vm.name, LinkState(iface.name, up)))
        return out

    def on_mapping_seen(self, msg: MappingSeen) -> list[Out]:
        vm = self.config.vm(msg.vm)
        iface = vm.interface(msg.ifname) if vm else None
        if vm is None or iface is None:
            log.warning("mapping packet from unknown VM interface %s/%s on RFVS port %d",
                        msg.vm, msg.ifname, msg.rfvs_port)
            return []
        key = (msg.vm, msg.ifname)
        where = (msg.rfvs_dpid, msg.rfvs_port)
        out = [Out(vm.name, PortMapped(msg.ifname, vm.dpid, iface.port))]
        if self.nib.rfvs_ports.get(key) != where:
            log.info("VM %s %s is RFVS port %d, mirrors %s", msg.vm, msg.ifname, msg.rfvs_port,
                     vm.virtual_port(iface))
            self.nib.rfvs_ports[key] = where
            self._dirty.add(self.config.rfvs.dpid)  # a trunked NIC gets its RFVS flows
            out.append(Out(CONTROLLER, self.relay_map()))
            self.settle_due(None)
        return out

    def on_link_change(self, msg: LinkChange) -> list[Out]:
        """Discovery found or lost a link: wire or unwire the VM NICs mirroring its ends."""
        link = ((msg.src_dpid, msg.src_port), (msg.dst_dpid, msg.dst_port))
        before = self.nib.virtual_links()
        if msg.up:
            self.nib.links.add(link)
        else:
            self.nib.links.discard(link)
        log.info("link %#x:%d -> %#x:%d %s", msg.src_dpid, msg.src_port, msg.dst_dpid, msg.dst_port,
                 "up" if msg.up else "down")
        if self.nib.virtual_links() != before:
            self._dirty.add(self.config.rfvs.dpid)
        return []

    def on_table_dump(self, msg: TableDump) -> list[Out]:
        """A dump the core asked for: the switch's real table becomes our baseline."""
        dpid = self._dumps.pop(msg.request_id, None)
        dp = self.nib.datapaths.get(msg.dpid)
        if dpid is None or dp is None:
            return []
        dp.dump_pending = False
        if msg.error:
            log.warning("dump of %#x failed: %s; retrying", msg.dpid, msg.error)
            return self._request_dump(msg.dpid)
        dp.installed = Table(flows={f.key: f for f in msg.flows}, groups={g.group_id: g for g in msg.groups})
        if msg.dpid == self.config.rfvs.dpid and not self.rfvs_settled:
            self._rfvs_inherited = frozenset(dp.installed.flows)
        self._dirty.add(msg.dpid)
        return []

    def on_switch_error(self, msg: SwitchError) -> list[Out]:
        """The switch refused a change: stop trusting our copy and re-read it."""
        log.warning("datapath %#x reported an error: %s", msg.dpid, msg.text)
        dp = self.nib.datapaths.get(msg.dpid)
        if dp is None or dp.dump_pending:
            return []
        dp.installed = None
        return self._request_dump(msg.dpid)

    # -- client events -----------------------------------------------------------

    def on_client_up(self, vm_name: str) -> list[Out]:
        self.nib.vms[vm_name].connected = True
        vm = self.config.vm(vm_name)
        return self._link_states(vm) if vm else []

    def on_client_down(self, vm_name: str) -> list[Out]:
        # Flows stay: forwarding goes on headless until the client is back.
        state = self.nib.vms.get(vm_name)
        if state is not None:  # None: its VM was retired, which stopped it
            state.connected = False
        return []

    def on_fib_snapshot(self, vm_name: str, msg: FibSnapshot) -> list[Out]:
        self.nib.vms[vm_name].replace(msg.fib)
        self._mark_vm(vm_name)
        return []

    def on_fib_audit(self, vm_name: str, msg: FibAudit) -> list[Out]:
        """A client's FIB audit report, kept for status. Routes it had to repair
        changed in the kernel without an event: worth an operator's attention."""
        state = self.nib.vms[vm_name]
        before = state.audit.repaired if state.audit else 0
        if msg.repaired > before:
            log.warning("%s: the client's FIB audit repaired %d route(s) the kernel changed without an event",
                        vm_name, msg.repaired - before)
        state.audit = msg
        return []

    def on_fib_delta(self, vm_name: str, msg: FibDelta) -> list[Out]:
        state = self.nib.vms[vm_name]
        if not state.synced:
            log.warning("delta from %s before its snapshot: ignored", vm_name)
            return []
        state.apply(msg)
        vm = self.config.vm(vm_name)
        if vm is None:
            return []
        if msg.interfaces_set or msg.interfaces_del:
            self._dirty.add(vm.dpid)  # addresses, MACs or link states: everything may change
        else:
            routes, neighbours = self._changed.setdefault(vm.name, (set(), set()))
            routes.update(r.prefix for r in msg.routes_set)
            routes.update(msg.routes_del)
            neighbours.update((n.ifname, n.ip) for n in msg.neighbours_set)
            neighbours.update((k[0], k[1]) for k in msg.neighbours_del)
        return []

    # -- flow programming --------------------------------------------------------

    def reconcile(self) -> list[Out]:
        """Send each changed datapath what makes it hold its desired table.

        A datapath marked dirty is recompiled in full and diffed against the
        switch's table; one with only route or neighbour changes is updated
        incrementally, at a cost that follows the size of the change.
        """
        out = []
        dirty, self._dirty = self._dirty, set()
        changed, self._changed = self._changed, {}
        by_dpid: dict[int, dict[str, tuple[set[str], set[tuple[str, str]]]]] = {}
        for name, keys in changed.items():
            vm = self.config.vm(name)
            if vm is not None:
                by_dpid.setdefault(vm.dpid, {})[name] = keys
        for dpid in sorted(dirty | by_dpid.keys()):
            try:
                mod = self._reconcile_datapath(dpid, full=dpid in dirty, changed=by_dpid.get(dpid, {}))
            except Exception as exc:  # noqa: BLE001 - whatever it is, it costs this datapath only
                self._compile_failed(dpid, exc)
                continue
            if dpid in self.nib.datapaths:
                self.nib.datapaths[dpid].compile_error = ""
            if mod is not None and not is_empty(mod):
                self.nib.datapaths[dpid].flow_mods += _size(mod)
                log.debug("datapath %#x: +%d ~%d -%d flows", dpid, len(mod.add), len(mod.modify), len(mod.delete))
                out += [Out(CONTROLLER, part) for part in split_table_mod(mod)]
        return out

    def _compile_failed(self, dpid: int, exc: Exception) -> None:
        """A datapath whose table could not be computed keeps its last good one;
        the others go on. Its compilers may be half-updated: the next change
        rebuilds them from the VMs' state."""
        for vm in self.config.vms_of_dpid(dpid):
            self._compilers.pop(vm.name, None)
        error = f"{type(exc).__name__}: {exc}"[:500]
        dp = self.nib.datapaths.get(dpid)
        if dp is not None and dp.compile_error != error:
            log.error("datapath %#x: flows not updated, its table could not be computed: %s", dpid, error,
                      exc_info=exc)
        if dp is not None:
            dp.compile_error = error

    def _reconcile_datapath(self, dpid: int, full: bool,
                            changed: dict[str, tuple[set[str], set[tuple[str, str]]]]) -> TableMod | None:
        dp = self.nib.datapaths.get(dpid)
        vms = self.config.vms_of_dpid(dpid)
        if dp is None or dp.installed is None or not self.nib.controller_connected:
            # Its dump will bring a full reconcile; until then the compilers are stale.
            for vm in vms:
                self._compilers.pop(vm.name, None)
            return None
        if dpid == self.config.rfvs.dpid:
            desired = self.nib.rfvs_table(dp.ports)
            if not self.rfvs_settled:
                # Until the hold ends, flows the switch held before and the NIB cannot
                # account for yet stay; those this server itself replaced do not.
                kept = {key: dp.installed.flows[key] for key in self._rfvs_inherited
                        if key in dp.installed.flows and key not in desired.flows}
                desired = Table({**desired.flows, **kept}, desired.groups)
            mod = diff_tables(dpid, dp.installed, desired)
            dp.installed = _copy(desired)
            return mod
        if not vms:
            # A switch no VM mirrors (rejected, or its VMs reloaded away) holds none of our
            # flows: a rejected one the table-miss drop only.
            desired = Table({TABLE_MISS_DROP.key: TABLE_MISS_DROP}) if self.nib.admissions.rejected(dpid) else Table()
            mod = diff_tables(dpid, dp.installed, desired)
            dp.installed = desired
            return mod
        if not all(self.nib.vms[vm.name].synced for vm in vms):
            # After a server restart the switch keeps its flows until every VM on it has reported.
            return None
        if full or any(vm.name not in self._compilers for vm in vms):
            desired = Table()
            for vm in vms:
                state = self.nib.vms[vm.name]
                compiler = self._compilers[vm.name] = IncrementalCompiler(vm, routing_context(self.config, vm))
                _merge(desired, compiler.rebuild(state.interfaces, state.routes, state.neighbours, dp.ports), dpid)
                state.unresolved = compiler.unresolved
            mod = diff_tables(dpid, dp.installed, desired)
            dp.installed = desired
            return mod
        flows: dict[FlowKey, Flow | None] = {}
        groups: dict[int, Group | None] = {}
        for name, (routes, neighbours) in changed.items():
            state, compiler = self.nib.vms[name], self._compilers[name]
            # Contexts' route and neighbour flows are in their own FIB tables, their groups
            # seeded apart: the changes of two VMs never touch the same entry.
            changes = compiler.update(state.routes, state.neighbours, routes, neighbours)
            flows.update(changes.flows)
            groups.update(changes.groups)
            state.unresolved = compiler.unresolved
        return apply_changes(dpid, dp.installed, flows, groups)

    def resolve_due(self, now: float) -> list[Out]:
        """Ask each VM to resolve those of its unresolved next hops whose retry is due.

        Traffic towards an unresolved next hop goes to the VM, whose kernel then
        resolves it; with no traffic nothing would. Retries back off (1, 2, 4...
        up to 60 s) so that a next hop that never answers costs almost nothing,
        and stop as soon as the neighbour appears or the route goes.
        """
        out = []
        for vm in self.config.vms:
            dp = self.nib.datapaths.get(vm.dpid)
            wanted = {(u.ifname, u.gateway) for u in self.nib.vms[vm.name].unresolved} if dp else set()
            retries = self.nib.resolving.setdefault(vm.name, {})
            for key in set(retries) - wanted:
                del retries[key]
            if not self.nib.vms[vm.name].connected:
                continue
            due = []
            for key in sorted(wanted):
                retry = retries.setdefault(key, Retry(0, now))
                if retry.next_at <= now:
                    retry.next_at = now + min(RESOLVE_FIRST * 2 ** retry.attempts, RESOLVE_MAX)
                    retry.attempts += 1
                    due.append(key)
            if due:
                out.append(Out(vm.name, ResolveNextHops(tuple(due))))
        return out

    def settle_due(self, now: float | None) -> None:
        """End the RFVS's hold once the NIB accounts for what it held: every VM NIC
        mapped again and, with virtual-plane VMs, their links given
        :data:`RFVS_HOLD_PROBES` discovery probes to be found again; or after
        :data:`RFVS_HOLD_MAX` s whatever is missing (a NIC gone for good).
        ``now`` is None when no time has passed (an event, not a tick)."""
        if self.rfvs_settled or not self.nib.controller_connected:
            return
        if now is not None and self._rfvs_hold_since is None:
            self._rfvs_hold_since = now
        waited = now - self._rfvs_hold_since if now is not None and self._rfvs_hold_since is not None else 0.0
        mapped = all((vm.name, nic.name) in self.nib.rfvs_ports for vm in self.config.vms for nic in vm.interfaces)
        virtual = any(vm.routing_plane == RoutingPlane.VIRTUAL for vm in self.config.vms)
        rediscovered = not virtual or waited >= RFVS_HOLD_PROBES * self.config.discovery_interval
        if waited >= RFVS_HOLD_MAX or (mapped and rediscovered):
            if not mapped:
                missing = sorted(f"{vm.name} {nic.name}" for vm in self.config.vms for nic in vm.interfaces
                                 if (vm.name, nic.name) not in self.nib.rfvs_ports)
                log.warning("RFVS: no mapping packet after %.0f s from %s; their flows go", waited,
                            ", ".join(missing))
            self.rfvs_settled, self._rfvs_inherited = True, frozenset()
            self._dirty.add(self.config.rfvs.dpid)

    @property
    def has_dirty(self) -> bool:
        return bool(self._dirty or self._changed)

    def discovery_plan(self) -> DiscoveryPlan:
        """Probe the datapaths of ``virtual`` routing-plane VMs: their links get wired."""
        dpids = tuple(sorted({vm.dpid for vm in self.config.vms if vm.routing_plane == RoutingPlane.VIRTUAL}))
        return DiscoveryPlan(dpids, self.config.discovery_interval)

    def relay_map(self) -> RelayMap:
        """The slow path's pairs: each identified VM NIC's RFVS port with its virtual port."""
        entries = []
        for (vm_name, ifname), (rfvs_dpid, rfvs_port) in self.nib.rfvs_ports.items():
            vm = self.config.vm(vm_name)
            nic = vm.interface(ifname) if vm else None
            if vm is not None and nic is not None:
                entries.append(RelayEntry(vm.dpid, nic.port, rfvs_dpid, rfvs_port, nic.vlan or 0))
        return RelayMap(tuple(sorted(entries)))

    # -- helpers -----------------------------------------------------------------

    def _request_dump(self, dpid: int) -> list[Out]:
        dp = self.nib.datapaths.get(dpid)
        if dp is None or not self.nib.controller_connected:
            return []
        request_id = self.next_request_id()
        self._dumps[request_id] = dpid
        dp.dump_pending = True
        return [Out(CONTROLLER, DumpTable(request_id, dpid))]

    def _mark_vm(self, vm_name: str) -> None:
        vm = self.config.vm(vm_name)
        if vm is not None:
            self._dirty.add(vm.dpid)

    def _link_states(self, vm: VmConfig) -> list[Out]:
        """Mirror the known state of each switch port onto the VM's interfaces."""
        dp = self.nib.datapaths.get(vm.dpid)
        if dp is None:
            return []
        out = []
        for iface in vm.interfaces:
            port = dp.ports.get(iface.port)
            out.append(Out(vm.name, LinkState(iface.name, port is not None and port.up)))
        return out


def _copy(table: Table) -> Table:
    return Table(flows=dict(table.flows), groups=dict(table.groups))


def _merge(into: Table, part: Table, dpid: int) -> None:
    """Add one VM's part of a datapath's table to ``into``. Parts share only flows that
    are the same for every VM (the slow path's); a group id two contexts both hash to
    would have one of them forward by the other's buckets, so it is refused."""
    into.flows.update(part.flows)
    for gid, grp in part.groups.items():
        if into.groups.setdefault(gid, grp) != grp:
            raise ValueError(f"datapath {dpid:#x}: two routing contexts need group {gid} (a hash collision)")


def _size(mod: TableMod) -> int:
    return (len(mod.add) + len(mod.modify) + len(mod.delete)
            + len(mod.group_add) + len(mod.group_modify) + len(mod.group_delete))
