"""Verify: every VM's FIB, read from its kernel now and translated, against the flows and
groups its switch holds now, datapath by datapath (``routeflow verify``)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from routeflow.flows.diff import TableComparison
from routeflow.model import Fib
from routeflow.server.nib import Nib
from routeflow.server.status import datapath_name, expect_table, fib_drift


class Sources(Protocol):
    """Where verify reads the truth: the VMs' kernels and the switches (the RF-Server's peers)."""

    async def fresh_fib(self, vm: str) -> Fib: ...

    async def compare_table(self, dpid: int, comparison: TableComparison) -> None: ...


async def differences(nib: Nib, sources: Sources) -> tuple[list[str], dict[str, int]]:
    """Each difference found, as a line naming its VM or datapath, and what was checked
    (datapaths, flows, routes). A VM or switch that cannot be read is a difference."""
    found: list[str] = []
    checked = {"datapaths": 0, "flows": 0, "routes": 0}
    config = nib.config
    targets = [(vm.dpid, vm.name) for vm in config.vms] + [(config.rfvs.dpid, None)]
    for dpid, vm_name in targets:
        fib = None
        if vm_name is not None:
            try:
                fib = await sources.fresh_fib(vm_name)
            except (ConnectionError, asyncio.TimeoutError) as exc:
                found.append(f"{vm_name}: cannot read its FIB: {exc or 'timeout'}")
                continue
            found += fib_drift(vm_name, nib.vms[vm_name], fib)
            checked["routes"] += len(fib.routes)
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
            if not expect_table(comparison, nib, dpid, fib, dp.ports):
                continue
        except Exception as exc:  # noqa: BLE001 - a bad FIB fails its own datapath's check only
            found.append(f"datapath {dpid:#x}: its table cannot be computed: {type(exc).__name__}: {exc}")
            continue
        del fib
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
