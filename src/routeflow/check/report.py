"""``routeflow check``: a config, the lab topology it runs on, or a topology alone, validated
for what they mean as well as their syntax.

The syntax is :func:`~routeflow.config.loader.parse_config`'s and
:func:`~routeflow.lab.topology.parse_topology`'s; the meaning is
:mod:`routeflow.check.semantics` (pure: daemons, config against topology) and
:mod:`routeflow.check.engines` (each engine_config parsed by its engine).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from routeflow.check import engines, semantics
from routeflow.check.semantics import Finding, Findings
from routeflow.config.loader import parse_config
from routeflow.config.safe_yaml import read_yaml
from routeflow.config.schema import Config, Engine, VmConfig
from routeflow.config.templates import sample_vm
from routeflow.errors import ConfigError
from routeflow.lab.topology import Router, Topology, parse_topology

T = TypeVar("T")


@dataclass
class CheckReport:
    """What ``routeflow check`` found in ``file`` (and ``lab``, the topology it runs on)."""

    file: str
    #: The file checked, parsed; None if invalid.
    parsed: Config | Topology | None
    lab: str | None = None
    topology: Topology | None = None
    found: Findings = field(default_factory=Findings)

    @property
    def valid(self) -> bool:
        return not self.found.errors

    def summary(self) -> list[str]:
        """What was found valid, one line per file."""
        lines = []
        if isinstance(self.parsed, Config):
            templates = len(self.parsed.templates)
            lines.append(f"{self.file}: valid config ({len(self.parsed.vms)} VMs"
                         + (f", {templates} template{'s' if templates > 1 else ''})" if templates else ")"))
        elif self.parsed is not None:
            lines.append(f"{self.file}: valid topology ({_topology_counts(self.parsed)})")
        if self.lab is not None and self.topology is not None:
            lines.append(f"{self.lab}: valid topology ({_topology_counts(self.topology)}), "
                         f"and the VMs of {self.file} match it")
        return lines

    def as_json(self) -> dict[str, Any]:
        """``{"file", "valid": true, "config", "warnings"}`` (with ``lab`` and ``topology`` if
        checked against one) or ``{"file", "valid": false, "errors", "warnings"}``."""
        document: dict[str, Any] = {"file": self.file, "valid": self.valid,
                                    "warnings": [w.as_json() for w in self.found.warnings]}
        if self.lab is not None:
            document["lab"] = self.lab
        if not self.valid:
            document["errors"] = [e.as_json() for e in self.found.errors]
            return document
        document["config"] = plain(self.parsed)
        if self.topology is not None:
            document["topology"] = plain(self.topology)
        return document


def check(file: str, lab: str | None = None, as_topology: bool = False) -> CheckReport:
    """Check config ``file`` (and that it fits the lab topology ``lab``), or with ``as_topology``
    the topology ``file``: every error and warning, with the parsed files if valid."""
    found = Findings()
    if as_topology:
        topology = _load(found, file, parse_topology, as_topology=True)
        if topology is not None:
            _check_engines(found, file, "routers", topology.routers)
        return CheckReport(file, topology, found=found)
    config = _load(found, file, parse_config, as_topology=False)
    if config is not None:
        _check_engines(found, file, "vms", config.vms)
        # A template's engine config, as the VM it makes for its first switch would run it.
        _check_engines(found, file, "templates", [sample_vm(t) for t in config.templates])
    report = CheckReport(file, config, lab, found=found)
    if lab is not None:
        report.topology = _load(found, lab, parse_topology, as_topology=True)
        if report.topology is not None:
            _check_engines(found, lab, "routers", report.topology.routers)
            if config is not None:
                semantics.compare_lab(found, config, report.topology)
    return report


def _load(found: Findings, path: str, parse: Callable[[object, str, Sequence[tuple[str, str]]], T],
          as_topology: bool) -> T | None:
    """``path`` parsed, or None with its errors in ``found`` (after a hint if it looks like
    the other kind of file)."""
    try:
        document = read_yaml(path)
    except ConfigError as exc:
        found.errors.extend(Finding(exc.file, f, reason) for f, reason in exc.problems)
        return None
    try:
        return parse(document.value, path, document.problems)
    except ConfigError as exc:
        hint = semantics.kind_hint(document.value, path, as_topology)
        if hint is not None:
            found.error(path, "(top)", hint)
        found.errors.extend(Finding(exc.file, f, reason) for f, reason in exc.problems)
        return None


def _check_engines(found: Findings, file: str, key: str, instances: Sequence[VmConfig | Router]) -> None:
    """The daemons and engine_config of each VM or router (``key``: ``vms``, ``routers``)."""
    for i, instance in enumerate(instances):
        path = f"{key}[{i}]"
        if instance.engine == Engine.FRR:
            semantics.idle_daemons(found, file, path, instance.daemons, instance.engine_config)
        engines.check_engine_config(found, file, path, instance.engine, instance.name, instance.engine_config,
                                    instance.daemons)


def _topology_counts(topology: Topology) -> str:
    return f"{len(topology.switches)} switches, {len(topology.hosts)} hosts, {len(topology.routers)} routers"


def plain(value: Any) -> Any:
    """``value`` (a parsed config or topology) as JSON values: dataclasses as objects,
    addresses as their text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface, ipaddress.IPv4Address,
                          ipaddress.IPv6Address)):
        return str(value)
    return value
