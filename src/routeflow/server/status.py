"""The status document and the verify comparison, both pure functions of NIB state."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Mapping, Sequence

from routeflow.config.schema import Config
from routeflow.flows.compiler import GroupTable, datapath_flows, routing_context
from routeflow.flows.diff import TableComparison
from routeflow.model import Fib, Neighbour, PortDesc, Route, format_flow, format_group
from routeflow.protocol.messages import ControllerStats
from routeflow.server.nib import Nib, Retry, VmState


def status_document(nib: Nib, stats: ControllerStats | None = None,
                    detail: bool = True, now: float = 0.0) -> dict[str, Any]:
    """A JSON-ready picture of the system: datapaths, VMs, mappings, routes and flows.

    ``stats`` is the controller's counters (slow-path packets by datapath and
    traffic kind, refused connections), or None if the controller could not be asked. Without ``detail``
    only counts of routes, neighbours, flows and groups are given (a million
    routes make a large document). ``now`` is the clock of the resolution retries.
    """
    return {"controller_connected": nib.controller_connected,
            "datapaths": [datapath_entry(nib, dpid, stats, detail, now) for dpid in datapath_ids(nib)],
            "vms": [vm_entry(nib, vm.name, detail) for vm in nib.config.vms],
            "links": link_entries(nib),
            # Switches no configured VM mirrors: VMs made for them from templates, and rejects.
            "admissions": {"admitted": nib.admissions.admitted_count, "rejected": nib.admissions.rejected_count}}


def datapath_names(config: Config) -> dict[int, str]:
    """What mirrors each datapath of the config: a VM's name (the VMs' names, comma-separated,
    if it is shared), or the RFVS."""
    names = {vm.dpid: ", ".join(v.name for v in config.vms_of_dpid(vm.dpid)) for vm in config.vms}
    names[config.rfvs.dpid] = f"RFVS {config.rfvs.bridge}"
    return names


def datapath_ids(nib: Nib) -> list[int]:
    """Every datapath the config names or that is connected, in order."""
    return sorted(set(datapath_names(nib.config)) | set(nib.datapaths))


def datapath_entry(nib: Nib, dpid: int, stats: ControllerStats | None = None,
                   detail: bool = True, now: float = 0.0) -> dict[str, Any]:
    """One datapath of :func:`status_document`: ports, counts, and with ``detail`` its flows."""
    mirrored_by = datapath_names(nib.config).get(dpid, "")
    dp = nib.datapaths.get(dpid)
    table = dp.installed if dp else None
    return {
        "dpid": f"{dpid:#x}",
        "mirrored_by": mirrored_by,
        "connected": dp is not None,
        "ports": [
            {"port": p.port_no, "name": p.name, "mac": p.mac, "up": p.up}
            for p in sorted(dp.ports.values())
        ] if dp else [],
        "flow_count": len(table.flows) if table else 0,
        "group_count": len(table.groups) if table else 0,
        "flows": sorted(format_flow(f) for f in table.flows.values()) if table and detail else [],
        "groups": sorted(format_group(g) for g in table.groups.values()) if table and detail else [],
        "flow_mods_sent": dp.flow_mods if dp else 0,
        "compile_error": dp.compile_error if dp else "",
        "admission": admission_entry(nib, dpid),
        # VM NICs mirroring ports this switch does not have (it came back with other ports).
        "missing_ports": missing_ports(nib, dpid),
        "packet_in": None if stats is None else dict(stats.packet_in_by_kind.get(dpid, {})),
        # Second connections claiming this datapath id while it was alive (impostors or a
        # switch reconnecting from another address).
        "refused_connections": None if stats is None else stats.refused.get(dpid, 0),
        # The OpenFlow role the switch last gave the active controller (master, slave, equal).
        "controller_role": None if stats is None else stats.roles.get(dpid),
        "unresolved_next_hops": [
            {"vm": vm.name, "prefix": u.prefix, "ifname": u.ifname, "gateway": u.gateway,
             **_retry(nib.resolving.get(vm.name, {}).get((u.ifname, u.gateway)), now)}
            for vm in nib.config.vms_of_dpid(dpid) for u in nib.vms[vm.name].unresolved
        ] if dp else [],
    }


def missing_ports(nib: Nib, dpid: int) -> list[str]:
    """``"VM NIC: port N"`` for each NIC of the VMs on ``dpid`` whose port the connected switch
    does not have (its NIC is down meanwhile)."""
    dp = nib.datapaths.get(dpid)
    if dp is None:
        return []
    return [f"{vm.name} {nic.name}: port {nic.port}" for vm in nib.config.vms_of_dpid(dpid)
            for nic in vm.interfaces if nic.port not in dp.ports]


def admission_entry(nib: Nib, dpid: int) -> dict[str, Any] | None:
    """The server's decision on ``dpid`` if no configured VM mirrors it: the VM made for it
    from a template (and when it goes, if the switch left), or why it was rejected."""
    decision = nib.admissions.decisions.get(dpid)
    if decision is None:
        return None
    vm = decision.vm.name if decision.vm else None
    return {"admitted": decision.admitted, "vm": vm, "template": decision.template or None,
            "reason": decision.reason or None, "leaving": vm is not None and vm in nib.admissions.leaving}


def vm_entry(nib: Nib, name: str, detail: bool = True) -> dict[str, Any]:
    """One VM of :func:`status_document`: its NICs and their mapping, counts, and with
    ``detail`` its routes and neighbours."""
    vm = nib.config.vm(name)
    assert vm is not None, name
    state = nib.vms[vm.name]
    return {
        "name": vm.name,
        "dpid": f"{vm.dpid:#x}",
        "engine": vm.engine,
        "client_connected": state.connected,
        "synced": state.synced,
        "interfaces": interface_entries(nib, name),
        "route_count": len(state.routes),
        # Routes the client found changed in the kernel without an event, and repaired.
        "fib_audits": state.audit.audits if state.audit else 0,
        "fib_repaired": state.audit.repaired if state.audit else 0,
        "fib_last_repair": state.audit.last_repair if state.audit else "",
        "neighbour_count": len(state.neighbours),
        "routes": [route_entry(r) for r in sorted(state.routes.values())] if detail else [],
        "neighbours": [neighbour_entry(n) for n in sorted(state.neighbours.values())] if detail else [],
    }


def interface_entries(nib: Nib, name: str) -> list[dict[str, Any]]:
    """A VM's NICs: the switch port each mirrors, its RFVS port, state and addresses."""
    vm = nib.config.vm(name)
    assert vm is not None, name
    state = nib.vms[vm.name]
    wired = {}
    for a, b in nib.virtual_links():
        wired[a], wired[b] = b, a
    interfaces = []
    for nic in vm.interfaces:
        iface = state.interfaces.get(nic.name)
        rfvs = nib.rfvs_ports.get((vm.name, nic.name))
        peer = wired.get((vm.name, nic.name))
        interfaces.append({
            "name": nic.name,
            "dpid": f"{vm.dpid:#x}",
            "port": nic.port,
            "vlan": nic.vlan,
            "rfvs_port": rfvs[1] if rfvs else None,
            "mac": iface.mac if iface else None,
            "up": iface.up if iface else None,
            "addresses": list(iface.addresses) if iface else list(nic.addresses),
            # The NIC it is wired to on the RFVS (virtual routing plane), if any.
            "virtual_link": f"{peer[0]}:{peer[1]}" if peer else None,
        })
    return interfaces


