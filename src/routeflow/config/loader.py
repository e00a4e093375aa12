"""Load and validate a routeflow config file, reporting every error with its path.

Each key is declared once, as a field of :mod:`routeflow.config.schema` with its type,
default and how it is read (:func:`~routeflow.config.schema.key`): :func:`read_key` reads
it so; what no declaration can say (lists of sections, rules across keys) is read here.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import string
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from routeflow.config.fields import Fields, Problems, check_unique, parse_dpid
from routeflow.config.frr_daemons import daemon_problems
from routeflow.config.safe_yaml import read_yaml, shown
from routeflow.config.schema import (
    DEFAULT_HTTP,
    FRR_DAEMONS,
    KEY,
    MAX_VMS_PER_DATAPATH,
    OFPP_MAX,
    PEER_ROLES,
    TRUNK_MAX_PORT,
    Config,
    Engine,
    HttpConfig,
    Limits,
    Read,
    RfvsConfig,
    StoreConfig,
    StoreKind,
    Template,
    Trunk,
    VirtualPort,
    VmConfig,
    VmInterface,
)
from routeflow.protocol.transport import ADDRESS_FORMS, parse_address


def load_config(path: str | Path) -> Config:
    """Read ``path``; raise :class:`~routeflow.errors.ConfigError` listing every problem."""
    document = read_yaml(path)
    return parse_config(document.value, str(path), document.problems)


def parse_config(document: object, source: str = "<config>", reading: Sequence[tuple[str, str]] = ()) -> Config:
    """Validate a parsed YAML document; raise ConfigError naming ``source`` and each field.

    ``reading``: the problems found reading the file (see :func:`~routeflow.config.safe_yaml.read_yaml`)."""
    problems = Problems(source, reading)
    top = Fields(document, "", problems)

    rfvs_fields = Fields(top.raw("rfvs", {}), "rfvs", problems)
    rfvs = RfvsConfig(**read_keys(rfvs_fields, RfvsConfig))
    rfvs_fields.finish()

    listen = []
    for i, text in enumerate(top.seq("listen", default_of(Config, "listen"))):
        try:
            if not isinstance(text, str):
                raise ValueError(text)
            address = parse_address(text)
        except ValueError:
            problems.add(f"listen[{i}]", f"{shown(text)} is not an address: expected {ADDRESS_FORMS}")
            continue
        if address.kind == "tcp" and not _loopback(address.host):
            # Peers prove who they are with a key, but nothing on the wire is encrypted.
            problems.add(f"listen[{i}]", f"{shown(text)} is not on this host: without TLS the server listens "
                                         "on loopback or a Unix socket only (use tls:HOST:PORT)")
            continue
        listen.append(text)
    manage_vms = read_key(top, Config, "manage_vms")
    discovery = Fields(top.raw("discovery", {}), "discovery", problems)
    discovery_interval = read_key(discovery, Config, "discovery_interval", key="interval")
    discovery.finish()
    limits = _parse_limits(Fields(top.raw("limits", {}), "limits", problems))
    http = _parse_http(Fields(top.raw("http", {}), "http", problems))
    store = _parse_store(Fields(top.raw("store", {}), "store", problems))

    vms = []
    for vm in top.items("vms", []):
        vms.append(_parse_vm(vm))
    templates = [t for t in (_parse_template(f) for f in top.items("templates", [])) if t is not None]
    if not vms and not templates and isinstance(top.data.get("vms", []), list) \
            and isinstance(top.data.get("templates", []), list):
        problems.add("vms", "must list at least one VM (or give templates for the switches that join)")
    check_unique(problems, "templates", "template name",
                 [(f"templates[{i}].name", t.name) for i, t in enumerate(templates)])
    top.finish()

    check_unique(problems, "vms", "VM name", [(f"vms[{i}].name", v.name) for i, v in enumerate(vms)])
    for i, parsed in enumerate(vms):
        if parsed.dpid is not None and parsed.dpid == rfvs.dpid:
            problems.add(f"vms[{i}].dpid", f"{parsed.dpid:#x} is the RFVS datapath id")
    _check_virtual_ports(problems, vms)
    trunks: dict[int, tuple[int, Trunk | None]] = {}  # one trunk per datapath, however many VMs share it
    for i, v in enumerate(vms):
        if v.dpid is not None:
            trunks.setdefault(v.dpid, (i, v.trunk))
            first, trunk = trunks[v.dpid]
            if trunk != v.trunk:
                problems.add(f"vms[{i}].trunk", f"differs from vms[{first}].trunk ({vms[first].name}): VMs "
                                                f"sharing datapath {v.dpid:#x} share its trunk, so they "
                                                "must give the same one (or none)")
    for dpid, sharing in Counter(v.dpid for v in vms if v.dpid is not None).items():
        if sharing > MAX_VMS_PER_DATAPATH:
            problems.add("vms", f"{sharing} VMs share datapath {dpid:#x}: at most {MAX_VMS_PER_DATAPATH} can "
                                "(each has a FIB table of its own there)")
    check_unique(problems, "vms", "trunk RFVS interface",
                 [(f"vms[{i}].trunk.rfvs_interface", t.rfvs_port_name(dpid))
                  for dpid, (i, t) in trunks.items() if t is not None])
    problems.raise_if_any()
    return Config(vms=tuple(vms), rfvs=rfvs, listen=tuple(listen), manage_vms=manage_vms,
                  discovery_interval=discovery_interval, limits=limits, http=http, store=store,
                  templates=tuple(templates), source=source)


def _check_virtual_ports(problems: Problems, vms: Sequence[VmConfig]) -> None:
    """The mapping table must be one: no virtual port claimed twice, and no switch port
    both untagged (one NIC owns all of it) and carrying VLANs (NICs own tags of it)."""
    claimed: dict[VirtualPort, str] = {}
    untagged: dict[tuple[int, int], str] = {}
    tagged: dict[tuple[int, int], str] = {}
    for i, vm in enumerate(vms):
        for j, nic in enumerate(vm.interfaces if vm.dpid is not None else ()):
            if nic.port is None:
                continue
            path, vport = f"vms[{i}].interfaces[{j}]", vm.virtual_port(nic)
            if vport in claimed:
                problems.add(f"{path}.port", f"virtual port {vport} is already {claimed[vport]}")
                continue
            claimed[vport] = f"{path} ({vm.name} {nic.name})"
            if nic.vlan is None:
                untagged.setdefault((vm.dpid, nic.port), claimed[vport])
            else:
                tagged.setdefault((vm.dpid, nic.port), f"{path}.vlan")
    for (dpid, port), path in tagged.items():
        if (dpid, port) in untagged:
            problems.add(path, f"datapath {dpid:#x} port {port} is also used untagged by "
                               f"{untagged[dpid, port]}: a port is one NIC's, untagged, or carries VLANs")


def _parse_http(f: Fields) -> HttpConfig:
    listen = f.text("listen", DEFAULT_HTTP)
    if listen == "off":
        listen = None
    elif listen is not None and http_address_problem(listen):
        f.error("listen", f"{shown(listen)} is not an HTTP address: {http_address_problem(listen)} "
                          "(expected HOST:PORT, or off)")
        listen = DEFAULT_HTTP
    token_file = f.text("token_file", None)
    if listen is not None and token_file is None and not _loopback(split_http_address(listen)[0]):
        f.error("listen", f"{shown(listen)} is not on this host: the HTTP API listens off loopback only "
                          "with a token_file (its bearer token)")
    f.finish()
    return HttpConfig(listen, token_file)


def split_http_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT`` too) as (host, port); ValueError if it is not one."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(text)
    return host, int(port)


def http_address_problem(text: str) -> str | None:
    """Why ``text`` is no ``HOST:PORT`` an HTTP server can listen on, or None."""
    try:
        host, _ = split_http_address(text)
    except ValueError:
        return "expected HOST:PORT with a port from 1 to 65535"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            return f"{shown(host)} is not an IP address"
    return None


def read_key(f: Fields, owner: type, name: str, key: str | None = None) -> Any:
    """Field ``name`` of dataclass ``owner`` read from ``f`` at ``key`` (its name unless given)
    as the field declares (:func:`~routeflow.config.schema.key`): with its accessor and bounds,
    and its default if it has one (else the key is required). Invalid, it is None, and
    the problem is recorded."""
    declared = _fields(owner)[name]
    read: Read = declared.metadata[KEY]
    accessor = getattr(f, read.accessor)
    if declared.default is dataclasses.MISSING:
        return accessor(key or name, **read.args)
    return accessor(key or name, default=declared.default, **read.args)


def read_keys(f: Fields, owner: type) -> dict[str, Any]:
    """Every field of ``owner`` declared a key, read from section ``f`` in declaration order."""
    return {name: read_key(f, owner, name) for name, declared in _fields(owner).items() if KEY in declared.metadata}


def default_of(owner: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``owner``."""
    declared = _fields(owner)[name]
    if declared.default_factory is not dataclasses.MISSING:
        return declared.default_factory()
    return declared.default


