"""A VM on another host: the real RF-Server in one network namespace listening on
``tls:`` at a non-loopback address, the real RF-Client of a VM in another
namespace reaching it across a veth, the operator's CLI beside the server. Every
peer proves itself with its certificate; nothing else gets in."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.processes import sh, stop_process

from routeflow.harness import example_variant, running, wait_for
from routeflow.protocol import pki

pytestmark = pytest.mark.integration

SERVER_NS, VM_NS = "ttls-srv", "ttls-vm"
SERVER_IP = "10.98.0.1"
ADDRESS = f"tls:{SERVER_IP}:6651"


@pytest.fixture(scope="module", autouse=True)
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


@pytest.fixture
def hosts() -> Iterator[None]:
    """Two namespaces, a veth between them: the server's host and the VM."""
    for ns in (SERVER_NS, VM_NS):
        sh("ip", "netns", "del", ns, check=False)
    try:
        for ns in (SERVER_NS, VM_NS):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", SERVER_NS, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", VM_NS)
        sh("ip", "-n", SERVER_NS, "addr", "add", f"{SERVER_IP}/24", "dev", "wan0")
        sh("ip", "-n", VM_NS, "addr", "add", "10.98.0.2/24", "dev", "wan0")
        sh("ip", "-n", VM_NS, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
        sh("ip", "-n", VM_NS, "link", "set", "eth1p", "up")
        sh("ip", "-n", VM_NS, "addr", "add", "172.31.1.1/24", "dev", "eth1")
        for ns in (SERVER_NS, VM_NS):
            sh("ip", "-n", ns, "link", "set", "wan0", "up")
        sh("ip", "-n", VM_NS, "link", "set", "eth1", "up")
        sh("ip", "-n", VM_NS, "route", "add", "198.18.7.0/24", "via", "172.31.1.2")
        yield
    finally:
        for ns in (SERVER_NS, VM_NS):
            sh("ip", "netns", "del", ns, check=False)
        assert not {SERVER_NS, VM_NS} & set(sh("ip", "netns", "list").stdout.split())


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "routeflow", *argv]


