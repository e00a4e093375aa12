from routeflow_bench.bgp import route_lines


def test_route_lines_cover_a_range_of_benchmark_prefixes():
    assert route_lines(0, 2, "add") == "route add blackhole 10.0.0.0/24\nroute add blackhole 10.0.1.0/24\n"
    assert route_lines(65536, 65537, "del") == "route del blackhole 11.0.0.0/24\n"
    assert route_lines(5, 5, "add") == ""