@functools.cache
def _fields(owner: type) -> dict[str, dataclasses.Field[Any]]:
    return {declared.name: declared for declared in dataclasses.fields(owner)}


def _parse_limits(f: Fields) -> Limits:
    """The ``limits`` section: every key optional, each within what keeps the server serving."""
    keys = read_keys(f, Limits)
    unread_mib = {role: size >> 20 for role, size in default_of(Limits, "unread").items()}
    unread = Fields(f.raw("unread_mib", {}), f"{f.path}.unread_mib", f.problems)
    limits = Limits(
        **keys,
        unread={role: (unread.integer(role, unread_mib[role], 1, 16384) or unread_mib[role]) << 20
                for role in PEER_ROLES},
    )
    unread.finish()
    f.finish()
    if limits.idle_timeout <= limits.keepalive:
        f.problems.add(f"{f.path}.idle_timeout", f"must be longer than keepalive ({limits.keepalive:g} s): "
                                                 "a peer is pinged before it can be found silent")
    return limits


def _parse_store(f: Fields) -> StoreConfig:
    """The ``store`` section: ``embedded`` (the default) takes no other key; ``etcd``
    needs its endpoints, and its pair's server addresses are addresses."""
    keys = read_keys(f, StoreConfig)
    endpoints = []
    for i, text in enumerate(f.seq("endpoints", ())):
        url = urllib.parse.urlsplit(text) if isinstance(text, str) else None
        try:
            port = url.port if url else None
        except ValueError:
            port = None
        if url is None or url.scheme not in ("http", "https") or not url.hostname or port is None \
                or url.path not in ("", "/"):
            f.problems.add(f"{f.path}.endpoints[{i}]", f"{shown(text)} is not an etcd client URL: expected "
                                                       "http://HOST:PORT or https://HOST:PORT")
            continue
        endpoints.append(text)
    servers = []
    for i, text in enumerate(f.seq("servers", ())):
        try:
            if not isinstance(text, str):
                raise ValueError(text)
            parse_address(text)
        except ValueError:
            f.problems.add(f"{f.path}.servers[{i}]", f"{shown(text)} is not an address: expected {ADDRESS_FORMS}")
            continue
        servers.append(text)
    check_unique(f.problems, f.path, "server address", [(f"{f.path}.servers[{i}]", a) for i, a in enumerate(servers)])
    f.finish()
    kind = keys["kind"]
    if kind == StoreKind.ETCD and not f.data.get("endpoints"):
        f.problems.add(f"{f.path}.endpoints", "is required with kind: etcd: the etcd cluster's client URLs")
    if kind != StoreKind.ETCD:
        for name in ("endpoints", "servers", "lease_ttl", "prefix"):
            if name in f.data:
                f.problems.add(f"{f.path}.{name}", f"is for kind: etcd only (kind is {(kind or StoreKind.EMBEDDED).value})")
    if servers and any(parse_address(a).kind == "tls" for a in servers) and \
            not all(parse_address(a).kind == "tls" for a in servers):
        f.problems.add(f"{f.path}.servers", "tls: and unix:/tcp: addresses cannot be mixed (peers hold one "
                                            "credential for all)")
    return StoreConfig(**{**keys, "kind": kind or StoreKind.EMBEDDED}, endpoints=tuple(endpoints),
                       servers=tuple(servers))


