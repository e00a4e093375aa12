"""A configuration reload on the real stack (rftest2, FRR): a NIC and an address added to a
VM, an OSPF cost changed, a host port removed, and a broken file refused; each applied to
the running VM (its namespace, FRR's own reload) with nothing restarted, while h1 pings h2
every 10 ms through switches no change touches: not one ping lost, verify clean after each
step, and FlowMods sent only to the datapaths changed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from tests.scenarios import stream_loss

from routeflow.harness import Stack, example_variant, ping, running, wait_for
from routeflow.vnet.frr import vtysh

pytestmark = pytest.mark.integration

RFVS = "0x7266"


@pytest.fixture(scope="module")
def rftest2(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reload")
    example = example_variant("rftest2", run_dir / "example")
    with running(example, run_dir, lambda stack: stack.all_pairs_ok()) as stack:
        yield stack


@pytest.fixture()
def h1_to_h2():
    """h1 pings h2 every 10 ms for the test's length; yields a function returning (sent, lost) so far."""
    pinger = subprocess.Popen(["ip", "netns", "exec", "h1", "ping", "-n", "-i", "0.01", "-W", "1", "172.31.2.100"],
                              stdout=subprocess.PIPE, text=True)
    result: list[tuple[int, int]] = []

    def stop() -> tuple[int, int]:
        if not result:
            pinger.send_signal(signal.SIGINT)
            result.append(stream_loss(pinger.communicate(timeout=10)[0]))
        return result[0]
    try:
        yield stop
    finally:
        stop()


def edit(stack: Stack, vm: str, change) -> None:
    """Change VM ``vm`` in the stack's config file with ``change(entry)``."""
    document = yaml.safe_load(stack.config_path.read_text())
    change(next(entry for entry in document["vms"] if entry["name"] == vm))
    stack.config_path.write_text(yaml.safe_dump(document, sort_keys=False))


def reload(stack: Stack) -> dict:
    """``routeflow reload --json`` as an operator runs it; its report, and the time it took."""
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "routeflow", "reload", "--json"], capture_output=True, text=True,
                         timeout=120)
    report = json.loads(out.stdout)
    report["seconds"] = round(time.monotonic() - start, 2)
    report["exit"] = out.returncode
    print(f"\nreload: {report}")
    return report


def ospf_cost(vm: str, ifname: str) -> int:
    return json.loads(vtysh(vm, f"show ip ospf interface {ifname} json"))["interfaces"][ifname]["cost"]


def addresses(vm: str, ifname: str) -> list[str]:
    out = subprocess.run(["ip", "-n", vm, "-j", "address", "show", "dev", ifname], capture_output=True, text=True)
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out.stdout or "[]") for a in link["addr_info"]
            if a["scope"] == "global"]


def test_reload_applies_each_change_to_the_running_vms_and_loses_nothing(rftest2, h1_to_h2):
    stack = rftest2
    daemons = {vm: stack.daemon_pid(vm, "zebra") for vm in ("rA", "rB", "rC", "rD")}

    # 1. rD: a NIC (its port is not on sD: down) and an address on its host NIC.
    def grow(entry):
        entry["interfaces"][0]["addresses"].append("172.31.40.1/24")
        entry["interfaces"].append({"name": "eth9", "port": 9, "addresses": ["10.9.9.1/24"]})
    edit(stack, "rD", grow)
    report = reload(stack)
    assert report["ok"] and report["exit"] == 0, report
    assert report["changes"] == ["VM rD: NICs added eth9; NICs changed eth1"]
    assert set(report["flow_mods"]) <= {"0x4", RFVS}, report["flow_mods"]
    assert addresses("rD", "eth9") == ["10.9.9.1/24"] and "172.31.40.1/24" in addresses("rD", "eth1")
    assert wait_for(lambda: ping("h4", "172.31.40.1").ok, 10, 0.2)  # the new address answers
    stack.wait_verify_clean(timeout=15)

    # 2. rC: the cost of its link to rD (C-D) from 10 to 100; FRR takes it without a restart.
    def costly(entry):
        config = entry["engine_config"]
        at = config.index("interface eth5")
        entry["engine_config"] = config[:at] + config[at:].replace("ip ospf cost 10", "ip ospf cost 100", 1)
    edit(stack, "rC", costly)
    report = reload(stack)
    assert report["ok"] and report["changes"] == ["VM rC: engine config"], report
    assert ospf_cost("rC", "eth5") == 100
    stack.wait_verify_clean(timeout=15)

    # 3. rD: its host port gone (h4's subnet withdrawn everywhere).
    edit(stack, "rD", lambda entry: entry.update(interfaces=entry["interfaces"][1:]))
    report = reload(stack)
    assert report["ok"] and report["changes"] == ["VM rD: NICs removed eth1"], report
    assert subprocess.run(["ip", "-n", "rD", "link", "show", "eth1"], capture_output=True).returncode != 0
    wait_for(lambda: not ping("h1", "172.31.4.100", timeout=0.3).ok, 15, 0.2)
    stack.wait_verify_clean(timeout=15)

    # 4. A broken file: refused whole, naming the field; nothing changes.
    good = stack.config_path.read_text()
    edit(stack, "rA", lambda entry: entry["interfaces"][0].update(port=0))
    report = reload(stack)
    assert not report["ok"] and report["exit"] == 1
    assert any(re.search(r"vms\[0\]\.interfaces\[0\]\.port", p) for p in report["problems"]), report
    stack.config_path.write_text(good)
    assert ping("h1", "172.31.1.1").ok

    sent, lost = h1_to_h2()
    print(f"h1 -> h2 while reloading: {lost} lost of {sent}")
    assert sent > 100 and lost == 0
    assert {vm: stack.daemon_pid(vm, "zebra") for vm in daemons} == daemons  # no engine restarted
    stack.wait_verify_clean(timeout=15)


def test_a_reload_that_needs_a_restart_is_refused(rftest2):
    document = yaml.safe_load(rftest2.config_path.read_text())
    good = rftest2.config_path.read_text()
    document["rfvs"]["dpid"] = 0x7267
    rftest2.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        report = reload(rftest2)
    finally:
        rftest2.config_path.write_text(good)
    assert not report["ok"]
    assert report["problems"] == [f"{rftest2.config_path}: rfvs: cannot change while the server runs: restart it"]
    rftest2.wait_verify_clean(timeout=15)

