"""Target ``rf_protocol``: bytes (in any chunks) -> ``codec.Connection.receive_data``: messages,
or ``RemoteProtocolError`` and nothing else; the buffer stays bounded; what decodes re-encodes;
the handshake checks raise ``RemoteProtocolError`` only."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from fuzz import seeds
from fuzz.engine import Target
from fuzz.strategies import loose_messages, messages_of, msgpack_values, mutated
from fuzz.targets.common import PATTERN_HINTS, frame, packed, stage, unpacked
from fuzz.targets.server_core import model_hints
from routeflow.protocol import codec
from routeflow.protocol.messages import ACCEPTED, PROTOCOL_VERSION, AnyMessage, Hello, Message

_ALL_TYPES: list[type[Message]] = list(typing.get_args(AnyMessage))
_KEY = b"k" * 32
_HELLO = Hello(PROTOCOL_VERSION, "client", "rA", "0" * 32)


def _rf_streams() -> st.SearchStrategy[bytes]:
    encoded = [codec.encode(m) for m in seeds.rf_messages()]
    joined = [encoded[i] + encoded[(i * 5 + 1) % len(encoded)] for i in range(len(encoded))]
    typed = messages_of(_ALL_TYPES, model_hints(), PATTERN_HINTS)
    seeded = mutated(encoded + joined, fields=lambda b: [(0, 4, "big")], orders=("big",))
    return st.one_of(
        seeded,
        seeded,
        seeded,
        typed.map(codec.encode),
        loose_messages(_ALL_TYPES, typed).map(frame),
        msgpack_values().map(lambda v: frame(packed(v))),
        st.binary(max_size=64).map(frame),
        st.binary(max_size=64),
        st.lists(st.sampled_from(encoded), min_size=2, max_size=4).map(b"".join),
    )


@st.composite
def _chunked(draw: Any, streams: st.SearchStrategy[bytes]) -> tuple[int, list[bytes]]:
    data = draw(streams)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=4))))
    bounds = [0, *cuts, len(data)]
    return draw(st.sampled_from([0, 1])), [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def check_rf_protocol(value: tuple[int, list[bytes]]) -> None:
    limit_kind, chunks = value
    conn = codec.Connection(codec.HELLO_MAX_FRAME if limit_kind else codec.MAX_FRAME)
    first = True
    for chunk in chunks:
        try:
            received = conn.receive_data(chunk)
        except codec.RemoteProtocolError:
            return  # the peer is closed
        assert conn.buffered < 4 + conn.max_frame, f"{conn.buffered} bytes buffered"
        for msg in received:
            assert isinstance(msg, Message), type(msg)
            again = codec.encode(msg)
            (back,) = codec.Connection().receive_data(again)
            assert codec.encode(back) == again, "a decoded message does not re-encode the same"
            checks: list[tuple[str, Callable[[], Any]]] = [
                ("check_welcome", lambda: codec.check_welcome(msg)),
                ("answer_challenge", lambda: codec.answer_challenge(msg, _KEY, _HELLO)),
                *((f"check_accepted({role})", lambda role=role: codec.check_accepted(role, msg))  # type: ignore
                  for role in ACCEPTED)]
            if first:
                checks.append(("check_hello", lambda: codec.check_hello(msg)))
            first = False
            for name, call in checks:
                try:
                    stage(name, call)
                except codec.RemoteProtocolError:
                    pass


def rf_protocol() -> Target:
    return Target(
        name="rf_protocol",
        doc="RF-protocol framing and decoding (codec.Connection.receive_data, the handshake checks)",
        strategy=_chunked(_rf_streams()),
        check=check_rf_protocol,
        seeds=lambda: [(kind, [codec.encode(m)]) for m in seeds.rf_messages() for kind in (0, 1)]
        + [(0, [b"".join(codec.encode(m) for m in seeds.rf_messages())])],
        dump=lambda v: packed([v[0], v[1]]),
        load=lambda b: (unpacked(b)[0], list(unpacked(b)[1])),
        show=lambda v: f"max_frame={'HELLO_MAX_FRAME' if v[0] else 'MAX_FRAME'}, chunks=" + repr(
            [c.hex() for c in v[1]]),
    )
