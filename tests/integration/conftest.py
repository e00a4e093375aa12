"""Integration tests leave nothing behind: after the session, no network
namespace and no OVS bridge may remain (the test fails if one does)."""

from __future__ import annotations

import os
import subprocess

import pytest


def _leftovers() -> tuple[list[str], list[str]]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    bridges = subprocess.run(["ovs-vsctl", "--timeout=5", "list-br"], capture_output=True, text=True).stdout
    return [n.split()[0] for n in netns if n.strip()], bridges.split()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    before = _leftovers()
    yield
    after = _leftovers()
    new = [n for n in after[0] if n not in before[0]], [b for b in after[1] if b not in before[1]]
    assert new == ([], []), f"left behind: namespaces {new[0]}, bridges {new[1]}"


@pytest.fixture(scope="module")
def ovs_running() -> None:
    """Open vSwitch up (started if it is not), for tests that drive it directly."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if subprocess.run(["ovs-vsctl", "--timeout=3", "show"], capture_output=True, check=False).returncode != 0:
        subprocess.run(["/usr/share/openvswitch/scripts/ovs-ctl", "start", "--system-id=random"],
                       check=True, capture_output=True)
