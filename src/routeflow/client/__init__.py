"""The RF-Client: runs in each VM, mirrors its FIB to the RF-Server.

This module holds only what starting it needs on the command line, so that
``routeflow``'s CLI can offer the client's options without importing it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from routeflow.protocol.auth import KEY_DIR

#: Least seconds between two audits of the FIB against the kernel (see the watcher).
AUDIT_INTERVAL = 30.0


def _audit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value == 0 or 1 <= value <= 86400):
        raise argparse.ArgumentTypeError(f"{text!r}: 0 (no audits) or 1 to 86400 seconds")
    return value


def add_audit_option(parser: argparse.ArgumentParser) -> None:
    """``--audit-interval SECONDS``, for both ways of starting the client."""
    parser.add_argument(
        "--audit-interval", type=_audit_interval, default=AUDIT_INTERVAL, metavar="SECONDS",
        help="least time between two audits of the FIB against the kernel, 0 for none (default %(default)s)",
    )


def add_keys_option(parser: argparse.ArgumentParser) -> None:
    """``--keys DIR``: where this peer finds the key that proves who it is."""
    parser.add_argument("--keys", type=Path, default=KEY_DIR, metavar="DIR",
                        help="directory of routeflow's keys (default %(default)s)")
