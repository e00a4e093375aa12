from routeflow.controller.classify import traffic_kind

ETH = b"\xff" * 6 + b"\x02" * 6


def ipv4(proto: int) -> bytes:
    return ETH + b"\x08\x00" + bytes([0x45, 0, 0, 20, 0, 0, 0, 0, 64, proto]) + b"\0" * 10


def test_kinds():
    assert traffic_kind(ipv4(1)) == "icmp"
    assert traffic_kind(ipv4(89)) == "ospf"
    assert traffic_kind(ipv4(6)) == "tcp"
    assert traffic_kind(ipv4(47)) == "ip"
    assert traffic_kind(ETH + b"\x08\x06" + b"\0" * 28) == "arp"
    assert traffic_kind(ETH + b"\x81\x00\x00\x05" + ipv4(17)[12:]) == "udp"
    assert traffic_kind(ETH + b"\x86\xdd" + b"\0" * 6 + b"\x3a" + b"\0" * 33) == "icmpv6"
    ipv6_icmp = ETH + b"\x86\xdd" + b"\0" * 6 + b"\x3a" + b"\0" * 33
    assert traffic_kind(ipv6_icmp + b"\x80" + b"\0" * 7) == "icmpv6"  # echo request
    assert traffic_kind(ipv6_icmp + b"\x87" + b"\0" * 23) == "nd"  # neighbour solicitation
    assert traffic_kind(b"\x01") == "other"
