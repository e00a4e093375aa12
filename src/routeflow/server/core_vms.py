"""The VMs the RF-Server runs, as they change while it runs: made for switches that join
(admission, grace period, retirement), taken again after a restart, and changed by a
configuration reload. Mixed into :class:`~routeflow.server.core.ServerCore`, pure as it is:
each method updates the NIB and returns the messages to send, a VM to make, change or
remove going to the virtual environment (:data:`VNET`) as a :class:`VmChange`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from routeflow.config.diff import ConfigDiff, diff_configs
from routeflow.config.schema import Config, VmConfig
from routeflow.errors import ConfigError
from routeflow.flows.incremental import IncrementalCompiler
from routeflow.model import PortDesc
from routeflow.protocol.messages import Admission, DiscoveryPlan, Message, RelayMap
from routeflow.server.nib import Nib, VmState

log = logging.getLogger("routeflow.server")

CONTROLLER = "controller"
#: Where the VMs the server makes and retires at runtime are (see :class:`VmChange`).
VNET = "vnet"


@dataclass(frozen=True)
class VmChange:
    """For the virtual environment: make VM ``vm`` (``add``), make the running VM ``vm.name``
    what ``vm`` says (``update``: NICs, addresses, engine configuration), or ``remove`` it."""

    vm: VmConfig
    kind: Literal["add", "update", "remove"]


@dataclass(frozen=True)
class Out:
    """A message to deliver: ``to`` is ``"controller"``, a VM name, or :data:`VNET`."""

    to: str
    msg: Message | VmChange


class VmLifecycle:
    """Admission of switches no VM mirrors, retirement after the grace period, and reloads."""

    # ServerCore's, which these methods share.
    config: Config
    nib: Nib
    _dirty: set[int]
    _changed: dict[str, tuple[set[str], set[tuple[str, str]]]]
    _compilers: dict[str, IncrementalCompiler]
    relay_map: Callable[[], RelayMap]
    discovery_plan: Callable[[], DiscoveryPlan]
    _link_states: Callable[[VmConfig], list[Out]]

    def _admit(self, dpid: int, ports: tuple[PortDesc, ...]) -> list[Out]:
        """A switch no VM mirrors: a VM from the first template admitting it, or a reject."""
        decision = self.nib.admissions.decide(dpid, ports)
        if decision.vm is None:
            log.warning("datapath %#x rejected: %s", dpid, decision.reason)
            self._dirty.add(dpid)  # nothing but the table-miss drop
            return [Out(CONTROLLER, Admission(dpid, False, reason=decision.reason))]
        vm = decision.vm
        log.info("datapath %#x admitted: template %s makes VM %s, %d NICs, router id %s", dpid, decision.template,
                 vm.name, len(vm.interfaces), vm.loopback[0].split("/")[0])
        self._set_vms((*self.config.vms, vm))
        return [Out(CONTROLLER, Admission(dpid, True, vm.name, decision.template)), Out(VNET, VmChange(vm, "add"))]

    def readmit(self, made: dict[str, tuple[int, tuple[int, ...]]], now: float) -> list[str]:
        """A restarted server takes the VMs its predecessor made for switches that joined
        (``made``: name -> datapath, ports) as its own again, so that the virtual environment
        adopts them; each waits its grace period for its switch. Returns the names taken."""
        taken = []
        for name, (dpid, ports) in sorted(made.items()):
            decision = None if self.config.vms_of_dpid(dpid) else self.nib.admissions.readmit(name, dpid, ports)
            if decision is None or decision.vm is None:
                log.info("VM %s, made for datapath %#x, is no template's now: it goes", name, dpid)
                continue
            self._set_vms((*self.config.vms, decision.vm))
            self.nib.admissions.leaving[name] = now + self.nib.admissions.template(decision.template).grace
            taken.append(name)
        if taken:
            log.info("VMs made by the previous server taken again: %s", ", ".join(taken))
        return taken

    def retire_due(self, now: float) -> list[Out]:
        """Remove the VMs of switches that left longer ago than their template's grace period."""
        out = []
        for dpid in self.nib.admissions.due(now):
            decision = self.nib.admissions.release(dpid)
            assert decision is not None and decision.vm is not None
            log.info("datapath %#x gone for its grace period: VM %s removed", dpid, decision.vm.name)
            self._set_vms(tuple(v for v in self.config.vms if v.name != decision.vm.name))
            out += self._forget(decision.vm)
        if out:
            out.append(Out(CONTROLLER, self.relay_map()))
        return out

    def reload(self, new: Config) -> tuple[ConfigDiff, list[Out]]:
        """Take config ``new`` (read again by the operator's reload): apply only what differs
        from the running one. VMs removed go, VMs added are made, a VM whose engine or daemons
        changed is made again, and a VM otherwise changed is updated in place (NICs, addresses,
        engine configuration); the datapaths of those VMs are computed again and sent only their
        differences, the others not even computed. VMs made for switches that joined stay.

        Raises :class:`~routeflow.errors.ConfigError`, changing nothing, if ``new`` asks for what
        a running server cannot do (:data:`~routeflow.config.diff.RESTART_KEYS`), or clashes with
        the VMs made for switches that joined or with their templates."""
        made = {d.vm.name: d for d in self.nib.admissions.decisions.values() if d.vm is not None}
        running = dataclasses.replace(self.config, vms=tuple(v for v in self.config.vms if v.name not in made))
        diff = diff_configs(running, new)
        problems = [(key, "cannot change while the server runs: restart it") for key in diff.restart]
        for i, vm in enumerate(new.vms):
            clash = made.get(vm.name) or next((d for d in made.values() if d.dpid == vm.dpid), None)
            if clash is not None:
                problems.append((f"vms[{i}]", f"datapath {clash.dpid:#x} is mirrored by VM {clash.vm.name} "  # type: ignore[union-attr]
                                              f"(made from template {clash.template}); it cannot be configured too"))
        in_use = {d.template for d in made.values()}
        for name in sorted(in_use):
            if next((t for t in new.templates if t.name == name), None) != self.nib.admissions.template(name):
                problems.append(("templates", f"template {name} has VMs running "
                                              f"({', '.join(sorted(v for v, d in made.items() if d.template == name))}): "
                                              "it cannot change or go while they live"))
        if problems:
            raise ConfigError(new.source, problems)
        out: list[Out] = []
        renamed = {vm.name: vm for vm in new.vms}
        kept = [renamed.get(vm.name, vm) for vm in self.config.vms if vm.name in renamed or vm.name in made]
        self._set_vms((*kept, *diff.added), dataclasses.replace(new, vms=()))
        for vm in diff.removed:
            log.info("reload: VM %s removed", vm.name)
            out += self._forget(vm)
        for change in diff.changed:
            log.info("reload: %s", change.describe())
            if change.replaced:  # made again: its client reports a new FIB
                out += self._forget(change.old)
                self.nib.vms[change.new.name] = VmState()
                out += [Out(VNET, VmChange(change.new, "add"))]
                continue
            for ifname in change.nics_removed:
                self.nib.rfvs_ports.pop((change.new.name, ifname), None)
                self._dirty.add(self.config.rfvs.dpid)
            if change.remapped:  # else its flows follow what its client reports (NICs, addresses)
                self._compilers.pop(change.new.name, None)
                self._dirty.update({change.old.dpid, change.new.dpid, self.config.rfvs.dpid})
            out += [Out(VNET, VmChange(change.new, "update")), *self._link_states(change.new)]
        for vm in diff.added:
            log.info("reload: VM %s added on datapath %#x", vm.name, vm.dpid)
            self._dirty.add(vm.dpid)
            out.append(Out(VNET, VmChange(vm, "add")))
        if diff.added or diff.removed or any(change.remapped or change.nics_removed for change in diff.changed):
            out += [Out(CONTROLLER, self.relay_map()), Out(CONTROLLER, self.discovery_plan())]
        return diff, out

    def _forget(self, vm: VmConfig) -> list[Out]:
        """What the server knew of VM ``vm``, gone: its slow-path pairs, its part of its
        datapath's table (the datapath is computed again without it), its resolutions."""
        for key in [k for k in self.nib.rfvs_ports if k[0] == vm.name]:
            del self.nib.rfvs_ports[key]
        self.nib.resolving.pop(vm.name, None)
        self._compilers.pop(vm.name, None)
        self._changed.pop(vm.name, None)
        self._dirty.update({vm.dpid, self.config.rfvs.dpid})
        return [Out(VNET, VmChange(vm, "remove"))]

    def _set_vms(self, vms: tuple[VmConfig, ...], settings: Config | None = None) -> None:
        """The VMs the server runs change (made, retired, reloaded), and with a reload the
        other settings (``settings``'s): a new config everywhere."""
        self.config = dataclasses.replace(settings or self.config, vms=vms)
        self.nib.config = self.config
        self.nib.admissions.templates = self.config.templates
        for vm in vms:
            self.nib.vms.setdefault(vm.name, VmState())
        for name in set(self.nib.vms) - {vm.name for vm in vms}:
            del self.nib.vms[name]
