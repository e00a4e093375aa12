"""The virtual environment: virtual routers (network namespaces) on the RFVS.

``manager.VirtualEnvironment`` brings a config's VMs up and down; ``plan``
says, purely, what that means; ``driver`` does it for one VM; ``engine``
plans and starts a routing engine (``frr``, ``bird``) in a namespace, for
VMs and the lab's legacy routers alike; ``links``,
``ovs`` and ``resources`` are the Linux, Open vSwitch and record-keeping
primitives the lab shares.
"""


class VnetError(Exception):
    """Creating, querying or removing part of a virtual network failed."""
