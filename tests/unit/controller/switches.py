"""Fake switches for the app's tests: datapaths that record what the app sends them, and their ports."""

from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from .wire import split_messages

MAC = "02:00:00:00:00:01"


class FakeDatapath:
    """Records what the app sends, split back into OpenFlow messages."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid: int, certificate: str | None = None) -> None:
        self.id = dpid
        # A plain TCP socket has no getpeercert; a TLS one names the switch's credential.
        self.socket = FakeTlsSocket(certificate) if certificate is not None else object()
        self.address = ("127.0.0.1", 40000 + dpid % 1000)
        self.writes: list[bytes] = []
        self.alive = True

    def close(self) -> None:
        self.alive = False

    def send(self, buf: bytes) -> bool:
        if self.alive:
            self.writes.append(bytes(buf))
        return self.alive

    def send_msg(self, msg) -> bool:
        assert msg.xid is not None, "the app must assign its own xids"
        msg.serialize()
        return self.send(msg.buf)

    def messages(self) -> list[tuple[int, int, bytes]]:
        """(type, xid, bytes) of every message sent so far."""
        return split_messages(b"".join(self.writes))

    def of_type(self, kind: int) -> list[tuple[int, int, bytes]]:
        return [m for m in self.messages() if m[0] == kind]


class FakeTlsSocket:
    def __init__(self, common_name: str) -> None:
        self.common_name = common_name

    def getpeercert(self) -> dict:
        return {"subject": ((("organizationName", "routeflow"),), (("commonName", self.common_name),))}


def ofport(no: int, name: str = "", config: int = 0, state: int = 0, mac: str = MAC) -> parser.OFPPort:
    return parser.OFPPort(no, mac, (name or f"p{no}").encode(), config, state, 0, 0, 0, 0, 0, 0)


