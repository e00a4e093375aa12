"""The ``routeflow`` command: run each component, drive the lab, ask the server.

Exit codes, for every command: 0 success; 1 a check or an operation failed
(verify found differences, status found a problem, a lab or VM operation or a
demo step failed, a port is taken); 2 bad usage or an invalid config or
topology (or key); 3 the server cannot be reached. A failure is one line on
stderr (``-vv`` logs its traceback); with ``--json`` it is
``{"error", "exit_code"}`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from routeflow.cli import render
from routeflow.client import add_audit_option, add_keys_option
from routeflow.config.schema import DEFAULT_HTTP
from routeflow.errors import ConfigError
from routeflow.lab.topology import LINK_STATES, SWITCH_STATES
from routeflow.operator_client import ServerUnreachable
from routeflow.protocol.auth import AuthError
from routeflow.protocol.transport import ADDRESS_FORMS, DEFAULT_SERVER, parse_address, parse_addresses
from routeflow.vnet import VnetError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

log = logging.getLogger("routeflow.cli")


class JsonLogFormatter(logging.Formatter):
    """``--log-json``: each log record one JSON object on one line, for log shippers:
    ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message`` and, if any, ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
                    .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(verbose: int, as_json: bool) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)  # stdout is the command's output
    handler.setFormatter(JsonLogFormatter() if as_json else
                         logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # pyroute2's debug output would drown ours.
    logging.getLogger("pyroute2").setLevel(logging.WARNING)


class _UsageError(Exception):
    """A bad command line, found by ``parser``; :func:`main` says it as text or JSON."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser, self.message = parser, message


class _Parser(argparse.ArgumentParser):
    """An argument parser (its subcommands' too) whose usage errors main() reports."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def _parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed; a usage error exits 2, said as argparse does, or as JSON on stdout
    if the command asked for ``--json`` (among its options, not after ``--``)."""
    try:
        return build_parser().parse_args(argv)
    except _UsageError as exc:
        if "--json" not in (argv[:argv.index("--")] if "--" in argv else argv):
            argparse.ArgumentParser.error(exc.parser, exc.message)
        render.print_json({"error": f"{exc.parser.prog}: {exc.message}", "exit_code": EXIT_USAGE})
        sys.exit(EXIT_USAGE)


def _server_address(text: str) -> str:
    """argparse type of ``--server``: a bad address is a usage error (exit 2), not a traceback."""
    try:
        parse_addresses(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _listen_address(text: str) -> str:
    """argparse type of the server's ``--listen``: one address."""
    if "," in text:  # a comma separates a pair's addresses (--server)
        raise argparse.ArgumentTypeError(f"{text!r}: one address per --listen (repeat it for several)")
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _port(text: str) -> int:
    """argparse type of a TCP port number."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port number, 1 to 65535")
    return int(text)


def _instance(text: str) -> str:
    """argparse type of ``--instance``: a name of 1 to 64 printable ASCII characters (the server logs it)."""
    if not (1 <= len(text) <= 64 and text.isascii() and text.isprintable() and not text.isspace()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a name of 1 to 64 printable ASCII characters")
    return text


def _listen_host(text: str) -> str:
    """argparse type of ``--listen-host``: an address (or name) of this host."""
    try:
        socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not an IP address or a host name "
                                         f"({getattr(exc, 'strerror', None) or exc})") from None
    return text


def _add_server_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=DEFAULT_SERVER, type=_server_address,
                        help=f"RF-Server address, {ADDRESS_FORMS} (default {DEFAULT_SERVER}); a server pair's "
                             "addresses separated by commas, tried in turn")


def _datapath_list(text: str) -> tuple[int, ...]:
    """argparse type of ``--datapaths``: datapath ids as OpenFlow tools print them, comma-separated."""
    from routeflow.config.fields import parse_dpid

    dpids = tuple(parse_dpid(item.strip()) for item in text.split(","))
    if not dpids or None in dpids:
        raise argparse.ArgumentTypeError(f"{text!r}: expected datapath ids like 0000000000000001,0x2")
    return dpids  # type: ignore[return-value]


def _example(text: str) -> str:
    """argparse type of the demo's example: checked before anything is touched."""
    from routeflow.harness import EXAMPLES

    if Path(text).is_dir() or (EXAMPLES / text / "routeflow.yaml").is_file():
        return text
    known = sorted(p.name for p in EXAMPLES.iterdir() if (p / "routeflow.yaml").is_file())
    raise argparse.ArgumentTypeError(f"no example {text!r}; the examples are: {', '.join(known)}")


def _version() -> str:
    try:
        return importlib.metadata.version("routeflow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``routeflow`` command line."""
    parser = _Parser(prog="routeflow", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging, on stderr (-vv for debug)")
    parser.add_argument("--log-json", action="store_true",
                        help="log lines as JSON objects (time, level, logger, message, exception)")
    parser.add_argument("--version", action="version", version=f"routeflow {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("server", help="run the RF-Server (and the VMs of its config)")
    p.add_argument("config", help="routeflow YAML config")
    add_keys_option(p)
    p.add_argument("--no-vms", action="store_true", help="do not create the VMs; they are run elsewhere")
    p.add_argument("--listen", action="append", type=_listen_address, metavar="ADDRESS",
                   help="listen here instead of the config's listen addresses (repeat for several): "
                        "each server of a pair on its own, one of store.servers")
    p.add_argument("--id", help="this server's id in its pair (default HOST-PID)")

    p = sub.add_parser("controller", help="run the RF-Controller (os-ken, OpenFlow 1.3)")
    _add_server_option(p)
    p.add_argument("--listen-host", type=_listen_host, default="127.0.0.1", help="OpenFlow listen address")
    p.add_argument("--listen-port", type=_port, default=6653, help="OpenFlow listen port")
    add_keys_option(p)
    p.add_argument("--datapaths", type=_datapath_list, default=(), metavar="DPID,...",
                   help="the only datapath ids that may connect (default: any)")
    p.add_argument("--tls", action="store_true",
                   help="OpenFlow over TLS only: switches connect to ssl:HOST:PORT with a certificate of "
                        "the CA in --keys DIR/tls (routeflow pki init)")
    p.add_argument("--instance", type=_instance, default=None, metavar="NAME",
                   help="this controller's name to the server, which elects one of two controllers active "
                        "and keeps the other standing by (default: HOST:LISTEN-PORT)")

    p = sub.add_parser("client", help="run an RF-Client inside a VM")
    p.add_argument("--vm", required=True, help="the VM's name in the server's config")
    _add_server_option(p)
    add_audit_option(p)
    add_keys_option(p)

    pki = sub.add_parser("pki", help="TLS credentials for peers on other hosts (tls: listeners)")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True)
    p = pki_sub.add_parser("init", help="make the CA and a credential for the server, the controller, "
                                        "operators and every VM of a config (what is missing only)")
    p.add_argument("config", help="routeflow YAML config")
    add_keys_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = pki_sub.add_parser("list", help="every credential and when it expires")
    add_keys_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("check", help="validate a routeflow config or lab topology file, syntax and meaning")
    p.add_argument("file")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--topology", action="store_true", help="the file is a lab topology")
    kind.add_argument("--lab", metavar="TOPOLOGY", help="also check the lab topology the config runs on, "
                                                        "and that the two agree")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    lab = sub.add_parser("lab", help="the emulated physical network")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    p = lab_sub.add_parser("up", help="create the switches, hosts and links of a topology file")
    p.add_argument("topology")
    p.add_argument("--state", default=None, help="where to record what was created")
    p.add_argument("--json", action="store_true", help="machine-readable output: what was created")
    p = lab_sub.add_parser("down", help="remove everything the last `lab up` created")
    p.add_argument("--state", default=None)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = lab_sub.add_parser("generate", help="write a partial-mesh scenario of any size: DIR/topology.yaml and "
                                            "DIR/routeflow.yaml (FRR OSPF on every VM), for `routeflow demo DIR`")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--switches", type=int, required=True, help="how many switches (each with a host and a VM)")
    p.add_argument("--degree", type=float, default=3.0, help="average links per switch (a ring is 2; default 3)")
    p.add_argument("--seed", type=int, default=1, help="the chords' random seed (same seed, same files)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = lab_sub.add_parser("link", help="cut, silence or restore a link (both ends)")
    p.add_argument("link", help="link name or endpoint, e.g. A-B or sA:3")
    p.add_argument("state_word", choices=LINK_STATES,
                   help="down: carrier lost; silent: carrier and port state up, every frame dropped "
                        "(switch ports at both ends); up: restored")
    p.add_argument("--state", default=None)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = lab_sub.add_parser("switch", help="connect a switch to its controllers (a switch appearing) or "
                                          "disconnect it (disappearing)")
    p.add_argument("switch", help="switch name, e.g. sD")
    p.add_argument("switch_state", choices=SWITCH_STATES)
    p.add_argument("--state", default=None)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("status", help="datapaths, VMs, port mappings, routes and flows")
    _add_server_option(p)
    add_keys_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--flows", action="store_true", help="list every flow and group")
    p.add_argument("--routes", action="store_true", help="list every route and neighbour")

    p = sub.add_parser("verify", help="check every VM's FIB, translated, equals its datapath's flows")
    _add_server_option(p)
    add_keys_option(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="retry until clean or this many seconds have passed")

    p = sub.add_parser("reload", help="have the server read its config again and apply only what changed")
    _add_server_option(p)
    add_keys_option(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("events", help="what the server saw happen: switches, ports, links, peers, routes")
    p.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                   help=f"the server's HTTP surface (its http.listen; default {DEFAULT_HTTP})")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing events as they happen")
    p.add_argument("--since", type=int, default=0, metavar="N", help="only events after number N")
    p.add_argument("--json", action="store_true", help="one JSON object a line")

    vm = sub.add_parser("vm", help="a VM of the running server")
    vm.add_argument("name", metavar="NAME", help="the VM's name in the config")
    vm_sub = vm.add_subparsers(dest="vm_command", required=True)
    p = vm_sub.add_parser("shell", help="its routing shell (FRR vtysh, BIRD birdc) in its namespace, or "
                                        "one command in it: routeflow vm rA shell -- show ip route")
    p.add_argument("--config", help="the server's config, which says the VM's engine "
                                    "(default: ask the running server)")
    _add_server_option(p)
    add_keys_option(p)
    p.add_argument("words", nargs="*", metavar="COMMAND", help="after --: the command to run; its exit "
                                                                "code is routeflow's")

    etcd = sub.add_parser("etcd", help="a local etcd on loopback for a server pair's store (store: {kind: etcd})")
    etcd_sub = etcd.add_subparsers(dest="etcd_command", required=True)
    p = etcd_sub.add_parser("start", help="start etcd in the background and print its endpoints")
    p.add_argument("--members", type=int, choices=(1, 3, 5), default=1, help="cluster members (default 1)")
    p.add_argument("--port", type=_port, default=23790, help="first member's client port (default 23790; "
                                                            "member i: PORT + 2i, its peer port the next)")
    p.add_argument("--dir", type=Path, default=None, help="data and logs (default /run/routeflow/etcd)")
    p = etcd_sub.add_parser("stop", help="stop the etcd `etcd start` started and remove its data")
    p.add_argument("--dir", type=Path, default=None, help="as given to start")

    p = sub.add_parser("demo", help="bring up an example network end to end, test it, tear it down")
    p.add_argument("example", nargs="?", default="rftest2", type=_example,
                   help="example name or directory (default rftest2)")
    p.add_argument("--keep", action="store_true", help="leave it running to explore")
    p.add_argument("--stop", action="store_true", help="stop what a previous --keep left running")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``routeflow`` command line ``argv`` (default: this process's); its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    _setup_logging(args.verbose, args.log_json)
    try:
        return _run(args)
    except BrokenPipeError:  # `routeflow status | head -1`: the reader had enough
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the exit flush is quiet too
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_FAILED
    except (ConfigError, AuthError, VnetError, OSError) as exc:
        code = _exit_code(exc)
        log.debug("the failure in full", exc_info=True)  # -vv: the traceback behind the one line
        _report_failure(exc, code, getattr(args, "json", False))
        return code


def _exit_code(exc: Exception) -> int:
    """The exit code of a command that failed with ``exc``."""
    if isinstance(exc, ServerUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, (ConfigError, AuthError)):  # a file or key to fix before trying again
        return EXIT_USAGE
    return EXIT_FAILED  # an operation failed: on the lab, a VM, a port, a file


def _report_failure(exc: Exception, code: int, as_json: bool) -> None:
    """One line on stderr (a config error: one per problem, each naming its file), or
    with ``--json`` ``{"error", "exit_code"}`` on stdout (a config error adds ``errors``,
    as ``routeflow check --json`` lists them)."""
    if not as_json:
        print(exc if isinstance(exc, ConfigError) else f"routeflow: {exc}", file=sys.stderr)
        return
    document: dict[str, Any] = {"error": str(exc), "exit_code": code}
    if isinstance(exc, ConfigError):
        from routeflow.check.semantics import Finding

        document["errors"] = [Finding(exc.file, field, reason).as_json() for field, reason in exc.problems]
    render.print_json(document)


def _run(args: argparse.Namespace) -> int:
    if args.command == "server":
        from routeflow.config.loader import load_config
        from routeflow.server.main import serve

        config = load_config(args.config)
        if args.no_vms:
            config = dataclasses.replace(config, manage_vms=False)
        if args.listen:
            config = dataclasses.replace(config, listen=tuple(args.listen))
        return asyncio.run(serve(config, keys=args.keys, server_id=args.id))
    if args.command == "controller":
        from routeflow.controller.main import run as run_controller

        run_controller(args.server, of_port=args.listen_port, of_host=args.listen_host, name=args.instance or "",
                       keys=args.keys, datapaths=args.datapaths, tls=args.tls)
        return EXIT_OK
    if args.command == "client":
        from routeflow.client.agent import run as run_client

        asyncio.run(run_client(args.vm, args.server, args.audit_interval or None, args.keys))
        return EXIT_OK
    if args.command == "check":
        return _check(args)
    if args.command == "etcd":
        from routeflow.server import etcd_local

        directory = args.dir or etcd_local.DEFAULT_DIR
        if args.etcd_command == "stop":
            return EXIT_OK if etcd_local.stop_recorded(directory) else EXIT_FAILED
        try:
            cluster = etcd_local.LocalEtcd(directory, args.members, args.port)
            cluster.start(detach=True)
        except RuntimeError as exc:
            etcd_local.stop_recorded(directory)
            raise OSError(str(exc)) from None
        print(",".join(cluster.endpoints))
        return EXIT_OK
    if args.command == "pki":
        made: list[str] = []
        if args.pki_command == "init":  # make the CA and what the config's peers need, if missing
            from routeflow.config.loader import load_config
            from routeflow.protocol import auth, pki

            config = load_config(args.config)
            made = pki.ensure(args.keys, [pki.SERVER, "controller", "operator", pki.SWITCH,
                                          *(auth.identity("client", vm.name) for vm in config.vms),
                                          *(pki.switch_identity(vm.dpid) for vm in config.vms)])
        return render.credentials(args.keys, made, args.json)
    if args.command == "lab":
        return _lab(args)
    if args.command == "status":
        return render.status(args.server, as_json=args.json, flows=args.flows, routes=args.routes, keys=args.keys)
    if args.command == "verify":
        return render.verify(args.server, as_json=args.json, wait=args.wait, keys=args.keys)
    if args.command == "reload":
        return render.reload(args.server, as_json=args.json, keys=args.keys)
    if args.command == "events":
        return render.events(args.http, args.since, args.follow, args.json)
    if args.command == "vm":
        from routeflow import vmshell

        engine = vmshell.engine_of(args.name, args.config, args.server, args.keys)
        argv = vmshell.shell_argv(args.name, engine, args.words)
        sys.stdout.flush()
        vmshell.open_shell(argv)
    if args.command == "demo":
        if args.stop:
            from routeflow.harness import stop_kept

            print("stopped" if stop_kept() else "nothing was left running")
            return EXIT_OK
        from routeflow.demo import run_demo

        return run_demo(args.example, keep=args.keep)
    raise AssertionError(args.command)


def _check(args: argparse.Namespace) -> int:
    from routeflow.check.report import check

    report = check(args.file, lab=args.lab, as_topology=args.topology)
    if args.json:
        render.print_json(report.as_json())
    else:
        for error in report.found.errors:
            print(error, file=sys.stderr)
        for warning in report.found.warnings:
            print(f"{warning.file}: {warning.field}: warning: {warning.reason}", file=sys.stderr)
        if report.valid:
            print("\n".join(report.summary()))
    return EXIT_OK if report.valid else EXIT_USAGE


def _lab(args: argparse.Namespace) -> int:
    from routeflow.lab import network

    state = Path(getattr(args, "state", None) or network.DEFAULT_STATE)
    document: dict[str, Any] = {} if args.lab_command == "generate" else {"state_file": str(state)}
    if args.lab_command == "up":
        topology = network.lab_up(args.topology, state_path=state)
        # What was made, by name: the topology file has the rest (router configs may hold secrets).
        document.update(
            switches=[{"name": s.name, "dpid": f"{s.dpid:#x}"} for s in topology.switches],
            hosts=[{"name": h.name, "addresses": [str(a) for a in h.addresses]} for h in topology.hosts],
            routers=[{"name": r.name, "engine": r.engine} for r in topology.routers],
            links=[{"name": link.name, "ends": [str(end) for end in link.ends]} for link in topology.links])
        text = f"lab {args.topology} is up"
    elif args.lab_command == "generate":
        from routeflow.lab.generate import write

        try:
            mesh = write(Path(args.directory), args.switches, args.degree, args.seed)
        except ValueError as exc:
            raise ConfigError("routeflow lab generate", [("arguments", str(exc))]) from None
        document = {"directory": args.directory, "switches": mesh.switches, "links": len(mesh.links),
                    "files": [str(Path(args.directory, f)) for f in ("topology.yaml", "routeflow.yaml")]}
        text = (f"{args.directory}: {mesh.switches} switches, {len(mesh.links)} links between them; "
                f"run it with: routeflow demo {args.directory}")
    elif args.lab_command == "link":
        link = network.set_link(args.link, args.state_word, state_path=state)
        document.update(link=link.name, ends=[str(end) for end in link.ends], state=args.state_word)
        text = f"link {link.name} is {args.state_word}"
    elif args.lab_command == "switch":
        switch = network.set_switch(args.switch, args.switch_state, state_path=state)
        document.update(switch=switch.name, dpid=f"{switch.dpid:#x}", state=args.switch_state)
        text = f"switch {switch.name} ({switch.dpid:#x}) {'joined' if args.switch_state == 'join' else 'left'}"
    else:
        document["removed"] = network.lab_down(state_path=state)
        text = "lab is down" if document["removed"] else "no lab was up"
    if args.json:
        render.print_json(document)
    else:
        print(text)
    return EXIT_OK

