"""What a config and a topology mean, beyond their syntax: the pure part of ``routeflow check``.

Nothing here runs a program or touches the system. It finds:

- FRR daemons listed that nothing in the ``engine_config`` is for (:func:`idle_daemons`);
- where a config and the lab topology it runs on disagree (:func:`compare_lab`);
- a config checked as a topology, or the other way round (:func:`kind_hint`);
- what an engine's own parser said about a rendered config, with its line numbers mapped
  back to the ``engine_config`` (:func:`bird_errors`, :func:`vtysh_errors`), for
  :mod:`routeflow.check.engines`, which runs the parsers.

Each finding names a file, a field and a reason, like a
:class:`~routeflow.errors.ConfigError` line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from routeflow.config.frr_daemons import needed_daemons
from routeflow.config.safe_yaml import shown
from routeflow.config.schema import Config
from routeflow.lab.topology import Switch, Topology


@dataclass(frozen=True)
class Finding:
    """One error or warning: the file, the field in it and the reason."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"

    def as_json(self) -> dict[str, str]:
        return {"file": self.file, "field": self.field, "reason": self.reason}


@dataclass
class Findings:
    """The errors (the files are invalid) and warnings (worth a look) found so far."""

    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    def error(self, file: str, path: str, reason: str) -> None:
        self.errors.append(Finding(file, path, reason))

    def warning(self, file: str, path: str, reason: str) -> None:
        self.warnings.append(Finding(file, path, reason))


def idle_daemons(found: Findings, file: str, path: str, daemons: Sequence[str], engine_config: str) -> None:
    """Warnings for the daemons the FRR instance at ``path`` (``vms[0]``) runs and nothing in its
    ``engine_config`` is for (the loader refuses the daemons it needs and lacks)."""
    needed = needed_daemons(engine_config)
    for daemon in daemons:
        if daemon not in needed:
            found.warning(file, f"{path}.daemons", f"{daemon} runs, but no statement of engine_config is for it")


# -- a config against the lab topology it runs on -------------------------------------

def compare_lab(found: Findings, config: Config, topology: Topology) -> None:
    """Where ``config`` and ``topology`` disagree: each VM mirrors a switch of the topology, each
    VM NIC a linked port of it, and VM and switch agree on the trunk. Switches no VM mirrors,
    linked ports no NIC mirrors and trunks no VM uses are warnings."""
    cfg, topo = config.source, topology.source
    switches = {s.dpid: (k, s) for k, s in enumerate(topology.switches)}
    for k, switch in enumerate(topology.switches):
        if switch.dpid == config.rfvs.dpid:
            found.error(cfg, "rfvs.dpid", f"{switch.dpid:#x} is also the datapath id of switch {switch.name} "
                                          f"({topo} switches[{k}].dpid)")
        if switch.name == config.rfvs.bridge:
            # In a lab, the switches and the RFVS are bridges of the same Open vSwitch.
            found.error(cfg, "rfvs.bridge", f"{shown(switch.name)} is also the name of a switch "
                                            f"({topo} switches[{k}].name)")
    mirrored = set()
    for i, vm in enumerate(config.vms):
        if vm.dpid not in switches:
            known = ", ".join(f"{s.name} {s.dpid:#x}" for s in topology.switches)
            found.error(cfg, f"vms[{i}].dpid", f"{vm.dpid:#x} is no switch of {topo} (its switches: {known})")
            continue
        k, switch = switches[vm.dpid]
        mirrored.add(vm.dpid)
        ports = topology.ports(switch.name)
        for j, iface in enumerate(vm.interfaces):
            if iface.port not in ports:
                ends = ", ".join(f"{switch.name}:{p}" for p in sorted(ports)) or "none"
                found.error(cfg, f"vms[{i}].interfaces[{j}].port",
                            f"port {iface.port} of switch {switch.name} is on no link of {topo} "
                            f"(the links of {switch.name} end at: {ends})")
        sharing = config.vms_of_dpid(vm.dpid)
        nics = {iface.port for v in sharing for iface in v.interfaces}
        for port, link in sorted(ports.items()) if sharing[0] is vm else ():  # once per switch
            if port not in nics:
                end = link.ends.index(next(e for e in link.ends if e.node == switch.name and e.port == port))
                names = ", ".join(f"{v.name} ({cfg} vms[{config.vms.index(v)}])" for v in sharing)
                found.warning(topo, f"links[{topology.links.index(link)}].ends[{end}]",
                              f"port {port} of {switch.name} is mirrored by no interface of VM {names}")
        _compare_trunk(found, cfg, topo, i, vm.name, vm.trunk.port if vm.trunk else None, k, switch)
    for k, switch in enumerate(topology.switches):
        admitted = any(t.admit is None or switch.dpid in t.admit for t in config.templates)
        if switch.dpid not in mirrored and not admitted:
            found.warning(topo, f"switches[{k}].dpid", f"switch {switch.name} ({switch.dpid:#x}) is mirrored by "
                                                       f"no VM of {cfg}" + (" and admitted by no template: it will "
                                                                            "be rejected" if config.templates else ""))


