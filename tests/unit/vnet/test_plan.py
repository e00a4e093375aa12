"""The plan of a config's virtual environment (no system access)."""

import ipaddress
import sys
from pathlib import Path

import pytest

from routeflow.config.loader import load_config, parse_config
from routeflow.errors import ConfigError
from routeflow.vnet import frr
from routeflow.vnet.ovs import BridgeSpec, add_bridge_argv, add_port_argv
from routeflow.vnet.plan import VM_SYSCTLS, client_argv, client_server_address, plan_vnet

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
RUN = Path("/run/rf-test/vms")


def test_rftest2_plan():
    plan = plan_vnet(load_config(EXAMPLES / "rftest2" / "routeflow.yaml"), RUN)
    # Each switch's trunk lands on a patch port whose peer the lab creates.
    patches = tuple((f"rft{n}-rf", None, f"rft{n}-sw") for n in (1, 2, 3, 4))
    assert plan.bridge == BridgeSpec("rfvs", 0x7266, ("tcp:127.0.0.1:6653",), (), patches)
    assert [v.name for v in plan.vms] == ["rA", "rB", "rC", "rD"]
    ra = plan.vm("rA")
    assert ra.netns == "rA" and ra.dpid == 1
    assert [(n.name, n.host_ifname, n.port, n.mac) for n in ra.nics] == [
        ("eth1", "rA-eth1", 1, "02:52:46:01:00:01"), ("eth3", "rA-eth3", 3, "02:52:46:01:00:03"),
        ("eth4", "rA-eth4", 4, "02:52:46:01:00:04"), ("eth5", "rA-eth5", 5, "02:52:46:01:00:05")]
    assert ra.nics[1].addresses == (ipaddress.ip_interface("10.0.12.1/24"),)
    assert ra.loopback == (ipaddress.ip_interface("10.255.0.1/32"), ipaddress.ip_interface("2001:db8:ff::1/128"))
    assert dict(ra.sysctls)["net.ipv4.ip_forward"] == "1"
    assert dict(ra.sysctls)["net.ipv4.conf.all.rp_filter"] == "0"
    assert ra.sysctls == VM_SYSCTLS
    assert ra.run_dir == RUN / "rA"
    assert [d.name for d in ra.daemons] == ["zebra", "ospfd", "ospf6d"]


def test_frr_daemon_command_lines_and_conf():
    plan = plan_vnet(load_config(EXAMPLES / "rftest2" / "routeflow.yaml"), RUN)
    rb = plan.vm("rB")
    zebra, ospfd, _ = rb.daemons
    assert zebra.argv == ("/usr/lib/frr/zebra", "-d", "-N", "rB", "-f", str(RUN / "rB/frr.conf"),
                          "-i", str(RUN / "rB/zebra.pid"), "-z", str(RUN / "rB/zserv.api"),
                          "--vty_socket", str(RUN / "rB"), "-K", "30")
    assert zebra.pidfile == RUN / "rB/zebra.pid"
    # Only zebra keeps its predecessor's kernel routes (-K) while the daemons come back.
    assert ospfd.argv[0] == "/usr/lib/frr/ospfd" and ospfd.argv[1:] == zebra.argv[1:6] + (
        "-i", str(RUN / "rB/ospfd.pid")) + zebra.argv[8:-2]
    conf = rb.engine_conf.splitlines()
    assert conf[1] == "hostname rB"
    assert f"log file {RUN / 'rB/frr.log'}" in conf
    assert " ospf router-id 10.255.0.2" in conf
    assert rb.engine_conf.endswith("network 10.255.0.2/32 area 0\n")


def test_engine_none_has_no_daemons():
    plan = plan_vnet(load_config(EXAMPLES / "rftest1" / "routeflow.yaml"), RUN)
    vm = plan.vm("rfvmA")
    assert vm.engine == "none" and vm.run_dir is None and vm.daemons == () and vm.engine_conf == ""
    assert [n.host_ifname for n in vm.nics] == ["rfvmA-eth1", "rfvmA-eth2"]


def test_rfvs_side_names_must_fit_linux():
    config = parse_config({"vms": [{"name": "router_ten", "dpid": 1, "engine": "none", "interfaces": [
        {"name": "eth1", "port": 1}, {"name": "ethernet2", "port": 2}]}]}, "cfg.yaml")
    with pytest.raises(ConfigError) as info:
        plan_vnet(config, RUN)
    assert info.value.file == "cfg.yaml"
    assert dict(info.value.problems) == {
        "vms[0].interfaces[1].name": "the RFVS interface name 'router_ten-ethernet2' is longer than "
                                     "Linux's 15 characters"}


