"""Server addresses: one, or a server pair's, tried in turn."""

from __future__ import annotations

import pytest

from routeflow.protocol.transport import Address, first_answering, parse_addresses


def test_a_pair_of_addresses_is_read_in_order():
    assert parse_addresses("unix:/run/a.sock, tcp:127.0.0.1:6651") == (
        Address("unix", "/run/a.sock"), Address("tcp", "127.0.0.1", 6651))
    assert parse_addresses("unix:/run/a.sock") == (Address("unix", "/run/a.sock"),)


@pytest.mark.parametrize("text", ["unix:/a,", "tls:127.0.0.1:1,unix:/a", "tcp:x"])
def test_bad_address_lists_are_refused(text):
    with pytest.raises(ValueError):
        parse_addresses(text)


def test_the_first_address_that_answers_wins():
    tried = []

    def connect(address: Address) -> str:
        tried.append(address.host)
        if address.host != "/b":
            raise ConnectionRefusedError(address.host)
        return "session"

    assert first_answering(parse_addresses("unix:/a,unix:/b,unix:/c"), connect) == "session"
    assert tried == ["/a", "/b"]
    with pytest.raises(ConnectionRefusedError, match="/c"):
        first_answering(parse_addresses("unix:/a,unix:/c"), connect)
