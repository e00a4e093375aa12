"""Parsing the output of ping, ovs-ofctl and /proc: pure functions over text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_REPLY = re.compile(r"^(?:\[(?P<ts>[0-9.]+)\] )?\d+ bytes from [^:]+: icmp_seq=(?P<seq>\d+) .*?time=(?P<rtt>[0-9.]+) ms",
                    re.MULTILINE)
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
_FLOW_COUNT = re.compile(r"\bflow_count=(\d+)")
_KB = re.compile(r"^(\w+):\s+(\d+) kB", re.MULTILINE)
_PREFIXES = re.compile(r"^\s*Prefixes:\s+(\d+)", re.MULTILINE)


@dataclass
class PingRun:
    """One ping run: every reply's sequence number, RTT and (with ``ping -D``) arrival time."""

    transmitted: int = 0
    received: int = 0
    seqs: list[int] = field(default_factory=list)
    rtts_ms: list[float] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)

    def missing(self, first: int = 1) -> list[int]:
        """Sequence numbers sent (``first`` .. ``first + transmitted - 1``) that got no reply."""
        got = set(self.seqs)
        return [s for s in range(first, first + self.transmitted) if s not in got]


def parse_ping(text: str) -> PingRun:
    """Parse iputils ping output (optionally with ``-D`` timestamps); duplicates count once."""
    run = PingRun()
    seen: set[int] = set()
    for m in _REPLY.finditer(text):
        seq = int(m["seq"])
        if seq in seen:
            continue
        seen.add(seq)
        run.seqs.append(seq)
        run.rtts_ms.append(float(m["rtt"]))
        if m["ts"]:
            run.stamps.append(float(m["ts"]))
    summary = _SUMMARY.search(text)
    if summary:
        run.transmitted, run.received = int(summary[1]), int(summary[2])
    else:
        run.transmitted = run.received = len(run.seqs)
    return run


def parse_flow_count(text: str) -> int:
    """``flow_count`` from ``ovs-ofctl dump-aggregate`` output."""
    m = _FLOW_COUNT.search(text)
    if not m:
        raise ValueError(f"no flow_count in ovs-ofctl output: {text.strip()[:200]!r}")
    return int(m[1])


def parse_proc_status_kb(text: str) -> dict[str, int]:
    """The ``kB`` fields of /proc/PID/status (VmHWM, VmRSS, ...) in kB."""
    return {m[1]: int(m[2]) for m in _KB.finditer(text)}


def parse_fib_prefixes(text: str) -> int:
    """IPv4 prefixes in the main table from ``/proc/net/fib_triestat``.

    Without policy rules the kernel keeps local and main in one trie, so the count
    includes the local table's addresses: compare against a count taken before.
    """
    main = text.partition("\nMain:\n")[2].partition("\nLocal:")[0]
    m = _PREFIXES.search(main)
    if not m:
        raise ValueError(f"no Main table prefix count in fib_triestat: {text.strip()[:200]!r}")
    return int(m[1])


def parse_frr_route_counts(text: str) -> dict[str, int]:
    """Routes per source (``kernel``, ``connected``, ``bgp``...) in an FRR RIB, from
    ``show ip route summary json``."""
    return {entry["type"]: int(entry["rib"]) for entry in json.loads(text).get("routes", [])}
