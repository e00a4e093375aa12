"""Verify: every VM's FIB, read from its kernel now and translated, against the flows and
groups its switch holds now, datapath by datapath (``routeflow verify``). A datapath
several VMs share must hold each one's translation in its routing context, and nothing
that belongs to none of them."""

from __future__ import annotations

import asyncio
from typing import Protocol, Sequence

from routeflow.config.schema import VmConfig
from routeflow.flows.diff import TableComparison
from routeflow.model import Fib
from routeflow.server.nib import Nib
from routeflow.server.status import datapath_name, expect_table, fib_drift


class Sources(Protocol):
    """Where verify reads the truth: the VMs' kernels and the switches (the RF-Server's peers)."""

    async def fresh_fib(self, vm: str) -> Fib: ...

    async def compare_table(self, dpid: int, comparison: TableComparison) -> None: ...


async def _fresh_fibs(nib: Nib, sources: Sources, vms: Sequence[VmConfig], found: list[str],
                      checked: dict[str, int]) -> list[Fib] | None:
    """The FIBs of ``vms`` read now, their drift from the server's copies added to ``found``;
    None if one cannot be read."""
    fibs = []
    for vm in vms:
        try:
            fibs.append(await sources.fresh_fib(vm.name))
        except (ConnectionError, asyncio.TimeoutError) as exc:
            found.append(f"{vm.name}: cannot read its FIB: {exc or 'timeout'}")
            return None
        found += fib_drift(vm.name, nib.vms[vm.name], fibs[-1])
        checked["routes"] += len(fibs[-1].routes)
    return fibs


async def differences(nib: Nib, sources: Sources) -> tuple[list[str], dict[str, int]]:
    """Each difference found, as a line naming its VM or datapath, and what was checked
    (datapaths, flows, routes). A VM or switch that cannot be read is a difference."""
    found: list[str] = []
    checked = {"datapaths": 0, "flows": 0, "routes": 0}
    config = nib.config
    targets = [(dpid, config.vms_of_dpid(dpid)) for dpid in dict.fromkeys(vm.dpid for vm in config.vms)]
    for dpid, vms in [*targets, (config.rfvs.dpid, ())]:
        fibs = await _fresh_fibs(nib, sources, vms, found, checked)
        if fibs is None:
            continue
        dp = nib.datapaths.get(dpid)
        if dp is None:
            found.append(f"datapath {dpid:#x}: not connected")
            continue
        # Translate as a stream against our copy of the switch's table, then
        # let the FIB go before the dump arrives: at a million routes a whole
        # translated table or FIB is hundreds of megabytes.
        if dp.compile_error:
            found.append(f"datapath {dpid:#x}: flows not updated: {dp.compile_error}")
        comparison = TableComparison(dp.installed)
        try:
            if not expect_table(comparison, nib, dpid, fibs, dp.ports):
                continue
        except Exception as exc:  # noqa: BLE001 - a bad FIB fails its own datapath's check only
            found.append(f"datapath {dpid:#x}: its table cannot be computed: {type(exc).__name__}: {exc}")
            continue
        del fibs
        try:
            await sources.compare_table(dpid, comparison)
        except (ConnectionError, asyncio.TimeoutError) as exc:
            found.append(f"datapath {dpid:#x}: cannot read its table: {exc or 'timeout'}")
            continue
        checked["datapaths"] += 1
        checked["flows"] += comparison.flows_seen
        found += comparison.lines(datapath_name(config, dpid))
        del comparison
    return found, checked
