from pathlib import Path

import pytest
from tests.problems import assert_reported
from tests.problems import problems as config_problems

from routeflow.config.loader import load_config, parse_config
from routeflow.config.schema import Limits
from routeflow.errors import ConfigError

GOOD = {
    "rfvs": {"bridge": "rfvs", "dpid": "0x7266"},
    "vms": [
        {"name": "rA", "dpid": 1, "engine": "frr", "daemons": ["ospfd"],
         "interfaces": [{"name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"]}],
         "engine_config": "router ospf\n"},
        {"name": "rB", "dpid": "00:00:00:00:00:00:00:02", "engine": "none",
         "interfaces": [{"name": "eth1", "port": 1, "mac": "02:00:00:00:00:AA"}]},
    ],
}


def problems(document: object) -> dict[str, str]:
    return config_problems(parse_config, document, "cfg.yaml")


def test_good_config():
    config = parse_config(GOOD)
    assert [v.dpid for v in config.vms] == [1, 2]
    assert config.rfvs.dpid == 0x7266
    assert config.vms[1].interfaces[0].mac == "02:00:00:00:00:aa"
    assert [v.name for v in config.vms_of_dpid(2)] == ["rB"]


def test_every_error_is_reported_with_its_field():
    bad = {
        "vms": [
            {"name": "rA", "dpid": "nope", "colour": "red",
             "interfaces": [{"name": "eth1", "port": 1, "addresses": ["10.0.0.300/24", "10.0.0.1"]},
                            {"name": "eth1", "port": 0}]},
            {"name": "rA", "dpid": 0x7266, "daemons": ["sshd"], "interfaces": []},
        ],
        "extra": 1,
    }
    found = problems(bad)
    assert_reported(found, {
        "vms[0].dpid": "not a datapath id",
        "vms[0].interfaces[0].addresses[0]": "not an address",
        "vms[0].interfaces[0].addresses[1]": "not an address",
        "vms[0].interfaces[1].name": "duplicate interface name",
        "vms[0].interfaces[1].port": "integer from 1",
        "vms[1].name": "duplicate VM name",
        "vms[1].daemons[0]": "sshd",
        "vms[1].interfaces": "at least one interface",
        "vms[1].dpid": "RFVS",
    })
    assert found["vms[0].colour"] == "unknown key"
    assert found["extra"] == "unknown key"


def test_missing_fields():
    found = problems({"vms": [{"name": "a", "dpid": 1, "interfaces": [{"name": "e", "port": 1}]},
                                    {"dpid": 1, "interfaces": [{"port": 2}]}]})
    assert found["vms[1].name"] == "is required"
    assert found["vms[1].interfaces[0].name"] == "is required"


def test_vms_share_a_datapath_each_on_its_own_virtual_ports():
    config = parse_config({"vms": [
        {"name": "a", "dpid": 1, "interfaces": [{"name": "e1", "port": 1}, {"name": "e3", "port": 3, "vlan": 10}]},
        {"name": "b", "dpid": 1, "interfaces": [{"name": "e2", "port": 2}, {"name": "e3", "port": 3, "vlan": 20}]},
        {"name": "c", "dpid": 2, "interfaces": [{"name": "e1", "port": 1}]}]})
    assert [v.name for v in config.vms_of_dpid(1)] == ["a", "b"]
    assert [config.context(v) for v in config.vms] == [0, 1, 0]
    assert config.shared(1) and not config.shared(2)
    a = config.vms[0]
    assert str(a.virtual_port(a.interfaces[1])) == "0x1 port 3 vlan 10"


def test_a_virtual_port_claimed_twice_names_both_claims():
    found = problems({"vms": [
        {"name": "a", "dpid": 1, "interfaces": [{"name": "e1", "port": 1}, {"name": "e2", "port": 2, "vlan": 5}]},
        {"name": "b", "dpid": 1, "interfaces": [{"name": "e1", "port": 1}, {"name": "e2", "port": 2, "vlan": 5}]}]})
    assert found["vms[1].interfaces[0].port"] == "virtual port 0x1 port 1 is already vms[0].interfaces[0] (a e1)"
    assert found["vms[1].interfaces[1].port"] == \
        "virtual port 0x1 port 2 vlan 5 is already vms[0].interfaces[1] (a e2)"
    # within one VM too
    found = problems({"vms": [{"name": "a", "dpid": 1, "interfaces": [{"name": "e1", "port": 1},
                                                                     {"name": "e2", "port": 1}]}]})
    assert "already vms[0].interfaces[0] (a e1)" in found["vms[0].interfaces[1].port"]


