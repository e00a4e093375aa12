"""The status document and the verify comparison, both pure functions of NIB state."""

from __future__ import annotations

from typing import Any, Mapping

from routeflow.config.schema import Config
from routeflow.flows.compiler import compile_datapath, compile_rfvs
from routeflow.flows.diff import describe_differences
from routeflow.flows.model import Table, format_flow, format_group
from routeflow.model import Fib, PortDesc
from routeflow.server.nib import Nib


def status_document(nib: Nib, packet_in: Mapping[int, Mapping[str, int]] | None = None,
                    detail: bool = True) -> dict[str, Any]:
    """A JSON-ready picture of the system: datapaths, VMs, mappings, routes and flows.

    ``packet_in`` is the controller's slow-path counters by datapath and traffic
    kind, or None if the controller could not be asked. Without ``detail``
    only counts of routes, neighbours, flows and groups are given (a million
    routes make a large document).
    """
    config = nib.config
    datapaths = []
    names = {vm.dpid: vm.name for vm in config.vms}
    names[config.rfvs.dpid] = f"RFVS {config.rfvs.bridge}"
    for dpid in sorted(set(names) | set(nib.datapaths)):
        dp = nib.datapaths.get(dpid)
        table = dp.installed if dp else None
        datapaths.append({
            "dpid": f"{dpid:#x}",
            "mirrored_by": names.get(dpid, ""),
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
            "packet_in": None if packet_in is None else dict(packet_in.get(dpid, {})),
            "unresolved_next_hops": [
                {"prefix": u.prefix, "ifname": u.ifname, "gateway": u.gateway} for u in dp.unresolved
            ] if dp else [],
        })
    vms = []
    for vm in config.vms:
        state = nib.vms[vm.name]
        interfaces = []
        for nic in vm.interfaces:
            iface = state.interfaces.get(nic.name)
            rfvs = nib.rfvs_ports.get((vm.name, nic.name))
            interfaces.append({
                "name": nic.name,
                "dpid": f"{vm.dpid:#x}",
                "port": nic.port,
                "rfvs_port": rfvs[1] if rfvs else None,
                "mac": iface.mac if iface else None,
                "up": iface.up if iface else None,
                "addresses": list(iface.addresses) if iface else list(nic.addresses),
            })
        vms.append({
            "name": vm.name,
            "dpid": f"{vm.dpid:#x}",
            "engine": vm.engine,
            "client_connected": state.connected,
            "synced": state.synced,
            "interfaces": interfaces,
            "route_count": len(state.routes),
            "neighbour_count": len(state.neighbours),
            "routes": [] if not detail else [
                {
                    "prefix": r.prefix,
                    "type": r.type,
                    "proto": r.proto,
                    "nexthops": [{"ifname": h.ifname, "gateway": h.gateway} for h in r.nexthops],
                }
                for r in sorted(state.routes.values())
            ],
            "neighbours": [] if not detail else [
                {"ifname": n.ifname, "ip": n.ip, "mac": n.mac} for n in sorted(state.neighbours.values())
            ],
        })
    return {"controller_connected": nib.controller_connected, "datapaths": datapaths, "vms": vms}


def verify_datapath(config: Config, dpid: int, fib: Fib | None, ports: Mapping[int, PortDesc],
                    actual: Table) -> list[str]:
    """Differences between what ``dpid`` holds and what ``fib`` translates to."""
    if dpid == config.rfvs.dpid:
        return describe_differences(f"RFVS {dpid:#x}", actual, compile_rfvs())
    vm = config.vm_of_dpid(dpid)
    if vm is None or fib is None:
        return []
    expected = compile_datapath(vm, fib, ports).table
    return describe_differences(f"{vm.name} ({dpid:#x})", actual, expected)


def fib_drift(vm: str, reported: Fib, fresh: Fib) -> list[str]:
    """What the server's copy of a VM's FIB lacks or holds in excess of the VM's real one."""
    lines = []
    for kind, have, real in (
        ("interface", set(reported.interfaces), set(fresh.interfaces)),
        ("route", set(reported.routes), set(fresh.routes)),
        ("neighbour", set(reported.neighbours), set(fresh.neighbours)),
    ):
        lines += [f"{vm}: server lacks {kind} {item}" for item in sorted(real - have)]
        lines += [f"{vm}: server has stale {kind} {item}" for item in sorted(have - real)]
    return lines