def parse_engine(f: Fields, engines: Sequence[Engine], default: Engine) -> tuple[Engine, tuple[str, ...], str]:
    """The ``engine`` (one of ``engines``, ``default`` if absent), ``daemons`` and
    ``engine_config`` keys of a VM or a lab router."""
    engine: Engine = f.choice("engine", engines, default) or default
    listed = f.seq("daemons", [])
    daemons = []
    if engine == Engine.BIRD and listed:
        f.error("daemons", "only the frr engine runs daemons: BIRD runs as one daemon, bird, which routeflow "
                           "starts itself; remove daemons")
    elif engine != Engine.FRR and listed:
        f.error("daemons", f"only the frr engine runs daemons (engine is {shown(engine.value)})")
    for i, d in enumerate(listed if engine == Engine.FRR else []):
        if d in tuple(Engine):
            f.problems.add(f"{f.path}.daemons[{i}]", f"{shown(d)} is an engine, not an FRR daemon: "
                                                     f"write engine: {d} (and no daemons)")
        elif d == "zebra":
            f.problems.add(f"{f.path}.daemons[{i}]", "zebra always runs: list only the protocol daemons")
        elif d not in FRR_DAEMONS:
            f.problems.add(f"{f.path}.daemons[{i}]", f"{shown(d)} is not one of {', '.join(FRR_DAEMONS)}")
        else:
            daemons.append(d)
    check_unique(f.problems, f.path, "daemon", [(f"{f.path}.daemons[{i}]", d) for i, d in enumerate(listed)
                                                if engine == Engine.FRR and isinstance(d, str)])
    engine_config = f.raw("engine_config", "")
    if not isinstance(engine_config, str):
        f.error("engine_config", "must be text (use a YAML block: engine_config: |)")
        engine_config = ""
    if engine == Engine.FRR:
        for key, reason in daemon_problems(daemons, engine_config):
            f.error(key, reason)
    return engine, tuple(daemons), engine_config


