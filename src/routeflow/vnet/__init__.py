"""The virtual environment: virtual routers (network namespaces) on the RFVS.

``manager.VirtualEnvironment`` brings a config's VMs up and down; ``plan``
says, purely, what that means; ``driver`` does it for one VM; ``engine``
plans and starts a routing engine (``frr``, ``bird``) in a namespace, for
VMs and the lab's legacy routers alike; ``links``,
``ovs`` and ``resources`` are the Linux, Open vSwitch and record-keeping
primitives the lab shares.
"""


import subprocess
from collections.abc import Sequence


class VnetError(Exception):
    """Creating, querying or removing part of a virtual network failed."""


def query(argv: Sequence[str], what: str, timeout: float) -> str:
    """Run a routing engine's query tool (vtysh, birdc); its output, or VnetError naming ``what``."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VnetError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise VnetError(f"{what}: {(done.stderr or done.stdout).strip()}")
    return done.stdout
