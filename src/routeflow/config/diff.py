"""What a configuration reload changes, pure: the difference between the running config and
the one read again, and what of it a running server cannot take without a restart.

A reload applies the difference only (see :meth:`routeflow.server.core.ServerCore.reload`):
VMs added or removed, and of a VM kept its NICs, addresses, engine configuration, trunk
or routing plane. The listeners, the HTTP surface, the store and the RFVS bridge are the
process's own: changing them is a restart, and a reload that asks for it is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from routeflow.config.schema import Config, VmConfig

#: Config keys a running server cannot change: its sockets, its store, the RFVS bridge.
RESTART_KEYS = ("listen", "manage_vms", "http", "store", "rfvs")


@dataclass(frozen=True)
class VmDiff:
    """How VM ``new.name`` changes: NICs added, removed or changed (port, VLAN, MAC or
    addresses), and whether its engine must be replaced (engine or daemons changed) or
    only given its new configuration."""

    old: VmConfig
    new: VmConfig

    @property
    def nics_added(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.new.interfaces if self.old.interface(n.name) is None)

    @property
    def nics_removed(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.old.interfaces if self.new.interface(n.name) is None)

    @property
    def nics_changed(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.new.interfaces if self.old.interface(n.name) not in (None, n))

    @property
    def replaced(self) -> bool:
        """A new engine (or set of daemons): the VM is made again, its routing restarts."""
        return (self.old.engine, self.old.daemons) != (self.new.engine, self.new.daemons)

    @property
    def remapped(self) -> bool:
        """Where the NICs it keeps are on the physical plane (datapath, port, VLAN, MAC, trunk,
        routing plane) changed: nothing the VM's kernel shows, so its datapath's flows and the
        slow path's pairs are computed again. (NICs added or removed, and addresses, the VM's
        client reports as the kernel takes them.)"""
        def where(vm: VmConfig) -> dict[str, tuple[int, int | None, str | None]]:
            return {n.name: (n.port, n.vlan, n.mac) for n in vm.interfaces}
        before, after = where(self.old), where(self.new)
        return (self.old.dpid != self.new.dpid or self.old.trunk != self.new.trunk
                or self.old.routing_plane != self.new.routing_plane
                or any(before[name] != after[name] for name in before.keys() & after.keys()))

    def describe(self) -> str:
        parts = []
        for label, names in (("NICs added", self.nics_added), ("NICs removed", self.nics_removed),
                             ("NICs changed", self.nics_changed)):
            if names:
                parts.append(f"{label} {', '.join(names)}")
        if self.old.loopback != self.new.loopback:
            parts.append("loopback")
        if self.replaced:
            parts.append(f"engine {self.new.engine} {' '.join(self.new.daemons)}".rstrip() + " (made again)")
        elif self.old.engine_config != self.new.engine_config:
            parts.append("engine config")
        for name in ("dpid", "trunk", "routing_plane"):
            if getattr(self.old, name) != getattr(self.new, name):
                parts.append(name.replace("_", " "))
        return f"VM {self.new.name}: {'; '.join(parts)}"


@dataclass(frozen=True)
class ConfigDiff:
    """The difference between the running config and a new one (of the configured VMs:
    those the server made for switches that joined are not in either)."""

    added: tuple[VmConfig, ...]
    removed: tuple[VmConfig, ...]
    changed: tuple[VmDiff, ...]
    #: Other top-level keys that differ and that a running server takes (limits, templates...).
    settings: tuple[str, ...]
    #: Keys that differ and need a restart (:data:`RESTART_KEYS`).
    restart: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.settings or self.restart)

    def describe(self) -> list[str]:
        """One line per change, for the operator and the log."""
        lines = [f"VM {vm.name} added (datapath {vm.dpid:#x})" for vm in self.added]
        lines += [f"VM {vm.name} removed (datapath {vm.dpid:#x})" for vm in self.removed]
        lines += [change.describe() for change in self.changed]
        lines += [f"{name} changed" for name in self.settings]
        return lines


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """What changes from ``old`` to ``new``, VM by VM and key by key."""
    old_vms = {vm.name: vm for vm in old.vms}
    new_vms = {vm.name: vm for vm in new.vms}
    settings: list[str] = []
    restart: list[str] = []
    for f in dataclasses.fields(Config):
        if f.name in ("vms", "source") or getattr(old, f.name) == getattr(new, f.name):
            continue
        (restart if f.name in RESTART_KEYS else settings).append(f.name)
    return ConfigDiff(
        added=tuple(vm for vm in new.vms if vm.name not in old_vms),
        removed=tuple(vm for vm in old.vms if vm.name not in new_vms),
        changed=tuple(VmDiff(old_vms[vm.name], vm) for vm in new.vms
                      if vm.name in old_vms and old_vms[vm.name] != vm),
        settings=tuple(settings), restart=tuple(restart))