def test_client_command_and_server_address():
    assert client_argv("rA", "unix:/x.sock") == [sys.executable, "-m", "routeflow", "client", "--vm", "rA",
                                                 "--server", "unix:/x.sock", "--keys", "/run/routeflow/keys"]
    base = {"vms": [{"name": "a", "dpid": 1, "interfaces": [{"name": "e", "port": 1}]}]}
    assert client_server_address(parse_config({**base, "listen": ["tcp:127.0.0.1:1", "unix:/s"]})) == "unix:/s"
    assert client_server_address(parse_config({**base, "listen": ["tcp:127.0.0.1:6650"]})) == "tcp:127.0.0.1:6650"


def test_bridge_is_one_transaction():
    argv = add_bridge_argv(BridgeSpec("sA", 0x1, ("tcp:127.0.0.1:6653",), (("sA-p1", 1),)))
    assert argv[:3] == ["--", "add-br", "sA"]
    for setting in ("datapath_type=netdev", "fail_mode=secure", "protocols=OpenFlow13",
                    "other-config:datapath-id=0000000000000001", 'target="tcp:127.0.0.1:6653"',
                    "max_backoff=1000", "controller=[@c0]"):
        assert setting in argv
    port = add_port_argv("sA", "sA-p1", 1)
    assert argv[-len(port):] == port == ["--", "add-port", "sA", "sA-p1",
                                         "--", "set", "Interface", "sA-p1", "ofport_request=1"]
    assert add_port_argv("rfvs", "rA-eth1") == ["--", "add-port", "rfvs", "rA-eth1"]


def test_a_bridge_without_a_controller_has_no_controller_row():
    spec = BridgeSpec("bnb-t1", 0x1, (), (("bnb-t1-p1", 1),))
    argv = add_bridge_argv(spec)
    assert "fail_mode=secure" in argv and "Controller" not in argv and not any("controller=" in a for a in argv)
    assert not spec.tls and BridgeSpec("sA", 0x1, ("tcp:127.0.0.1:6653", "ssl:127.0.0.1:6654")).tls


def test_a_bridge_of_a_controller_pair_is_given_both_targets_in_one_transaction():
    argv = add_bridge_argv(BridgeSpec("sA", 0x1, ("tcp:127.0.0.1:6653", "tcp:127.0.0.1:6654")))
    assert argv.count("Controller") == 2 and 'target="tcp:127.0.0.1:6654"' in argv
    assert argv[argv.index("--id=@c1") - 1] == "--" and "controller=[@c0,@c1]" in argv


def test_a_trunk_on_a_host_nic_puts_that_nic_on_the_rfvs():
    config = parse_config({"vms": [{"name": "rA", "dpid": 1, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}],
                                    "trunk": {"port": 48, "rfvs_interface": "enp3s0"}}]})
    bridge = plan_vnet(config, RUN).bridge
    assert bridge.ports == (("enp3s0", None),) and bridge.patches == ()


def test_patch_port_is_created_with_its_bridge():
    argv = add_bridge_argv(BridgeSpec("sA", 0x1, ("tcp:127.0.0.1:6653",), patches=(("rft1-sw", 100, "rft1-rf"),)))
    assert argv[-15:] == ["--", "add-port", "sA", "rft1-sw", "--", "set", "Interface", "rft1-sw",
                          "ofport_request=100", "--", "set", "Interface", "rft1-sw", "type=patch",
                          "options:peer=rft1-rf"]


def test_vtysh_failure_is_reported(tmp_path):
    from routeflow.vnet import VnetError

    with pytest.raises(VnetError, match="rX"):
        frr.vtysh("rX", "show version", run_root=tmp_path, timeout=5)


def test_vms_route_ipv6_without_dad_delays_and_keep_link_local_addresses():
    sysctls = dict(VM_SYSCTLS)
    assert sysctls["net.ipv6.conf.all.forwarding"] == "1"
    # "default" before the NICs exist (they inherit it); "all" because DAD runs unless both are 0.
    assert sysctls["net.ipv6.conf.default.accept_dad"] == sysctls["net.ipv6.conf.all.accept_dad"] == "0"
    assert sysctls["net.ipv6.conf.default.keep_addr_on_down"] == "1"  # a NIC set down keeps its addresses
    # Link-local addresses must exist: routing protocols speak from them.
    assert not any(key.endswith(("addr_gen_mode", "disable_ipv6")) for key in sysctls)