def route_entry(route: Route) -> dict[str, Any]:
    return {"prefix": route.prefix, "type": route.type, "proto": route.proto,
            "nexthops": [{"ifname": h.ifname, "gateway": h.gateway} for h in route.nexthops]}


def neighbour_entry(neighbour: Neighbour) -> dict[str, Any]:
    return {"ifname": neighbour.ifname, "ip": neighbour.ip, "mac": neighbour.mac}


def link_entries(nib: Nib) -> list[dict[str, str]]:
    """The links discovered between switch ports."""
    return [{"from": f"{a[0]:#x}:{a[1]}", "to": f"{b[0]:#x}:{b[1]}"} for a, b in sorted(nib.links)]


def _retry(retry: Retry | None, now: float) -> dict[str, Any]:
    """How often the VM was asked to resolve a next hop, and when it will be again."""
    if retry is None:
        return {"resolve_attempts": 0, "next_attempt_s": None}
    return {"resolve_attempts": retry.attempts, "next_attempt_s": round(max(0.0, retry.next_at - now), 1)}


def expect_table(comparison: TableComparison, nib: Nib, dpid: int, fibs: Sequence[Fib],
                 ports: Mapping[int, PortDesc]) -> bool:
    """Give ``comparison`` what ``dpid`` must hold for ``fibs``, the FIBs of the VMs on
    it in config order (each in its routing context; the RFVS: its relay and trunk
    table), translated as a stream; False if it is not ours to check."""
    config = nib.config
    if dpid == config.rfvs.dpid:
        rfvs = nib.rfvs_table(ports)
        comparison.expect(rfvs.flows.values()).expect_groups(rfvs.groups.values())
        return True
    vms = config.vms_of_dpid(dpid)
    if not vms or len(fibs) != len(vms):
        return False
    contexts = [routing_context(config, vm) for vm in vms]
    groups = [GroupTable(ctx.group_seed) for ctx in contexts]
    comparison.expect(itertools.chain.from_iterable(
        datapath_flows(vm, fib, ports, grp, [], ctx) for vm, fib, grp, ctx in zip(vms, fibs, groups, contexts)))
    for grp in groups:  # complete once the flows have streamed by
        comparison.expect_groups(grp.by_id().values())
    return True


def datapath_name(config: Config, dpid: int) -> str:
    name = datapath_names(config).get(dpid)
    return f"{name} ({dpid:#x})" if name and dpid != config.rfvs.dpid else f"RFVS {dpid:#x}"


def fib_drift(vm: str, reported: VmState, fresh: Fib) -> list[str]:
    """What the server's copy of a VM's FIB lacks or holds in excess of the VM's real one.

    Walks the fresh FIB against the server's dicts, without building sets of
    either: a FIB may hold a million routes.
    """
    lines = []
    tables: tuple[tuple[str, Mapping[Any, Any], Iterable[Any], Callable[[Any], Any]], ...] = (
        ("interface", reported.interfaces, fresh.interfaces, lambda i: i.ifname),
        ("route", reported.routes, fresh.routes, lambda r: r.prefix),
        ("neighbour", reported.neighbours, fresh.neighbours, lambda n: (n.ifname, n.ip)),
    )
    for kind, have, real, key_of in tables:
        keys = set()
        for item in real:
            key = key_of(item)
            keys.add(key)
            held = have.get(key)
            if held != item:
                lines.append(f"{vm}: server lacks {kind} {item}")
                if held is not None:
                    lines.append(f"{vm}: server has stale {kind} {held}")
        lines += [f"{vm}: server has stale {kind} {held}" for key, held in have.items() if key not in keys]
    return lines
