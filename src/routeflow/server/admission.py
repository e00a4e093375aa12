"""VMs for discovered switches: the RF-Server's admission decisions, pure.

When a switch joins that no configured VM mirrors, the first template whose policy
admits its datapath id makes it a VM (:func:`~routeflow.config.templates.vm_from_template`),
numbered with its datapath id if the template's pools reach that far and it is free,
else with the lowest free index; a switch no template admits, or one whose template's
pools are exhausted, is rejected with the reason. The :class:`Admissions` book keeps
the decisions, the pool indexes in use and, for a switch that left, when its VM's
grace period ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from routeflow.config.schema import Template, VmConfig
from routeflow.config.templates import pool_size, vm_from_template
from routeflow.model import PortDesc


@dataclass(frozen=True)
class Decision:
    """What becomes of a switch: a VM made from ``template`` (``vm``), or rejected for ``reason``."""

    dpid: int
    vm: VmConfig | None = None
    template: str = ""
    reason: str = ""

    @property
    def admitted(self) -> bool:
        return self.vm is not None


@dataclass
class Admissions:
    """The admission decisions taken, the template pools' indexes in use, and the VMs of
    switches that left, with when each one's grace period ends (the event loop's clock)."""

    templates: tuple[Template, ...]
    #: dpid -> the decision taken when it joined (kept while its VM lives, or it stays rejected).
    decisions: dict[int, Decision] = field(default_factory=dict)
    #: template name -> pool indexes in use.
    used: dict[str, set[int]] = field(default_factory=dict)
    #: VM name -> when it is removed, its switch having left.
    leaving: dict[str, float] = field(default_factory=dict)
    admitted_count: int = 0
    rejected_count: int = 0

    def decide(self, dpid: int, ports: Iterable[PortDesc]) -> Decision:
        """Admit or reject switch ``dpid`` (joining with ``ports``), and remember it."""
        decision = self._decide(dpid, sorted(ports))
        self.decisions[dpid] = decision
        if decision.admitted:
            self.admitted_count += 1
        else:
            self.rejected_count += 1
        return decision

    def _decide(self, dpid: int, ports: list[PortDesc]) -> Decision:
        exhausted = []
        for template in self.templates:
            if template.admit is not None and dpid not in template.admit:
                continue
            used = self.used.setdefault(template.name, set())
            size = pool_size(template)
            # Its datapath id if the pool has it (addresses an operator can predict), else the lowest free.
            n = dpid if dpid <= size and dpid not in used else next(
                (i for i in range(1, size + 1) if i not in used), None)
            if n is None:
                exhausted.append(template.name)
                continue
            used.add(n)
            return Decision(dpid, vm_from_template(template, n, dpid, [p.port_no for p in ports if p.up]),
                            template.name)
        if exhausted:
            return Decision(dpid, reason=f"the pools of template {', '.join(exhausted)} are exhausted "
                                         f"({', '.join(str(pool_size(t)) for t in self.templates if t.name in exhausted)} VMs)")
        return Decision(dpid, reason="no template admits it")

    def with_port(self, dpid: int, port: int) -> VmConfig | None:
        """The VM of admitted switch ``dpid`` with a NIC for ``port`` too, now up (remembered);
        None if the switch was not admitted here or the VM has one already (or can have none)."""
        decision = self.decisions.get(dpid)
        if decision is None or decision.vm is None or decision.vm.port_of(f"eth{port}") is not None:
            return None
        vm = vm_from_template(self.template(decision.template), index_of(decision), dpid,
                              [*(nic.port for nic in decision.vm.interfaces), port])
        if len(vm.interfaces) == len(decision.vm.interfaces):
            return None
        self.decisions[dpid] = Decision(dpid, vm, decision.template)
        return vm

    def readmit(self, name: str, dpid: int, ports: Iterable[int]) -> Decision | None:
        """Take again the decision a previous server took (its VM ``name`` for ``dpid``, with NICs
        for ``ports``), if a template still makes such a VM; None if none does now."""
        for template in self.templates:
            index = name[len(template.name):]
            if not (name.startswith(template.name) and index.isdigit() and index[0] != "0"):
                continue
            n, used = int(index), self.used.setdefault(template.name, set())
            if (template.admit is not None and dpid not in template.admit) or n > pool_size(template) or n in used \
                    or dpid in self.decisions:
                return None
            used.add(n)
            decision = self.decisions[dpid] = Decision(dpid, vm_from_template(template, n, dpid, ports), template.name)
            return decision
        return None

    def release(self, dpid: int) -> Decision | None:
        """Forget switch ``dpid``'s decision; its VM's pool index is free again."""
        decision = self.decisions.pop(dpid, None)
        if decision is not None and decision.vm is not None:
            self.leaving.pop(decision.vm.name, None)
            self.used.get(decision.template, set()).discard(index_of(decision))
        return decision

    def due(self, now: float) -> list[int]:
        """The switches whose VM's grace period is over."""
        gone = {name for name, until in self.leaving.items() if until <= now}
        return sorted(dpid for dpid, d in self.decisions.items() if d.vm is not None and d.vm.name in gone)

    def template(self, name: str) -> Template:
        return next(t for t in self.templates if t.name == name)

    def rejected(self, dpid: int) -> bool:
        """Whether switch ``dpid`` was rejected (and holds nothing but the table-miss drop)."""
        decision = self.decisions.get(dpid)
        return decision is not None and decision.vm is None


def index_of(decision: Decision) -> int:
    """The pool index of an admitted switch's VM: its name's number."""
    assert decision.vm is not None
    return int(decision.vm.name[len(decision.template):])