def _parse_vm(vm: Fields) -> VmConfig:
    name = read_key(vm, VmConfig, "name")
    dpid = read_key(vm, VmConfig, "dpid")
    engine, daemons, engine_config = parse_engine(vm, tuple(Engine), default_of(VmConfig, "engine"))
    loopback = read_key(vm, VmConfig, "loopback")
    interfaces = []
    for iface in vm.items("interfaces"):
        interfaces.append(VmInterface(**read_keys(iface, VmInterface)))
        iface.finish()
    if not interfaces and isinstance(vm.data.get("interfaces"), list):
        vm.error("interfaces", "must list at least one interface")
    check_unique(vm.problems, vm.path, "interface name",
                 [(f"{vm.path}.interfaces[{i}].name", x.name) for i, x in enumerate(interfaces)])
    for i, x in enumerate(interfaces):
        if x.name == "lo":
            vm.problems.add(f"{vm.path}.interfaces[{i}].name", "'lo' is the loopback; use the loopback key")
    trunk = _parse_trunk(vm, interfaces) if vm.has("trunk") else None
    routing_plane = read_key(vm, VmConfig, "routing_plane")
    vm.finish()
    return VmConfig(
        name=name,
        dpid=dpid,
        interfaces=tuple(interfaces),
        engine=engine,
        daemons=daemons,
        engine_config=engine_config,
        loopback=loopback,
        trunk=trunk,
        routing_plane=routing_plane,
    )


#: The placeholders a template's engine_config and nic_config may use.
TEMPLATE_PLACEHOLDERS = frozenset({"name", "dpid", "router_id", "host_subnet", "host_address", "interfaces"})
NIC_PLACEHOLDERS = frozenset({"ifname"})


