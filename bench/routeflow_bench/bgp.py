"""100k routes announced over BGP by an external peer: not measurable yet.

It needs a BGP-speaking VM peering with a lab host (issue 3, BGP peers); until then the
row says so instead of a number.
"""

from __future__ import annotations

from routeflow_bench.common import Context
from routeflow_bench.report import Row

#: Nothing to bring up: the runner need not wait for the stack lock.
NEEDS_LOCK = False


def run(ctx: Context) -> list[Row]:
    return [Row("bgp", "100k routes over BGP from an external peer", status="skipped",
                note="not yet: needs issue 3 (BGP peers): no example has a VM peering with an external "
                     "BGP speaker; the install benchmark measures the same pipeline from the FIB on")]