def status(keys: Path) -> dict:
    """The server's status; no controller runs here, so status exits 1 saying so."""
    done = subprocess.run(in_ns(SERVER_NS, "status", "--json", "--server", ADDRESS, "--keys", str(keys)),
                          capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert "controller not connected" in document["problems"], document["problems"]
    return document


def test_a_vm_on_another_host_over_tls(hosts: None, tmp_path: Path) -> None:
    config = tmp_path / "routeflow.yaml"
    config.write_text(yaml.safe_dump({"manage_vms": False, "listen": [ADDRESS], "http": {"listen": "off"}, "vms": [
        {"name": "rA", "dpid": 1, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]},
        {"name": "rB", "dpid": 2, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]}]}))
    keys = tmp_path / "keys"
    assert subprocess.run(in_ns(SERVER_NS, "pki", "init", str(config), "--keys", str(keys))).returncode == 0
    # The VM's host holds the CA and its own credential only.
    vm_keys = tmp_path / "vm-keys"
    (vm_keys / "tls").mkdir(parents=True)
    for name in ("ca.crt", "client-rA.crt", "client-rA.key"):
        (vm_keys / "tls" / name).write_bytes((pki.tls_dir(keys) / name).read_bytes())
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("server", "rA", "impostor")}
    procs = [subprocess.Popen(in_ns(SERVER_NS, "-v", "server", str(config), "--keys", str(keys)),
                              stdout=logs["server"], stderr=subprocess.STDOUT)]
    try:
        procs.append(subprocess.Popen(in_ns(VM_NS, "-v", "client", "--vm", "rA", "--server", ADDRESS,
                                            "--keys", str(vm_keys)),
                                      stdout=logs["rA"], stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while True:
            try:
                vm = next(v for v in status(keys)["vms"] if v["name"] == "rA")
                if vm["client_connected"] and vm["route_count"] >= 1:
                    break
            except AssertionError:
                pass  # not listening yet
            assert time.monotonic() < deadline, (tmp_path / "rA.log").read_text()
            time.sleep(0.3)
        doc = status(keys)
        assert doc["server"]["listeners"] == [{"address": ADDRESS, "authenticated": True, "encrypted": True}]
        # rA's credential cannot be rB's client: refused, counted, and rA stays.
        impostor = subprocess.Popen(in_ns(VM_NS, "client", "--vm", "rB", "--server", ADDRESS,
                                          "--keys", str(vm_keys)), stdout=logs["impostor"], stderr=subprocess.STDOUT)
        procs.append(impostor)
        assert impostor.wait(10) == 2  # it has no credential of rB's at all
        (vm_keys / "tls" / "client-rB.crt").write_bytes((vm_keys / "tls" / "client-rA.crt").read_bytes())
        (vm_keys / "tls" / "client-rB.key").write_bytes((vm_keys / "tls" / "client-rA.key").read_bytes())
        impostor = subprocess.Popen(in_ns(VM_NS, "client", "--vm", "rB", "--server", ADDRESS,
                                          "--keys", str(vm_keys)), stdout=logs["impostor"], stderr=subprocess.STDOUT)
        procs.append(impostor)
        deadline = time.monotonic() + 15
        while status(keys)["server"]["auth_failures"] < 1:
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        doc = status(keys)
        by_name = {v["name"]: v for v in doc["vms"]}
        assert by_name["rA"]["client_connected"] and not by_name["rB"]["client_connected"]
        assert "its certificate is 'client-rA''s" in (tmp_path / "server.log").read_text()
        text = subprocess.run(in_ns(SERVER_NS, "status", "--server", ADDRESS, "--keys", str(keys)),
                              capture_output=True, text=True).stdout
        assert f"{ADDRESS}  certificate  yes" in text and "failed authentication: 0" not in text
        # The operator's CLI with no credential of ours is refused before it connects.
        done = subprocess.run(in_ns(SERVER_NS, "status", "--server", ADDRESS, "--keys", str(tmp_path / "none")),
                              capture_output=True, text=True)
        assert done.returncode != 0 and "routeflow pki init" in done.stderr
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        for log in logs.values():
            log.close()


def test_openflow_over_tls_on_the_real_stack(tmp_path: Path) -> None:
    """rftest1 with every switch (and the RFVS) connecting to ssl:127.0.0.1:6653: the
    controller speaks TLS only and requires the switches' certificate; the hosts reach
    each other through flows installed over it, verify is clean, and a plain-text
    OpenFlow hello on the controller's port gets nothing."""
    target = "ssl:127.0.0.1:6653"
    example = example_variant("rftest1", tmp_path / "example", switch_settings={"controller": target},
                              config_settings={"rfvs": {"bridge": "rfvs", "dpid": 0x7266, "controller": target}})
    with running(example, tmp_path / "run", lambda stack: stack.all_pairs_ok()) as stack:
        assert "(TLS)" in (tmp_path / "run" / "controller.log").read_text()
        for bridge in ("s1", "rfvs"):
            assert sh("ovs-vsctl", "get-controller", bridge).stdout.split() == [target]

        def connected() -> list:
            return json.loads(sh("ovs-vsctl", "--format=json", "--columns=is_connected", "find", "Controller",
                                 f'target="{target}"').stdout)["data"]

        wait_for(lambda: connected() == [[True], [True]], 15, 0.5)  # OVS writes its status every few s
        assert sh("ovs-vsctl", "get-ssl").stdout.strip()
        with socket.create_connection(("127.0.0.1", 6653), timeout=5) as raw:
            raw.sendall(bytes.fromhex("0400000800000001"))  # OFPT_HELLO, OpenFlow 1.3
            raw.settimeout(5)
            try:
                answer = raw.recv(100)
            except (ConnectionError, TimeoutError):
                answer = b""
            assert not answer.startswith(b"\x04\x00"), answer  # no OpenFlow hello back in plain text
        stack.wait_verify_clean()
    assert not sh("ovs-vsctl", "get-ssl").stdout.strip()  # the lab and the server took the credential away