def test_a_port_is_untagged_or_carries_vlans_never_both():
    found = problems({"vms": [
        {"name": "a", "dpid": 1, "interfaces": [{"name": "e1", "port": 1}]},
        {"name": "b", "dpid": 1, "interfaces": [{"name": "e1", "port": 1, "vlan": 7}]}]})
    assert found["vms[1].interfaces[0].vlan"].startswith(
        "datapath 0x1 port 1 is also used untagged by vms[0].interfaces[0] (a e1)")


@pytest.mark.parametrize("vlan", [0, 4095, "10", True])
def test_vlan_ids_are_1_to_4094(vlan: object):
    found = problems({"vms": [{"name": "a", "dpid": 1, "interfaces": [{"name": "e1", "port": 1, "vlan": vlan}]}]})
    assert found["vms[0].interfaces[0].vlan"].startswith("must be an integer from 1 to 4094")


def test_vms_sharing_a_datapath_share_its_trunk():
    found = problems({"vms": [
        {"name": "a", "dpid": 1, "trunk": {"port": 9}, "interfaces": [{"name": "e1", "port": 1}]},
        {"name": "b", "dpid": 1, "interfaces": [{"name": "e1", "port": 2}]}]})
    assert found["vms[1].trunk"].startswith("differs from vms[0].trunk (a)")
    config = parse_config({"vms": [
        {"name": "a", "dpid": 1, "trunk": {"port": 9}, "interfaces": [{"name": "e1", "port": 1}]},
        {"name": "b", "dpid": 1, "trunk": {"port": 9}, "interfaces": [{"name": "e1", "port": 2}]}]})
    assert config.vms[1].trunk == config.vms[0].trunk


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value) and "No such file" in str(info.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("vms: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_examples_load():
    root = Path(__file__).resolve().parents[3] / "examples"
    for path in sorted(root.glob("*/routeflow.yaml")):
        load_config(path)


def test_trunk():
    vm = {"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}
    config = parse_config({"vms": [{**vm, "trunk": {"port": 100}},
                                   {**vm, "name": "rB", "dpid": 2, "trunk": {"port": 48, "rfvs_interface": "eth3"}}]})
    assert config.vms[0].trunk.rfvs_port_name(1) == "rft1-rf"
    assert config.vms[1].trunk.rfvs_port_name(2) == "eth3"
    found = problems({"vms": [
        {**vm, "interfaces": [{"name": "eth1", "port": 5000}, {"name": "eth2", "port": 7}],
         "trunk": {"port": 7, "speed": 10}},
        {**vm, "name": "rB", "dpid": 2, "trunk": {"port": 1, "rfvs_interface": "rft1-rf"}},
        {**vm, "name": "rC", "dpid": 3, "trunk": "yes"},
    ]})
    assert_reported(found, {
        "vms[0].interfaces[0].port": "VLAN id",
        "vms[0].trunk.port": "also interfaces[1]",
        "vms[1].trunk.rfvs_interface": "duplicate trunk RFVS interface",
        "vms[2].trunk": "mapping",
    })
    assert found["vms[0].trunk.speed"] == "unknown key"


def test_routing_plane():
    vm = {"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}
    assert parse_config({"vms": [vm]}).vms[0].routing_plane == "physical"
    assert parse_config({"vms": [{**vm, "routing_plane": "virtual"}]}).vms[0].routing_plane == "virtual"
    found = problems({"vms": [{**vm, "routing_plane": "astral"}]})
    assert "astral" in found["vms[0].routing_plane"]


def test_discovery_interval():
    vms = {"vms": [{"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}]}
    assert parse_config(vms).discovery_interval == 1.0
    assert parse_config({**vms, "discovery": {"interval": 0.25}}).discovery_interval == 0.25
    assert parse_config({**vms, "discovery": {"interval": 2}}).discovery_interval == 2.0
    for bad in (0, 0.05, 61, "1s", True):
        found = problems({**vms, "discovery": {"interval": bad}})
        assert "must be a number of seconds from 0.1 to 60" in found["discovery.interval"], bad
    assert problems({**vms, "discovery": {"every": 1}})["discovery.every"] == "unknown key"
    assert "must be a mapping" in problems({**vms, "discovery": 5})["discovery"]


def test_ipv6_interface_addresses():
    dual = {**GOOD, "vms": [{**GOOD["vms"][0], "loopback": ["10.255.0.1/32", "2001:DB8:FF::1/128"],
                             "interfaces": [{"name": "eth1", "port": 1,
                                             "addresses": ["172.31.1.1/24", "2001:DB8:1:0::1/64"]}]}]}
    config = parse_config(dual)
    assert config.vms[0].interfaces[0].addresses == ("172.31.1.1/24", "2001:db8:1::1/64")
    assert config.vms[0].loopback == ("10.255.0.1/32", "2001:db8:ff::1/128")
    bad = {**GOOD, "vms": [{**GOOD["vms"][0], "interfaces": [{"name": "eth1", "port": 1, "addresses": [
        "2001:db8:1::1", "2001:db8::g/64", "ff02::5/64", "fe80::1/64", "::/0", "2001:db8:1::1/129"]}]}]}
    found = problems(bad)
    field = "vms[0].interfaces[0].addresses"
    assert "like 172.31.1.1/24 or 2001:db8:1::1/64" in found[f"{field}[0]"]
    assert "not an address with prefix length" in found[f"{field}[1]"]
    assert found[f"{field}[2]"] == "ff02::5 is a multicast address"
    assert found[f"{field}[3]"] == "fe80::1 is link-local: the kernel gives every interface one of its own"
    assert found[f"{field}[4]"] == ":: is an unspecified address"
    assert "not an address with prefix length" in found[f"{field}[5]"]


def test_listeners_stay_on_this_host_without_tls():
    vms = {"vms": [{"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}]}
    fine = ["unix:/run/x.sock", "tcp:127.0.0.1:6650", "tcp:[::1]:6650", "tcp:localhost:6650",
            "tls:0.0.0.0:6651", "tls:[::]:6651"]
    assert parse_config({**vms, "listen": fine}).listen == tuple(fine)
    found = problems({**vms, "listen": ["tcp:0.0.0.0:6650", "tcp:192.0.2.1:6650", "tcp:[::]:6650"]})
    assert set(found) == {"listen[0]", "listen[1]", "listen[2]"}
    assert all("without TLS the server listens on loopback or a Unix socket only (use tls:HOST:PORT)" in r
               for r in found.values())


def test_limits_are_optional_bounded_and_consistent():
    vms = {"vms": [{"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}]}
    assert parse_config(vms).limits == Limits()
    limits = parse_config({**vms, "limits": {"keepalive": 2, "idle_timeout": 8, "max_connections": 64,
                                             "handshake_timeout": 3, "unread_mib": {"client": 16}}}).limits
    assert (limits.keepalive, limits.idle_timeout, limits.max_connections, limits.handshake_timeout) == (2, 8, 64, 3)
    assert limits.unread == {"controller": 1 << 30, "client": 16 << 20, "operator": 64 << 20}
    found = problems({**vms, "limits": {"keepalive": 30, "max_connections": 2, "handshake_timeout": "soon",
                                        "unread_mib": {"switch": 1, "client": 0}, "frame": 1}})
    assert found == {
        "limits.max_connections": "must be an integer from 4 to 65536, not 2",
        "limits.handshake_timeout": "must be a number of seconds from 0.5 to 300, not 'soon'",
        "limits.unread_mib.client": "must be an integer from 1 to 16384, not 0",
        "limits.unread_mib.switch": "unknown key",
        "limits.frame": "unknown key",
        "limits.idle_timeout": "must be longer than keepalive (30 s): a peer is pinged before it can be found silent",
    }


def test_a_bare_trunk_port_is_one_clear_line():
    vm = {"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}
    assert problems({"vms": [{**vm, "trunk": 100}]}) == {"vms[0].trunk": "must be a mapping like {port: 100}, not 100"}
    assert problems({"vms": [{**vm, "trunk": None}]}) == {
        "vms[0].trunk": "must be a mapping like {port: 100}, not None"}


def test_unknown_keys_suggest_the_nearest_valid_key():
    vm = {"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1, "adresses": ["172.31.1.1/24"]}],
          "trunk": {"prot": 100}, "Loopback": ["10.255.0.1/32"]}
    found = problems({"vms": [vm], "rfvs": {"brige": "rfvs"}, "vm": []})
    assert found == {
        "vms[0].interfaces[0].adresses": "unknown key 'adresses'; did you mean 'addresses'?",
        "vms[0].trunk.prot": "unknown key 'prot'; did you mean 'port'?",
        "vms[0].trunk.port": "is required",
        "vms[0].Loopback": "unknown key 'Loopback'; did you mean 'loopback'?",
        # Optional keys read only when present are valid keys all the same.
        "rfvs.brige": "unknown key 'brige'; did you mean 'bridge'?",
        "vm": "unknown key 'vm'; did you mean 'vms'?",
    }


@pytest.mark.parametrize("address", ["172.31.1.0/24", "172.31.1.255/24", "2001:db8:1::/64", "10.255.0.0/16"])
def test_interface_addresses_are_host_addresses(address):
    vm = {"name": "rA", "dpid": 1, "loopback": [address],
          "interfaces": [{"name": "eth1", "port": 1, "addresses": [address]}]}
    found = problems({"vms": [vm]})
    assert set(found) == {"vms[0].loopback[0]", "vms[0].interfaces[0].addresses[0]"}
    assert all(reason.startswith(f"{address} is the ") for reason in found.values())


def test_point_to_point_and_host_prefixes_have_no_network_address():
    vm = {"name": "rA", "dpid": 1, "loopback": ["10.255.0.0/32", "2001:db8:ff::/128"],
          "interfaces": [{"name": "eth1", "port": 1, "addresses": ["10.0.0.0/31", "10.0.0.3/31", "2001:db8::/127"]}]}
    assert parse_config({"vms": [vm]}).vms[0].interfaces[0].addresses == ("10.0.0.0/31", "10.0.0.3/31",
                                                                          "2001:db8::/127")


def test_daemons_belong_to_frr():
    vm = {"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}
    found = problems({"vms": [
        {**vm, "engine": "bird", "daemons": ["bird"]},
        {**vm, "name": "rB", "dpid": 2, "engine": "frr", "daemons": ["bird", "zebra", "ospfd", "ospfd"]},
        {**vm, "name": "rC", "dpid": 3, "engine": "none", "daemons": ["ospfd"]},
    ]})
    assert found == {
        "vms[0].daemons": "only the frr engine runs daemons: BIRD runs as one daemon, bird, which routeflow "
                          "starts itself; remove daemons",
        "vms[1].daemons[0]": "'bird' is an engine, not an FRR daemon: write engine: bird (and no daemons)",
        "vms[1].daemons[1]": "zebra always runs: list only the protocol daemons",
        "vms[1].daemons[3]": "duplicate daemon 'ospfd' (also at vms[1].daemons[2])",
        "vms[2].daemons": "only the frr engine runs daemons (engine is 'none')",
    }


def test_store_is_embedded_by_default_and_etcd_needs_its_endpoints():
    from routeflow.config.schema import StoreConfig, StoreKind
    from routeflow.vnet.plan import client_server_address

    vms = {"vms": [{"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}]}
    assert parse_config(vms).store == StoreConfig()
    pair = parse_config({**vms, "store": {"kind": "etcd", "endpoints": ["http://127.0.0.1:2379"], "lease_ttl": 2,
                                          "servers": ["unix:/run/routeflow/s1.sock", "unix:/run/routeflow/s2.sock"]}})
    assert (pair.store.kind, pair.store.endpoints, pair.store.lease_ttl) == (StoreKind.ETCD, ("http://127.0.0.1:2379",), 2)
    # The RF-Clients the servers start try both servers.
    assert client_server_address(pair) == "unix:/run/routeflow/s1.sock,unix:/run/routeflow/s2.sock"
    assert problems({**vms, "store": {"kind": "etcd"}}) == {
        "store.endpoints": "is required with kind: etcd: the etcd cluster's client URLs"}
    assert problems({**vms, "store": {"kind": "etcd", "endpoints": ["127.0.0.1:2379"], "lease_ttl": 0,
                                      "servers": ["unix:/a", "unix:/a", "tls:h:1"], "ttl": 1}}) == {
        "store.endpoints[0]": "'127.0.0.1:2379' is not an etcd client URL: expected http://HOST:PORT or "
                              "https://HOST:PORT",
        "store.lease_ttl": "must be an integer from 1 to 30, not 0",
        "store.servers[1]": "duplicate server address 'unix:/a' (also at store.servers[0])",
        "store.servers": "tls: and unix:/tcp: addresses cannot be mixed (peers hold one credential for all)",
        "store.ttl": "unknown key",
    }
    assert problems({**vms, "store": {"endpoints": ["http://127.0.0.1:2379"], "kind": "zookeeper"}}) == {
        "store.kind": "'zookeeper' is not one of embedded, etcd",
        "store.endpoints": "is for kind: etcd only (kind is embedded)",
    }