def _compare_trunk(found: Findings, cfg: str, topo: str, i: int, vm: str, port: int | None,
                   k: int, switch: Switch) -> None:
    """The trunk port ``port`` of VM ``vm`` (``vms[i]``, None: no trunk) against that of the
    switch it mirrors (``switches[k]``)."""
    if port is not None and switch.trunk is None:
        found.error(cfg, f"vms[{i}].trunk.port", f"switch {switch.name} has no trunk in {topo} "
                                                 f"(switches[{k}]: add trunk: {port})")
    elif port is not None and port != switch.trunk:
        found.error(cfg, f"vms[{i}].trunk.port", f"{port} is not the trunk port of switch {switch.name}: "
                                                 f"{topo} switches[{k}].trunk is {switch.trunk}")
    elif port is None and switch.trunk is not None:
        found.warning(topo, f"switches[{k}].trunk", f"VM {vm} ({cfg} vms[{i}]) has no trunk: its slow path "
                                                    f"goes through the controller and port {switch.trunk} is unused")


# -- which kind of file --------------------------------------------------------------

def kind_hint(document: object, path: str, as_topology: bool) -> str | None:
    """A hint when the file checked looks like the other kind: a lab topology (``switches``,
    ``links``, no ``vms``) checked as a config, or a config checked as a topology."""
    if not isinstance(document, dict):
        return None
    if not as_topology and "vms" not in document and ("switches" in document or "links" in document):
        return f"this looks like a lab topology: routeflow check --topology {path}"
    if as_topology and "vms" in document and "switches" not in document:
        return f"this looks like a routeflow config: routeflow check {path}"
    return None


# -- what an engine's parser said ----------------------------------------------------

def first_line(conf: str, engine_config: str) -> int:
    """The line (1-based) of the rendered ``conf`` where ``engine_config`` begins: routeflow's
    own lines (hostname, log file) come before it."""
    return conf.count("\n", 0, conf.rfind(engine_config.rstrip("\n"))) + 1


def _where(line: int, first: int, engine_config: str, conf_name: str) -> str:
    """Line ``line`` of the rendered config, as a line of the engine_config if it is one."""
    if first <= line < first + len(engine_config.splitlines()):
        return f"line {line - first + 1}"
    return f"line {line} of the {conf_name} routeflow writes"


#: A BIRD config error: ``bird: FILE:LINE:COLUMN MESSAGE``.
_BIRD_ERROR = re.compile(r"(?:bird: )?(?P<file>.+?):(?P<line>\d+):(?P<column>\d+) (?P<message>.*)")
#: BIRD's ``--version`` line.
_BIRD_VERSION = re.compile(r"BIRD version (?P<version>(?P<major>\d+)\.\S+)")


def bird_version(output: str) -> tuple[int, str] | None:
    """(major, full version) from ``bird --version`` output; None if it says none."""
    match = _BIRD_VERSION.search(output)
    return (int(match["major"]), match["version"]) if match else None


def bird_errors(output: str, conf_file: str, conf: str, engine_config: str) -> list[str]:
    """The errors of ``bird -p -c conf_file`` (its ``output``), lines mapped to the engine_config's."""
    first = first_line(conf, engine_config)
    reasons = []
    for text in filter(None, (line.strip() for line in output.splitlines())):
        match = _BIRD_ERROR.fullmatch(text)
        if match and match["file"] == conf_file:
            where = _where(int(match["line"]), first, engine_config, "bird.conf")
            reasons.append(f"{where}, column {match['column']}: {match['message']}")
        elif match:  # in a file the config includes
            reasons.append(f"{match['file']} line {match['line']}, column {match['column']}: {match['message']}")
        else:
            reasons.append(text.removeprefix("bird: ").replace(conf_file, "bird.conf"))
    return reasons or ["rejected, without a message"]


#: A vtysh dry-run error: ``line N: % MESSAGE``; ``[N]`` after an error's name is vtysh's node number.
_VTYSH_ERROR = re.compile(r"line (?P<line>\d+): (?P<message>.*)")
_VTYSH_NODE = re.compile(r"^(%[^[:]*)\[\d+\]")
#: vtysh's ``--help`` line naming the FRR version.
_FRR_VERSION = re.compile(r"FRR \(version (?P<version>[^)\s]+)\)")


def frr_version(output: str) -> str | None:
    """The FRR version ``vtysh --help`` names, if it does."""
    match = _FRR_VERSION.search(output)
    return match["version"] if match else None


def vtysh_errors(output: str, conf: str, engine_config: str) -> list[str]:
    """The errors of ``vtysh --dryrun -f FILE`` (its ``output``), lines mapped to the engine_config's."""
    first = first_line(conf, engine_config)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reasons = []
    for text in lines:
        match = _VTYSH_ERROR.fullmatch(text)
        if match:
            message = _VTYSH_NODE.sub(r"\1", " ".join(match["message"].split()))
            reasons.append(f"{_where(int(match['line']), first, engine_config, 'frr.conf')}: {message}")
    # Without a line, what vtysh said is all there is (a warning about its own vtysh.conf among it).
    return reasons or lines or ["rejected, without a message"]
