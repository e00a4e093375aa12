"""Route churn inside one VM: routes announced and withdrawn at a fixed rate, as a
flapping BGP peer makes its neighbour's FIB change.

Run inside the VM's namespace (root)::

    ip netns exec rA python -m routeflow.lab.churn --rate 10000 --duration 60

It prints one JSON :class:`ChurnReport`: the changes it made per second, the errors
the kernel returned, and the final set of churned prefixes, as planned and as the
kernel holds them after the last change.

Where the routes come from. A real table (``/work/shared/data/bgp-tables``: RouteViews
prefix -> origin AS, gzip text): the first ``pool`` global IPv4 prefixes that do not
overlap the VM's own addresses are read, and no more of the file. Each goes through one
resolved IPv4 neighbour of the VM (origin AS modulo the number of neighbours, as BGP
would spread them over its peers), so every route becomes a real flow with a MAC rewrite.

How the churn moves. :class:`ChurnPlan` slides a window of ``window`` installed
prefixes through the pool: it fills the window (adds), then alternates withdrawing the
oldest and announcing the next, so each prefix is up for ``window / (rate / 2)`` s and
down for ``(pool - window) / (rate / 2)`` s, and the FIB holds ``window`` churned routes
in the steady state: memory downstream must stay flat however long it runs. After any
number of changes the installed set is known (:meth:`ChurnPlan.present_after`).

Why straight into the kernel FIB over Netlink and not through a routing daemon: the
RF-Client reads the kernel FIB, so a route a BGP daemon installs and one written here
are the same event to routeflow, and a daemon cannot be paced: FRR's bgpd and zebra
batch and rate-limit their own updates, so the rate routeflow receives would be the
daemon's, not the one asked for. Each route is an ``rtmsg`` encoded by pyroute2 with
protocol :data:`CHURN_PROTO` (250, unassigned in ``rt_protos``), so no routing engine
(zebra, BIRD) claims or replaces it and the generator deletes only its own routes. The
messages are encoded before the clock starts; each tick of ``tick`` seconds sends the
changes that are due in one ``send()`` (the kernel applies a Netlink batch in the
sender's call, so the changes are in the FIB when it returns). No acknowledgements are
asked for: the kernel answers only the changes it refuses, which are counted.
"""

from __future__ import annotations

import argparse
import errno as errno_names
import gzip
import ipaddress
import logging
import math
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import msgspec
from pyroute2 import IPRoute
from pyroute2.netlink.rtnl.rtmsg import rtmsg

log = logging.getLogger("routeflow.lab.churn")

#: The real BGP table the prefixes come from (README beside it gives its provenance).
DEFAULT_TABLE = Path("/work/shared/data/bgp-tables/ipasn_20140513.dat.gz")
#: The routing protocol number the churned routes carry (``ip route ... proto 250``).
CHURN_PROTO = 250
RT_TABLE_MAIN = 254
RTM_NEWROUTE, RTM_DELROUTE, NLMSG_ERROR = 24, 25, 2
NLM_F_REQUEST, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x200, 0x400
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid


# --- planning (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class TableEntry:
    """One line of a prefix -> origin AS table."""

    prefix: str
    origin_as: int


def parse_table(lines: Iterable[str], limit: int,
                exclude: Sequence[ipaddress.IPv4Network] = ()) -> list[TableEntry]:
    """The first ``limit`` usable IPv4 entries of ``PREFIX<TAB>ASN`` lines (``;`` comments).

    Usable: globally routed (no private, shared or reserved space), overlapping none of
    ``exclude`` (the VM's own subnets), not a duplicate. Stops reading at ``limit``.
    """
    found: list[TableEntry] = []
    seen: set[str] = set()
    if limit <= 0:
        return found
    for line in lines:
        if not line.strip() or line.startswith(";"):
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        try:
            network = ipaddress.ip_network(fields[0])
            origin = int(fields[1])
        except ValueError:
            continue
        if (not isinstance(network, ipaddress.IPv4Network) or not network.is_global
                or any(network.overlaps(x) for x in exclude) or str(network) in seen):
            continue
        seen.add(str(network))
        found.append(TableEntry(str(network), origin))
        if len(found) >= limit:
            break
    return found


