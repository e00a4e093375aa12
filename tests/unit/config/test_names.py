"""Every string the config hands to a command is checked against its grammar at load time."""

import pytest
from tests.problems import problems as config_problems

from routeflow.config.fields import CONTROLLER_FORMS, controller_problem, ifname_problem
from routeflow.config.loader import parse_config
from routeflow.config.safe_yaml import shown

VM = {"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}


def problems(document: object) -> dict[str, str]:
    return config_problems(parse_config, document, "cfg.yaml")


def with_vm(**changes: object) -> dict:
    return {"vms": [{**VM, **changes}]}


@pytest.mark.parametrize("name, reason", [
    ("-eth1", "it starts with '-', which commands would read as an option"),
    ("--help", "it starts with '-', which commands would read as an option"),
    ("a/b", "it contains '/' (no '/', ':' or '%')"),
    ("eth0:1", "it contains ':' (no '/', ':' or '%')"),
    ("eth%d", "it contains '%' (no '/', ':' or '%')"),
    ("eth 1", "it contains whitespace"),
    ("eth1\n", "it contains whitespace"),
    ("\teth1", "it contains whitespace"),
    (".", "'.' is a directory name"),
    ("..", "'..' is a directory name"),
    ("x" * 16, "it is 16 bytes long (at most 15)"),
    ("é" * 8, "it is 16 bytes long (at most 15)"),
    ("eth\x00", "it contains '\\x00' (printable ASCII only)"),
    ("ethé", "it contains 'é' (printable ASCII only)"),
])
def test_rfvs_interface_follows_linux_ifname_rules(name, reason):
    assert ifname_problem(name) == reason
    found = problems(with_vm(trunk={"port": 9, "rfvs_interface": name}))
    assert found == {"vms[0].trunk.rfvs_interface": f"{name!r} is not an interface name: {reason}"}


@pytest.mark.parametrize("name", ["eth3", "x" * 15, "enp0s31f6.100", "br-ex", "a", "veth_1@x"])
def test_good_interface_names(name):
    assert ifname_problem(name) is None
    config = parse_config(with_vm(trunk={"port": 9, "rfvs_interface": name}))
    assert config.vms[0].trunk.rfvs_interface == name


@pytest.mark.parametrize("target", [
    "tcp:127.0.0.1:6653", "tcp:10.0.0.1", "ssl:192.0.2.1:6633", "tcp:[::1]:6653", "ssl:[2001:db8::1]",
    "unix:/var/run/openvswitch/rfvs.sock", "unix:rfvs.mgmt", "ptcp:", "ptcp:6653", "ptcp:6653:127.0.0.1",
    "pssl::[::1]", "ptcp:6653:[2001:db8::1]", "punix:/run/rfvs.sock",
])
def test_good_controller_targets(target):
    assert controller_problem(target) is None
    assert parse_config({"rfvs": {"controller": target}, **with_vm()}).rfvs.controller == (target,)


@pytest.mark.parametrize("target, reason", [
    ("127.0.0.1:6653", "unknown method '127.0.0.1'"),
    ("rfvs", "no METHOD: before the address"),
    ("http://x", "unknown method 'http'"),
    ("-tcp:1.2.3.4", "unknown method '-tcp'"),
    ("tcp:controller.example:6653", "'controller.example' is not an IPv4 address, or an IPv6 address in brackets"),
    ("tcp:::1:6653", "'' is not an IPv4 address, or an IPv6 address in brackets"),
    ('tcp:1.2.3.4" other_config={}', "'1.2.3.4\" other_config={}' is not an IPv4 address, or an IPv6 address "
                                     "in brackets"),
    ("tcp:1.2.3.4:70000", "port '70000' is not a number from 1 to 65535"),
    ("tcp:1.2.3.4:0", "port '0' is not a number from 1 to 65535"),
    ("tcp:1.2.3.4:", "port '' is not a number from 1 to 65535"),
    ("tcp:1.2.3.4:66 53", "port '66 53' is not a number from 1 to 65535"),
    ("tcp:[::1", "no ']' after the IPv6 address"),
    ("tcp:[::1]6653", "'6653' after the IPv6 address is not :PORT"),
    ("tcp:[127.0.0.1]:6653", "'127.0.0.1' is not an IPv6 address"),
    ("ssl:[fe80::1%eth0]:6653", "'fe80::1%eth0' is not an IPv6 address"),
    ("ptcp:x", "port 'x' is not a number from 1 to 65535"),
    ("ptcp:6653:::1", "'::1' is not an IPv4 address, or an IPv6 address in brackets"),
    ("unix:", "the socket path is empty"),
    ("unix:/run/a b", "the socket path has characters other than letters, digits and ._/@+~-"),
    ('unix:/run/x"', "the socket path has characters other than letters, digits and ._/@+~-"),
    ("punix:/" + "d" * 107, "the socket path is longer than 107 bytes"),
])
def test_bad_controller_targets(target, reason):
    assert controller_problem(target) == reason
    found = problems({"rfvs": {"controller": target}, **with_vm()})
    assert found == {"rfvs.controller": f"{shown(target)} is not an OpenFlow controller target: {reason} "
                                        f"(expected {CONTROLLER_FORMS})"}


def test_a_controller_pair_is_a_list_of_targets_each_checked():
    pair = ["tcp:127.0.0.1:6653", "tcp:127.0.0.1:6654"]
    assert parse_config({"rfvs": {"controller": pair}, **with_vm()}).rfvs.controller == tuple(pair)
    assert problems({"rfvs": {"controller": [pair[0], "tcp:x"]}, **with_vm()}) == {
        "rfvs.controller[1]": f"'tcp:x' is not an OpenFlow controller target: {controller_problem('tcp:x')} "
                              f"(expected {CONTROLLER_FORMS})"}
    assert problems({"rfvs": {"controller": [pair[0], pair[0]]}, **with_vm()}) == {
        "rfvs.controller[1]": "'tcp:127.0.0.1:6653' is listed twice"}
    assert problems({"rfvs": {"controller": []}, **with_vm()}) == {
        "rfvs.controller": "lists 0 controller targets: 1 to 4"}


def test_controller_must_be_text():
    assert problems({"rfvs": {"controller": 6653}, **with_vm()}) == {
        "rfvs.controller": "must be a non-empty string, not 6653"}


@pytest.mark.parametrize("field, document", [
    ("vms[0].name", with_vm(name="-rA")),
    ("vms[0].name", with_vm(name="rA\n")),  # a final newline slipped past a "$" anchor
    ("vms[0].name", with_vm(name="r/A")),
    ("vms[0].name", with_vm(name="../rA")),
    ("vms[0].interfaces[0].name", with_vm(interfaces=[{"name": "-eth1", "port": 1}])),
    ("vms[0].interfaces[0].name", with_vm(interfaces=[{"name": "eth1\n", "port": 1}])),
    ("rfvs.bridge", {"rfvs": {"bridge": "--may-exist"}, **with_vm()}),
    ("rfvs.bridge", {"rfvs": {"bridge": "br 0"}, **with_vm()}),
])
def test_names_routeflow_creates_are_identifiers(field, document):
    found = problems(document)
    assert list(found) == [field]
    assert found[field].endswith("must be a letter then letters, digits or '_', at most "
                                 f"{10 if field == 'vms[0].name' else 15} long")


def test_mac_with_a_final_newline():
    found = problems(with_vm(interfaces=[{"name": "eth1", "port": 1, "mac": "02:00:00:00:00:01\n"}]))
    assert found == {"vms[0].interfaces[0].mac": "'02:00:00:00:00:01\\n' is not a MAC address"}