def _parse_template(f: Fields) -> Template | None:
    keys = read_keys(f, Template)
    engine, daemons, engine_config = parse_engine(f, (Engine.FRR, Engine.BIRD), Engine.FRR)
    admit = _parse_admit(f)
    f.finish()
    for key, text, allowed in (("engine_config", engine_config, TEMPLATE_PLACEHOLDERS),
                               ("nic_config", keys["nic_config"] or "", NIC_PLACEHOLDERS)):
        problem = placeholder_problem(text, allowed)
        if problem:
            f.error(key, problem)
    if (keys["host_port"] is None) != (keys["host_subnets"] is None):
        f.error("host_subnets" if keys["host_port"] is not None else "host_port",
                "host_port and host_subnets go together: the port facing the hosts and the subnets they get")
    elif keys["host_subnets"] is not None and keys["host_prefixlen"] is not None \
            and ipaddress.IPv4Network(keys["host_subnets"]).prefixlen > keys["host_prefixlen"]:
        f.error("host_prefixlen", f"{keys['host_prefixlen']} is shorter than the pool {keys['host_subnets']}")
    if None in (keys["name"], keys["router_ids"], keys["host_prefixlen"], keys["grace"]) or isinstance(admit, bool):
        return None
    return Template(**keys, admit=admit, engine=engine, daemons=daemons, engine_config=engine_config)


def _parse_admit(f: Fields) -> tuple[int, ...] | None | bool:
    """``admit``: ``all`` (None) or a list of datapath ids; False if invalid."""
    value = f.raw("admit", "all")
    if value == "all":
        return None
    if not isinstance(value, list) or not value:
        f.error("admit", f"must be all or a list of datapath ids, not {shown(value)}")
        return False
    dpids = []
    for i, item in enumerate(f.seq("admit")):
        dpid = parse_dpid(item)
        if dpid is None:
            f.problems.add(f"{f.path}.admit[{i}]", f"{shown(item)} is not a datapath id (1 to 2^64-1, integer or hex)")
            return False
        dpids.append(dpid)
    return tuple(dpids)


def placeholder_problem(text: str, allowed: frozenset[str]) -> str | None:
    """Why ``text`` is no valid template of ``allowed`` placeholders (``$name``), or None."""
    template = string.Template(text)
    if not template.is_valid():
        return "has a $ that starts no placeholder (write $$ for a $)"
    unknown = sorted(set(template.get_identifiers()) - allowed)
    if unknown:
        return (f"${unknown[0]} is no placeholder: the placeholders are "
                + ", ".join(f"${name}" for name in sorted(allowed)))
    return None


def _parse_trunk(vm: Fields, interfaces: list[VmInterface]) -> Trunk | None:
    value = vm.raw("trunk")
    if not isinstance(value, dict):
        # One line for the likely mistake, a bare port number, rather than "not a mapping" and "port is required".
        port = value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= OFPP_MAX else 100
        vm.error("trunk", f"must be a mapping like {{port: {port}}}, not {shown(value)}")
        return None
    f = Fields(value, f"{vm.path}.trunk", vm.problems)
    keys = read_keys(f, Trunk)
    port = keys["port"]
    f.finish()
    for i, x in enumerate(interfaces):
        if x.port == port:
            vm.problems.add(f"{f.path}.port", f"port {port} is also interfaces[{i}] ({x.name})")
        if isinstance(x.port, int) and x.port > TRUNK_MAX_PORT and x.vlan is None:
            # The trunk tags frames with their switch port as VLAN id (12 bits); VLAN
            # sub-interfaces keep their own tag and take the controller's relay.
            vm.problems.add(f"{vm.path}.interfaces[{i}].port",
                            f"{x.port} does not fit a VLAN id: with a trunk, ports must be 1..{TRUNK_MAX_PORT}")
    return Trunk(**keys) if isinstance(port, int) else None


def _loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this host's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