def read_table(path: Path, limit: int, exclude: Sequence[ipaddress.IPv4Network] = ()) -> list[TableEntry]:
    """:func:`parse_table` of a (gzip) table file, read only as far as needed."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="ascii", errors="replace") as handle:
        entries = parse_table(handle, limit, exclude)
    if len(entries) < limit:
        raise ValueError(f"{path}: only {len(entries)} usable IPv4 prefixes, {limit} wanted")
    return entries


@dataclass(frozen=True)
class ChurnRoute:
    prefix: str
    gateway: str


def assign_gateways(entries: Sequence[TableEntry], gateways: Sequence[str]) -> list[ChurnRoute]:
    """Each prefix through one of ``gateways``: its origin AS modulo their number, so one
    AS's prefixes share a next hop as they would behind one BGP peer."""
    if not gateways:
        raise ValueError("no gateway to route the churned prefixes through")
    ordered = sorted(gateways, key=ipaddress.ip_address)
    return [ChurnRoute(e.prefix, ordered[e.origin_as % len(ordered)]) for e in entries]


@dataclass(frozen=True)
class ChurnPlan:
    """A window of ``window`` installed routes sliding through ``routes`` (the pool)."""

    routes: tuple[ChurnRoute, ...]
    window: int

    def __post_init__(self) -> None:
        if not 0 < self.window < len(self.routes):
            raise ValueError(f"window {self.window} must be within 1..{len(self.routes) - 1} (the pool)")

    def change(self, i: int) -> tuple[bool, int]:
        """Change number ``i`` (from 0): (True for an add, False for a delete, route index)."""
        if i < self.window:
            return True, i
        k, withdraw = divmod(i - self.window, 2)
        n = len(self.routes)
        return (False, k % n) if withdraw == 0 else (True, (self.window + k) % n)

    def present_after(self, changes: int) -> list[int]:
        """Indices of the routes installed after the first ``changes`` changes."""
        if changes <= self.window:
            return list(range(changes))
        k, odd = divmod(changes - self.window, 2)  # k withdrawals and k adds, plus one withdrawal if odd
        first = k + odd
        last = self.window + k  # exclusive
        return [i % len(self.routes) for i in range(first, last)]


def due(rate: float, elapsed: float, done: int, total: int, max_batch: int) -> int:
    """How many changes to send now to be at ``rate`` after ``elapsed`` seconds: never
    more than ``max_batch`` at once (a stalled sender catches up gradually) nor past ``total``."""
    return max(0, min(int(rate * elapsed) - done, max_batch, total - done))


