"""Where the RF-Server keeps its NIB for a successor: the store.

One server alone keeps its NIB in its own memory (``store: {kind: embedded}``,
the default), and writes it nowhere: a restarted server rebuilds it from its
peers, who re-report everything. A server pair (:mod:`routeflow.server.election`) keeps it in etcd
(:mod:`routeflow.server.etcd_store`) too, so that the standby taking over
starts from what the active one knew: the mapping table (which RFVS port each VM
NIC is), each VM's state (interfaces, routes, neighbours) and each datapath's
installed table.

What a new active server does with them is the restarted server's rule, made
safe for a record that may lag the switches by a flush interval: the mapping
table is used at once (a stale entry is corrected by the next mapping packet,
which every client sends on reconnecting); a VM's state fills status and lets
its client's snapshot share route objects, but the VM's flows are left alone
until that snapshot is in (``synced`` stays False); an installed table is
compared with the switch's own dump when it arrives, which stays the baseline
the flows are diffed against (the controller sends only the differences).

Items are small msgspec (MessagePack) records under short keys: ``mapping``,
``vm/NAME``, ``dp/DPID``. Each is bounded (:data:`MAX_ITEM`): one larger (a
table of a million flows) is not stored, and its older copy is deleted, so a
successor never reads a stale one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Protocol

import msgspec

from routeflow.lograte import RateLimit
from routeflow.model import Flow, Group, Interface, Neighbour, Route, Table
from routeflow.protocol.messages import MappingSeen, Message, TableDump
from routeflow.server.nib import Nib, shared_route

log = logging.getLogger("routeflow.server.store")
# A store down for a while would otherwise be said every flush.
log.addFilter(RateLimit())

#: How often the NIB's changes go to the store, at most.
FLUSH_INTERVAL = 0.1
#: Largest item stored, encoded: etcd refuses requests over 1.5 MiB by default.
MAX_ITEM = 1 << 20

MAPPING = "mapping"


class Deposed(Exception):
    """A write was refused: this server no longer holds the leadership."""


class NibStore(Protocol):
    """Where the NIB's items live between two servers."""

    async def load(self) -> dict[str, bytes]:
        """Every item stored, by key."""
        ...

    async def save(self, changes: Mapping[str, bytes | None]) -> None:
        """Write ``changes`` (None deletes the key) at once; raises :class:`Deposed` if
        this server may no longer write."""
        ...


