import yaml
from routeflow_bench.faucet import faucet_yaml
from routeflow_bench.faucet_bgp import BGP_PORT, PEER_AS, PEER_IP, ROUTERS, SPEAKER_IP


def test_faucet_yaml_with_a_bgp_router():
    config = yaml.safe_load(faucet_yaml(0, ROUTERS))
    bgp = config["routers"]["bench-bgp"]["bgp"]
    assert bgp["vlan"] in config["vlans"]
    assert (bgp["port"], bgp["neighbor_as"], bgp["connect_mode"]) == (BGP_PORT, PEER_AS, "passive")
    assert (bgp["server_addresses"], bgp["neighbor_addresses"]) == ([SPEAKER_IP], [PEER_IP])
    assert "routes" not in config["vlans"]["bench"]


def test_faucet_yaml_static_routes_unchanged():
    config = yaml.safe_load(faucet_yaml(2))
    assert "routers" not in config
    assert [r["route"]["ip_dst"] for r in config["vlans"]["bench"]["routes"]] == ["10.0.0.0/24", "10.0.1.0/24"]