def encode_change(route: ChurnRoute, add: bool, seq: int, proto: int = CHURN_PROTO) -> bytes:
    """The RTM_NEWROUTE (create, exclusive: a duplicate is an error) or RTM_DELROUTE of
    one churned route, as pyroute2 encodes it; the delete names the protocol, so the
    kernel removes only a route of ours."""
    network = ipaddress.IPv4Network(route.prefix)
    msg = rtmsg()
    msg["header"]["type"] = RTM_NEWROUTE if add else RTM_DELROUTE
    msg["header"]["flags"] = NLM_F_REQUEST | (NLM_F_CREATE | NLM_F_EXCL if add else 0)
    msg["header"]["sequence_number"] = seq
    msg["family"], msg["dst_len"], msg["table"] = socket.AF_INET, network.prefixlen, RT_TABLE_MAIN
    msg["proto"], msg["type"], msg["scope"] = proto, 1, 0  # unicast, universe
    attrs: list[list[object]] = [["RTA_DST", str(network.network_address)]]
    if add:
        attrs.append(["RTA_GATEWAY", route.gateway])
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def parse_errors(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(errno, message type, seq) of each NLMSG_ERROR with an error in a Netlink datagram."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if kind == NLMSG_ERROR and length >= _HEADER.size + 4 + _HEADER.size:
            (error,) = struct.unpack_from("=i", data, offset + _HEADER.size)
            _, orig_type, _, orig_seq, _ = _HEADER.unpack_from(data, offset + _HEADER.size + 4)
            if error:
                yield -error, orig_type, orig_seq
        offset += (length + 3) & ~3


# --- the report -------------------------------------------------------------------


class ChurnReport(msgspec.Struct, kw_only=True):
    """What one churn run did (times are ``time.time()``, comparable across processes)."""

    rate: float
    duration: float
    pool: int
    window: int
    proto: int
    gateways: list[str]
    changes: int = 0
    adds: int = 0
    deletes: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0
    #: CPU seconds the generator itself used while churning.
    cpu_seconds: float = 0.0
    #: Changes sent in each second of the run.
    per_second: list[int] = []
    #: Changes the kernel refused, by errno name.
    errors: dict[str, int] = {}
    #: The churned prefixes installed at the end: by the plan, and in the kernel.
    final_expected: list[str] = []
    final_kernel: list[str] = []

    @property
    def seconds(self) -> float:
        return self.ended_at - self.started_at

    @property
    def achieved_rate(self) -> float:
        """Changes per second over the whole run."""
        return self.changes / self.seconds if self.seconds > 0 else 0.0

    @property
    def lost_in_kernel(self) -> list[str]:
        """Planned prefixes the kernel does not hold, and held ones it should not."""
        expected, kernel = set(self.final_expected), set(self.final_kernel)
        return sorted(expected ^ kernel)


# --- I/O: inside the VM's namespace ---------------------------------------------------


def vm_gateways_and_subnets() -> tuple[list[str], list[ipaddress.IPv4Network]]:
    """This namespace's IPv4 subnets, and its resolved unicast IPv4 neighbours inside the
    subnet of the NIC they are on (the gateways; OSPF's multicast entries are not)."""
    resolved = 0x02 | 0x04 | 0x08 | 0x10 | 0x80  # REACHABLE STALE DELAY PROBE PERMANENT
    with IPRoute() as ipr:
        subnets: dict[int, list[ipaddress.IPv4Network]] = {}
        for a in ipr.get_addr(family=socket.AF_INET):
            network = ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
            subnets.setdefault(a["index"], []).append(network)
        gateways = set()
        for n in ipr.get_neighbours(family=socket.AF_INET):
            ip = ipaddress.IPv4Address(n.get_attr("NDA_DST"))
            on_link = any(ip in s and ip != s.broadcast_address for s in subnets.get(n["ifindex"], []))
            if n["state"] & resolved and n.get_attr("NDA_LLADDR") and not ip.is_multicast and on_link:
                gateways.add(str(ip))
    return sorted(gateways, key=ipaddress.ip_address), [s for nets in subnets.values() for s in nets]


def kernel_prefixes(proto: int = CHURN_PROTO) -> list[str]:
    """The prefixes of the main table's routes of protocol ``proto``."""
    with IPRoute() as ipr:
        return sorted(f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
                      for r in ipr.get_routes(family=socket.AF_INET, table=RT_TABLE_MAIN) if r["proto"] == proto)


def flush(proto: int = CHURN_PROTO) -> int:
    """Delete every main-table IPv4 route of ``proto`` (a previous run's); how many."""
    prefixes = kernel_prefixes(proto)
    with IPRoute() as ipr:
        for prefix in prefixes:
            ipr.route("del", dst=prefix, table=RT_TABLE_MAIN, proto=proto)
    return len(prefixes)


def churn(plan: ChurnPlan, rate: float, duration: float, gateways: Sequence[str], proto: int = CHURN_PROTO,
          tick: float = 0.01) -> ChurnReport:
    """Make ``rate`` changes per second of ``plan`` for ``duration`` seconds, in this
    namespace's main table; stops at the deadline even when behind (the report says
    how many it made)."""
    encoded = [(encode_change(r, False, i, proto), encode_change(r, True, i, proto))
               for i, r in enumerate(plan.routes)]
    total = int(rate * duration)
    max_batch = max(1, int(rate * tick * 10))
    report = ChurnReport(rate=rate, duration=duration, pool=len(plan.routes), window=plan.window, proto=proto,
                         gateways=list(gateways), per_second=[0] * math.ceil(duration))
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setblocking(False)
        start, cpu = time.monotonic(), time.process_time()
        report.started_at = time.time()
        done = 0
        while done < total:
            now = time.monotonic()
            elapsed = now - start
            # At the deadline, what is due then is sent (up to a batch) and the run ends.
            n = due(rate, min(elapsed, duration), done, total, max_batch)
            if n:
                batch = []
                for i in range(done, done + n):
                    add, index = plan.change(i)
                    batch.append(encoded[index][add])
                    report.adds += add
                sock.send(b"".join(batch))
                done += n
                report.per_second[min(int(now - start), len(report.per_second) - 1)] += n
                _drain_errors(sock, report)
            if elapsed >= duration:
                break
            pause = tick - (time.monotonic() - now)
            if pause > 0:
                time.sleep(pause)
        report.ended_at = time.time()
        report.cpu_seconds = time.process_time() - cpu
        report.changes = done
        report.deletes = done - report.adds
        time.sleep(0.05)  # the last refusals, if any
        _drain_errors(sock, report)
    finally:
        sock.close()
    # Said at once, before the kernel is read back: a caller times what follows from here.
    sys.stdout.write(msgspec.json.encode({"ended_at": report.ended_at, "changes": report.changes}).decode() + "\n")
    sys.stdout.flush()
    report.final_expected = sorted(plan.routes[i].prefix for i in plan.present_after(report.changes))
    report.final_kernel = kernel_prefixes(proto)
    return report


def _drain_errors(sock: socket.socket, report: ChurnReport) -> None:
    while True:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        for code, kind, seq in parse_errors(data):
            name = f"{'add' if kind == RTM_NEWROUTE else 'delete'} {errno_names.errorcode.get(code, str(code))}"
            report.errors[name] = report.errors.get(name, 0) + 1
            log.debug("kernel refused %s of route %d: errno %d", "add" if kind == RTM_NEWROUTE else "delete", seq,
                      code)


# --- callers: the benchmark and the tests, in the root namespace ---------------------------


@dataclass(frozen=True)
class ChurnOptions:
    """A churn run as :func:`main` takes it."""

    rate: float
    duration: float
    pool: int = 20_000
    window: int = 5_000
    table: Path = DEFAULT_TABLE
    gateways: tuple[str, ...] = ()
    tick: float = 0.01

    def argv(self) -> list[str]:
        extra = [arg for gw in self.gateways for arg in ("--via", gw)]
        return ["--rate", str(self.rate), "--duration", str(self.duration), "--pool", str(self.pool),
                "--window", str(self.window), "--table", str(self.table), "--tick", str(self.tick), *extra]


def spawn(namespace: str, options: ChurnOptions) -> subprocess.Popen[bytes]:
    """Start a churn run inside ``namespace``; :func:`collect` its report."""
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-m", "routeflow.lab.churn", *options.argv()]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


class Churned(msgspec.Struct):
    """The first line a run prints, the moment its last change is made."""

    ended_at: float
    changes: int


def churned(proc: subprocess.Popen[bytes]) -> Churned | None:
    """Wait until a run :func:`spawn` started has made its last change; None if it failed
    first (:func:`collect` says why)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return msgspec.json.decode(line, type=Churned) if line.strip() else None


def collect(proc: subprocess.Popen[bytes], timeout: float) -> ChurnReport:
    """The report of a run :func:`spawn` started (RuntimeError if it failed)."""
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"churn exited {proc.returncode}: {err.decode(errors='replace').strip()[-800:]}")
    return msgspec.json.decode(out.strip().splitlines()[-1], type=ChurnReport)


def flush_in(namespace: str) -> None:
    """Remove every churned route from ``namespace`` (``--flush``)."""
    subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-m", "routeflow.lab.churn", "--flush"],
                   check=True, capture_output=True, timeout=120)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m routeflow.lab.churn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=1000.0, help="changes per second (default 1000)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--pool", type=int, default=ChurnOptions.pool, help="prefixes taken from the table")
    p.add_argument("--window", type=int, default=ChurnOptions.window, help="prefixes installed at once")
    p.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="prefix<TAB>origin AS table (gzip)")
    p.add_argument("--via", action="append", default=[], help="gateway (default: every resolved IPv4 neighbour)")
    p.add_argument("--tick", type=float, default=0.01, help="seconds between batches")
    p.add_argument("--flush", action="store_true", help="only remove the churned routes of an earlier run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    removed = flush()
    if args.flush:
        print(msgspec.json.encode({"removed": removed}).decode())
        return 0
    gateways, subnets = vm_gateways_and_subnets()
    gateways = args.via or gateways
    entries = read_table(args.table, args.pool, subnets)
    plan = ChurnPlan(tuple(assign_gateways(entries, gateways)), args.window)
    report = churn(plan, args.rate, args.duration, gateways, tick=args.tick)
    sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