class EmbeddedStore:
    """A store in this process's memory. A server alone (``store: {kind: embedded}``) needs
    none: its NIB is its own memory, and nothing is written anywhere; this one holds what
    a :class:`NibWriter` writes where no etcd is wanted (the tests of the writer)."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}

    async def load(self) -> dict[str, bytes]:
        return dict(self.items)

    async def save(self, changes: Mapping[str, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.items.pop(key, None)
            else:
                self.items[key] = value


# -- the records -------------------------------------------------------------------------


class MappingEntry(msgspec.Struct, array_like=True, frozen=True):
    """A VM NIC and the RFVS port it was seen on."""

    vm: str
    ifname: str
    rfvs_dpid: int
    rfvs_port: int


class StoredVm(msgspec.Struct, array_like=True, frozen=True):
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...]
    neighbours: tuple[Neighbour, ...]


class StoredTable(msgspec.Struct, array_like=True, frozen=True):
    flows: tuple[Flow, ...]
    groups: tuple[Group, ...]


_encoder = msgspec.msgpack.Encoder()


def vm_key(name: str) -> str:
    return f"vm/{name}"


def dp_key(dpid: int) -> str:
    return f"dp/{dpid:016x}"


def encode_item(nib: Nib, key: str) -> bytes | None:
    """Item ``key`` of ``nib``, encoded; None if the NIB has nothing there."""
    if key == MAPPING:
        entries = [MappingEntry(vm, ifname, dpid, port) for (vm, ifname), (dpid, port) in
                   sorted(nib.rfvs_ports.items())]
        return _encoder.encode(entries)
    kind, _, name = key.partition("/")
    if kind == "vm" and name in nib.vms:
        state = nib.vms[name]
        if not state.synced:
            return None  # nothing reported yet: what is stored stays until the VM reports
        return _encoder.encode(StoredVm(tuple(state.interfaces.values()), tuple(state.routes.values()),
                                        tuple(state.neighbours.values())))
    if kind == "dp":
        dp = nib.datapaths.get(int(name, 16))
        if dp is None or dp.installed is None:
            return None
        return _encoder.encode(StoredTable(tuple(dp.installed.flows.values()), tuple(dp.installed.groups.values())))
    return None


def _entries(nib: Nib, key: str) -> int:
    """How many entries item ``key`` holds: what its size follows."""
    kind, _, name = key.partition("/")
    if kind == "vm" and name in nib.vms:
        state = nib.vms[name]
        return len(state.routes) + len(state.neighbours) + len(state.interfaces)
    if kind == "dp":
        dp = nib.datapaths.get(int(name, 16))
        return len(dp.installed.flows) + len(dp.installed.groups) if dp and dp.installed else 0
    return len(nib.rfvs_ports)


def restore(nib: Nib, items: Mapping[str, bytes]) -> dict[int, Table]:
    """Fill ``nib`` from stored ``items`` (see the module's rules): the mapping table and
    each configured VM's state, which stays unsynced. Returns the stored installed
    tables by datapath, to compare with the switches' dumps. An item that cannot be
    decoded (another version's) is skipped with a warning."""
    tables: dict[int, Table] = {}
    for key, raw in sorted(items.items()):
        kind, _, name = key.partition("/")
        try:
            if key == MAPPING:
                for entry in msgspec.msgpack.decode(raw, type=list[MappingEntry]):
                    if nib.config.vm(entry.vm) is not None:
                        nib.rfvs_ports[(entry.vm, entry.ifname)] = (entry.rfvs_dpid, entry.rfvs_port)
            elif kind == "vm" and name in nib.vms:
                vm = msgspec.msgpack.decode(raw, type=StoredVm)
                state = nib.vms[name]
                state.interfaces = {i.ifname: i for i in vm.interfaces}
                state.routes = {r.prefix: shared_route(r) for r in vm.routes}
                state.neighbours = {(n.ifname, n.ip): n for n in vm.neighbours}
            elif kind == "dp":
                table = msgspec.msgpack.decode(raw, type=StoredTable)
                tables[int(name, 16)] = Table({f.key: f for f in table.flows}, {g.group_id: g for g in table.groups})
        except (msgspec.DecodeError, ValueError) as exc:
            log.warning("stored NIB item %s unreadable, skipped: %s", key, exc)
    return tables


def compare_dump(stored: Table, dump: TableDump) -> str:
    """How a switch's dump compares with the table the previous server recorded, in words."""
    flows = {f.key: f for f in dump.flows}
    differ = sum(1 for key in stored.flows.keys() | flows.keys() if stored.flows.get(key) != flows.get(key))
    groups = {g.group_id: g for g in dump.groups}
    differ += sum(1 for gid in stored.groups.keys() | groups.keys() if stored.groups.get(gid) != groups.get(gid))
    if not differ:
        return f"holds the {len(flows)} flows and {len(groups)} groups the previous server recorded"
    return f"differs from the previous server's record in {differ} flows and groups (the switch's table is used)"


def changed_items(role: str, name: str, *msgs: Message) -> list[str]:
    """The NIB items that messages from (or, role ``controller``, to) a peer may change."""
    if role == "client":
        return [vm_key(name)]
    keys = []
    for msg in msgs:
        if isinstance(msg, MappingSeen):
            keys.append(MAPPING)
        dpid = getattr(msg, "dpid", None)
        if isinstance(dpid, int):  # a table changed, dumped, joined, refused...: its installed table
            keys.append(dp_key(dpid))
    return keys


class NibWriter:
    """Writes the NIB's changed items to a store, in batches.

    The service marks what an event may have changed (:meth:`mark`); :meth:`flush`
    encodes those items and writes the ones whose bytes changed.
    """

    def __init__(self, store: NibStore, nib: Nib) -> None:
        self.store = store
        self.nib = nib
        self._dirty: set[str] = set()
        #: What the store holds, as this writer last wrote or read it.
        self._written: dict[str, bytes] = {}
        #: Installed tables the predecessor recorded, until the switch's dump arrives.
        self.stored_tables: dict[int, Table] = {}
        #: Items found over MAX_ITEM, with their entries then: not encoded again (at a million
        #: flows, every flush would) until they have fewer.
        self._oversized: dict[str, int] = {}

    async def restore(self) -> None:
        """Read the store into the NIB (before serving)."""
        items = await self.store.load()
        self._written = dict(items)
        self.stored_tables = restore(self.nib, items)
        if items:
            log.info("NIB restored from the store: %d NIC mappings, %d VMs, %d installed tables",
                     len(self.nib.rfvs_ports), sum(1 for k in items if k.startswith("vm/")), len(self.stored_tables))

    def mark(self, keys: Iterable[str]) -> None:
        self._dirty.update(keys)

    def mark_all(self) -> None:
        self._dirty.add(MAPPING)
        self._dirty.update(vm_key(name) for name in self.nib.vms)
        self._dirty.update(dp_key(dpid) for dpid in self.nib.datapaths)

    @property
    def pending(self) -> bool:
        return bool(self._dirty)

    def check_dump(self, dump: TableDump) -> None:
        """Log how a switch's dump compares with the predecessor's record of its table."""
        stored = self.stored_tables.pop(dump.dpid, None)
        if stored is not None and not dump.error and not dump.more:
            log.info("datapath %#x %s", dump.dpid, compare_dump(stored, dump))

    async def flush(self) -> int:
        """Write every marked item that changed; the number written. Raises Deposed."""
        dirty, self._dirty = self._dirty, set()
        changes: dict[str, bytes | None] = {}
        for key in sorted(dirty):
            entries = _entries(self.nib, key)
            if key in self._oversized and entries >= self._oversized[key]:
                continue  # still too large: deleted from the store when it was found so
            value = encode_item(self.nib, key)
            if value is None:
                # An unsynced VM, a table being read again: the stored copy is still the best there is.
                continue
            if len(value) > MAX_ITEM:
                log.warning("NIB item %s is %d bytes (%d entries), over %d: not stored", key, len(value), entries,
                            MAX_ITEM)
                self._oversized[key] = entries
                value = None
            else:
                self._oversized.pop(key, None)
            if self._written.get(key) != value:
                changes[key] = value
        if not changes:
            return 0
        try:
            await self.store.save(changes)
        except Deposed:
            raise
        except Exception:
            self._dirty |= changes.keys()  # tried again at the next flush
            raise
        for key, value in changes.items():
            if value is None:
                self._written.pop(key, None)
            else:
                self._written[key] = value
        return len(changes)

    async def run(self, deposed: asyncio.Event) -> None:
        """Flush every :data:`FLUSH_INTERVAL` while there are changes; set ``deposed`` and
        return if the store refuses them as not the leader's."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            if not self._dirty:
                continue
            try:
                await self.flush()
            except Deposed as exc:
                log.error("the store refused the NIB: %s", exc)
                deposed.set()
                return
            except OSError as exc:
                log.warning("cannot write the NIB to the store: %s", exc)
