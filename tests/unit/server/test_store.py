"""The NIB store: what a successor reads back, what is written when, and the refusals."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.server.test_core import CONFIG, FIB, joined_core, messages

from routeflow.model import Table
from routeflow.protocol.messages import FibSnapshot, MappingSeen, TableDump, TableMod
from routeflow.server.core import CONTROLLER, ServerCore
from routeflow.server.nib import Nib
from routeflow.server.store import (
    MAPPING,
    MAX_ITEM,
    Deposed,
    EmbeddedStore,
    NibWriter,
    changed_items,
    dp_key,
    encode_item,
    restore,
    vm_key,
)


def active_core() -> ServerCore:
    """A core whose VM has synced and whose datapath got its flows."""
    core, _ = joined_core()
    core.on_mapping_seen(MappingSeen(CONFIG.rfvs.dpid, 7, "rA", "eth1"))
    core.on_fib_snapshot("rA", FibSnapshot(FIB))
    assert messages(core.reconcile(), TableMod, CONTROLLER)
    return core


def test_a_successor_reads_back_the_mapping_the_vm_state_and_the_installed_table():
    nib = active_core().nib
    items = {key: encode_item(nib, key) for key in (MAPPING, vm_key("rA"), dp_key(1))}
    assert all(items.values())
    successor = Nib(CONFIG)
    tables = restore(successor, items)  # type: ignore[arg-type]
    assert successor.rfvs_ports == {("rA", "eth1"): (CONFIG.rfvs.dpid, 7)}
    state = successor.vms["rA"]
    assert (state.fib().routes, state.fib().interfaces, state.fib().neighbours) == (
        nib.vms["rA"].fib().routes, nib.vms["rA"].fib().interfaces, nib.vms["rA"].fib().neighbours)
    # Its flows stay untouched until its client's snapshot: the record may lag.
    assert not state.synced
    assert tables == {1: nib.datapaths[1].installed}
    assert 1 not in successor.datapaths  # a datapath is there once the controller says so


def test_unknown_vms_and_unreadable_items_are_skipped():
    nib = active_core().nib
    items = {MAPPING: encode_item(nib, MAPPING), "vm/rZ": encode_item(nib, vm_key("rA")), "dp/zz": b"\x01",
             vm_key("rA"): b"not msgpack"}
    successor = Nib(CONFIG)
    assert restore(successor, items) == {}  # type: ignore[arg-type]
    assert "rZ" not in successor.vms and not successor.vms["rA"].routes
    assert successor.rfvs_ports


def test_what_a_message_may_change():
    assert changed_items("client", "rA", FibSnapshot(FIB)) == ["vm/rA"]
    assert changed_items("controller", "", MappingSeen(9, 7, "rA", "eth1")) == [MAPPING]
    assert changed_items("controller", "", TableMod(0x1), TableDump(1, 0x2, (), ())) == [dp_key(1), dp_key(2)]


def test_the_writer_writes_what_changed_and_nothing_twice():
    core = active_core()
    store = EmbeddedStore()
    writer = NibWriter(store, core.nib)
    writer.mark_all()
    assert asyncio.run(writer.flush()) == 3
    assert set(store.items) == {MAPPING, vm_key("rA"), dp_key(1)}
    writer.mark_all()
    assert asyncio.run(writer.flush()) == 0, "unchanged items are not written again"
    core.on_mapping_seen(MappingSeen(CONFIG.rfvs.dpid, 8, "rA", "eth2"))
    writer.mark([MAPPING, dp_key(1)])
    assert asyncio.run(writer.flush()) == 1
    # A datapath being dumped again (its table unknown for a moment) keeps its record.
    core.on_controller_down()
    writer.mark([dp_key(1)])
    assert asyncio.run(writer.flush()) == 0 and dp_key(1) in store.items


def test_an_oversized_item_is_deleted_not_left_stale(monkeypatch):
    core = active_core()
    store = EmbeddedStore()
    writer = NibWriter(store, core.nib)
    writer.mark_all()
    asyncio.run(writer.flush())
    monkeypatch.setattr("routeflow.server.store.MAX_ITEM", 10)
    writer.mark([vm_key("rA")])
    asyncio.run(writer.flush())
    assert vm_key("rA") not in store.items
    assert MAX_ITEM > 1000
    # Not encoded again while it is no smaller: at a million entries every flush would.
    encoded = []
    monkeypatch.setattr("routeflow.server.store.encode_item", lambda nib, key: encoded.append(key))
    writer.mark([vm_key("rA")])
    asyncio.run(writer.flush())
    assert encoded == []
    core.nib.vms["rA"].routes.popitem()
    writer.mark([vm_key("rA")])
    asyncio.run(writer.flush())
    assert encoded == [vm_key("rA")]


class RefusingStore(EmbeddedStore):
    async def save(self, changes):
        raise Deposed("not the leader")


def test_a_refused_write_sets_deposed():
    core = active_core()
    writer = NibWriter(RefusingStore(), core.nib)
    writer.mark_all()

    async def run() -> bool:
        deposed = asyncio.Event()
        await asyncio.wait_for(writer.run(deposed), 2)
        return deposed.is_set()

    assert asyncio.run(run())


def test_the_restored_writer_compares_the_switch_dump_with_the_record(caplog):
    core = active_core()
    store = EmbeddedStore()
    writer = NibWriter(store, core.nib)
    writer.mark_all()
    asyncio.run(writer.flush())
    successor = NibWriter(store, Nib(CONFIG))
    asyncio.run(successor.restore())
    installed: Table = core.nib.datapaths[1].installed  # type: ignore[assignment]
    caplog.set_level("INFO", "routeflow.server.store")
    successor.check_dump(TableDump(5, 1, tuple(installed.flows.values()), tuple(installed.groups.values())))
    assert f"holds the {len(installed.flows)} flows" in caplog.text
    assert not successor.stored_tables
    with pytest.raises(KeyError):
        successor.stored_tables[1]
