"""``python -m routeflow.vnet.cleanup [STATE]``: remove the VMs a crashed RF-Server left behind.

Exit status 0 when nothing is left (or nothing was recorded), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from routeflow.vnet import VnetError
from routeflow.vnet.manager import DEFAULT_STATE, cleanup_stale


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    state = Path(argv[0]) if argv else DEFAULT_STATE
    try:
        removed = asyncio.run(cleanup_stale(state))
    except VnetError as exc:
        logging.getLogger("routeflow.vnet").error("%s", exc)
        return 1
    logging.getLogger("routeflow.vnet").info(
        "removed the resources recorded in %s" if removed else "nothing recorded in %s", state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
