"""The RF-protocol over mutual TLS, on real loopback sockets: the certificate,
not the hello, says who a peer is."""

import asyncio
import socket
import ssl
import stat
import threading

import pytest

from routeflow.config.loader import parse_config
from routeflow.config.schema import Limits
from routeflow.protocol import codec, pki
from routeflow.protocol.messages import StatusReply, StatusRequest
from routeflow.protocol.transport import AsyncSession, BlockingSession, load_credential, parse_address
from routeflow.server.service import RFServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tls_server(tmp_path):
    """An RF-Server listening on ``tls:127.0.0.1:PORT`` (in a thread's event loop)."""
    address = f"tls:127.0.0.1:{free_port()}"
    config = parse_config({"listen": [address], "manage_vms": False, "vms": [
        {"name": "rA", "dpid": 1, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]},
        {"name": "rB", "dpid": 2, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]}]})
    keys = tmp_path / "keys"
    loop = asyncio.new_event_loop()
    server = RFServer(config, Limits(handshake_timeout=1.0), keys=keys)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield parse_address(address), keys, server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_the_server_makes_a_ca_and_every_identity_a_private_credential(tls_server):
    _, keys, _ = tls_server
    base = pki.tls_dir(keys)
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    for ident in ("ca", "server", "controller", "operator", "client-rA", "client-rB"):
        assert stat.S_IMODE((base / f"{ident}.key").stat().st_mode) == 0o600
        assert (base / f"{ident}.crt").exists()
    assert pki.ensure(keys, ["server", "client-rA"]) == []  # nothing made twice


def test_a_peer_with_its_certificate_is_served(tls_server):
    address, keys, server = tls_server
    session = BlockingSession(address, "operator", "cli", keys=keys)
    session.send(StatusRequest(1, detail=False))
    reply = session.receive()
    assert isinstance(reply, StatusReply)
    listeners = reply.status["server"]["listeners"]
    assert listeners == [{"address": str(address), "authenticated": True, "encrypted": True}]
    session.close()

    async def client() -> None:
        opened = await AsyncSession.open(address, "client", "rA", load_credential(address, keys, "client", "rA"))
        await opened.close()

    asyncio.run(client())


def test_a_certificate_speaks_for_its_own_identity_only(tls_server):
    """rB's client certificate cannot be rA's client, nor the controller."""
    address, keys, server = tls_server
    stolen = load_credential(address, keys, "client", "rB")
    for role, name in (("client", "rA"), ("controller", "ctl")):
        async def impostor() -> None:
            await AsyncSession.open(address, role, name, stolen)  # type: ignore[arg-type]

        with pytest.raises(codec.RemoteProtocolError, match="certificate is 'client-rB'"):
            asyncio.run(impostor())
    assert server.auth_failures == 2
    assert "rA" not in server.clients and server.controller is None


def test_a_stranger_without_our_ca_is_refused_in_the_tls_handshake(tls_server, tmp_path):
    address, keys, server = tls_server
    other = tmp_path / "other"
    pki.ensure(other, ["operator", "server"])  # a CA of its own
    with pytest.raises(ConnectionError):
        BlockingSession(address, "operator", "cli", keys=other)  # our server's certificate is not theirs
    # And one that trusts our CA but has no certificate of ours.
    ctx = ssl.create_default_context(cafile=str(pki.tls_dir(keys) / "ca.crt"))
    ctx.check_hostname = False
    with socket.create_connection((address.host, address.port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"\0\0\0\1x")
                # TLS 1.3: the server's refusal of the missing certificate arrives after our "finished".
                assert tls.recv(100) == b""
        except (ssl.SSLError, ConnectionError):
            pass  # refused
    assert not server.clients


def test_plain_text_on_a_tls_listener_gets_nothing_and_is_dropped(tls_server):
    address, _, server = tls_server
    with socket.create_connection((address.host, address.port), timeout=5) as raw:
        raw.sendall(b"\0\0\0\x10" + b"x" * 16)
        assert raw.recv(100) == b""  # closed, at the latest at the handshake deadline
