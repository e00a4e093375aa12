"""The fuzz targets: one per surface where routeflow reads what others send it.

=====================  ======================================================================
target                 contract checked
=====================  ======================================================================
rf_protocol            bytes (in any chunks) -> ``codec.Connection.receive_data``: messages, or
                       ``RemoteProtocolError`` and nothing else; the buffer stays bounded; what
                       decodes re-encodes; the handshake checks raise ``RemoteProtocolError`` only
server_core            event sequences (peers connecting and leaving, every message a controller
                       or a client may send, as msgpack through the codec, reconciles, resolution
                       ticks, status) -> ``ServerCore``: no exception ever (the core documents
                       none), every datapath's table computable, every command it emits encodable
                       and accepted by its peer's decoder
openflow_replies       bytes -> ``fast_decode.decode_flow_stats`` / ``decode_group_desc`` /
                       ``reply_body_span``: values or ``DecodeError``, no more values than the
                       bytes allow
openflow_messages      a switch's message -> os-ken's parser behind ``guards.install_parser_guards``
                       (and ``install_raw_stats_replies``): a message or None, never an exception;
                       a lazy multipart body reads or raises ``DecodeError``
netlink                datagrams -> ``netlink.messages`` / ``route`` / ``nexthop`` (a record or None),
                       ``link`` / ``address`` / ``neighbour`` (that, or ``Malformed``), and
                       ``FibState.apply_datagram`` then ``take_delta``, ``fib``, ``resync``: never
                       raises (optionally on top of a golden dump's state)
frames                 bytes -> ``lldp.parse_probe`` (None or a probe), ``mapping.decode`` (a packet
                       or ``MappingPacketError``), ``classify.traffic_kind``; probe and mapping
                       packet encoders round-trip
config                 documents, YAML text and file bytes -> ``parse_config`` / ``parse_yaml`` /
                       ``load_config``: a Config or ``ConfigError`` naming the source on every line
topology               the same for ``parse_topology`` / ``load_topology``
=====================  ======================================================================

Every target runs its seed corpus (``fuzz/seeds.py``) first; the strategies then
mutate those seeds (byte mutations aware of the length fields of each format, or
structural ones for documents and message sequences) or generate from scratch.

Each target lives in the module of its area -- ``rf_protocol``, ``server_core``, ``openflow``
(both OpenFlow targets), ``netlink``, ``frames``, ``loaders`` (config and topology) -- with
its strategy, contract (``check``), seed corpus and known issues; ``common`` holds what
they share. This package holds the registry the runner and the smoke test look them up in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from fuzz.engine import Target
from fuzz.targets import frames, loaders, netlink, openflow, rf_protocol, server_core

# -- known issues ------------------------------------------------------------------------------
# Found by these targets, reported, not fixed yet (the code is not this harness's to change).
# Each is a KnownIssue of its target (``Target.known``) with a regression input under
# fuzz/regressions/<target>/ that tests/unit/test_fuzz_smoke.py replays as xfail(strict=True):
# once fixed, that test fails until the KnownIssue and its xfail mark are removed, so a fix
# cannot go unnoticed. None is open now.

#: Every target, by name, in the order the runner runs them.
TARGETS: dict[str, Callable[[], Target]] = {
    "rf_protocol": rf_protocol.rf_protocol,
    "server_core": server_core.server_core,
    "openflow_replies": openflow.openflow_replies,
    "openflow_messages": openflow.openflow_messages,
    "netlink": netlink.netlink,
    "frames": frames.frames,
    "config": loaders.config,
    "topology": loaders.topology,
}


@functools.cache
def target(name: str) -> Target:
    return TARGETS[name]()
