"""The lab: an emulated physical network for demos and tests.

``topology`` reads a topology file into a pure graph of switches, hosts and
links; ``network`` builds it from Open vSwitch bridges, host namespaces and
veth cables, and removes it again.
"""
