"""What the operator's commands print: status tables, verify reports, credentials, JSON.

The requests themselves are :class:`~routeflow.operator_client.OperatorClient`'s.
Each command returns its exit code: 0, or 1 when what it checks does not hold
(verify differences, a status problem); a server that cannot be asked raises
:class:`~routeflow.operator_client.ServerUnreachable`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from routeflow import operator_client
from routeflow.operator_client import OperatorClient, status_problems
from routeflow.protocol.auth import KEY_DIR


def print_json(document: Any) -> None:
    """``document`` on stdout as indented JSON, keys sorted."""
    json.dump(document, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def status(server: str, as_json: bool, flows: bool, routes: bool, keys: Path = KEY_DIR) -> int:
    """``routeflow status``: print the server's status (tables, or JSON with the
    ``problems`` found); 1 if there are any (:func:`status_problems`)."""
    doc = OperatorClient(server, keys).status(detail=as_json or flows or routes)
    problems = status_problems(doc)
    if as_json:
        print_json({**doc, "problems": problems})
        return 1 if problems else 0
    _print_status(doc, flows, routes)
    if problems:
        sys.stderr.write(f"routeflow: status: {'; '.join(problems)}\n")
    return 1 if problems else 0


def events(http: str, since: int, follow: bool, as_json: bool) -> int:
    """``routeflow events``: one line an event (a JSON object with ``--json``), as they come
    with ``follow``."""
    for event in operator_client.events(http, since, follow):
        if as_json:
            sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
        elif event["kind"] == "missed":
            sys.stdout.write(f"... {event['missed']} events no longer held by the server\n")
        else:
            sys.stdout.write(f"{event['seq']:>7} {event['time']} {event['kind']:<14} {event['text']}\n")
        sys.stdout.flush()
    return 0


def _print_status(doc: dict[str, Any], flows: bool, routes: bool) -> None:
    out = sys.stdout
    out.write(f"controller: {'connected' if doc['controller_connected'] else 'NOT connected'}")
    # Two controllers: which is active (OpenFlow master), in which election term, and which stands by.
    controllers = doc.get("controllers", [])
    if controllers:
        out.write(" (" + "; ".join(f"{c['name']} active in term {c['term']}" if c["active"] else
                                   f"{c['name']} standing by" for c in controllers) + ")")
    out.write("\n\n")
    serving = doc["server"]
    _table([("LISTENER", "PEERS PROVE", "ENCRYPTED")]
           + [(lst["address"], "certificate" if lst["encrypted"] else "key", "yes" if lst["encrypted"] else "no")
              for lst in serving["listeners"]])
    out.write(f"peers refused for failed authentication: {serving['auth_failures']}\n")
    http = serving.get("http")
    out.write(f"HTTP: REST API http://{http}/api/v1/, metrics http://{http}/metrics\n" if http else "HTTP: off\n")
    if serving.get("store") == "etcd":
        out.write("NIB in etcd: this server is the active one of a server pair\n")
    out.write("\n")
    rows: list[tuple[str, ...]] = [("DATAPATH", "MIRRORED BY", "STATE", "PORTS UP", "FLOWS", "GROUPS", "PACKET-IN", "UNRESOLVED",
                                     "REFUSED")]
    for dp in doc["datapaths"]:
        ports = dp["ports"]
        rows.append((
            dp["dpid"], dp["mirrored_by"], "up" if dp["connected"] else "down",
            f"{sum(p['up'] for p in ports)}/{len(ports)}", str(dp["flow_count"]), str(dp["group_count"]),
            "-" if dp["packet_in"] is None else str(sum(dp["packet_in"].values())),
            str(len(dp["unresolved_next_hops"])), _dash(dp["refused_connections"]),
        ))
    _table(rows)
    for dp in doc["datapaths"]:
        if dp["compile_error"]:
            out.write(f"datapath {dp['dpid']}: flows not updated: {dp['compile_error']}\n")
        for missing in dp.get("missing_ports", []):
            out.write(f"datapath {dp['dpid']}: no such port for {missing}\n")
        admission = dp.get("admission")
        if admission and not admission["admitted"]:
            out.write(f"datapath {dp['dpid']}: rejected: {admission['reason']}\n")
        elif admission and admission["leaving"]:
            out.write(f"datapath {dp['dpid']}: gone; VM {admission['vm']} stays for its grace period\n")
    out.write("\n")
    # The mapping table: each VM NIC and the virtual port (datapath, port, VLAN) it mirrors.
    rows = [("VM", "DATAPATH", "CLIENT", "INTERFACE", "PORT", "VLAN", "RFVS PORT", "STATE", "VIRTUAL LINK",
             "ADDRESSES")]
    for vm in doc["vms"]:
        client = ("synced" if vm["synced"] else "connected") if vm["client_connected"] else "down"
        for i, iface in enumerate(vm["interfaces"]):
            rows.append((
                vm["name"] if i == 0 else "", vm["dpid"] if i == 0 else "", client if i == 0 else "",
                iface["name"], str(iface["port"]), _dash(iface.get("vlan")), _dash(iface["rfvs_port"]),
                "-" if iface["up"] is None else "up" if iface["up"] else "down",
                _dash(iface["virtual_link"]), " ".join(iface["addresses"]),
            ))
    _table(rows)
    out.write("\n")
    rows = [("VM", "ROUTES", "NEIGHBOURS", "FIB AUDITS", "REPAIRED", "LAST REPAIR")]
    rows += [(vm["name"], str(vm["route_count"]), str(vm["neighbour_count"]), str(vm["fib_audits"]),
              str(vm["fib_repaired"]), vm["fib_last_repair"] or "-") for vm in doc["vms"]]
    _table(rows)
    if routes:
        for vm in doc["vms"]:
            out.write(f"\nroutes of {vm['name']}:\n")
            rows = [("PREFIX", "TYPE", "PROTO", "NEXT HOPS")]
            for r in vm["routes"]:
                hops = ", ".join(f"{h['gateway'] or 'connected'} dev {h['ifname']}" for h in r["nexthops"])
                rows.append((r["prefix"], r["type"], r["proto"], hops or "-"))
            _table(rows)
            for n in vm["neighbours"]:
                out.write(f"  neighbour {n['ip']} lladdr {n['mac']} dev {n['ifname']}\n")
    if flows:
        for dp in doc["datapaths"]:
            out.write(f"\nflows of {dp['dpid']} ({dp['mirrored_by']}):\n")
            for line in dp["groups"] + dp["flows"]:
                out.write(f"  {line}\n")
            for u in dp["unresolved_next_hops"]:
                retry = f"next attempt in {u['next_attempt_s']} s" if u["next_attempt_s"] is not None else "VM away"
                out.write(f"  unresolved ({u['vm']}): {u['prefix']} via {u['gateway']} dev {u['ifname']} "
                          f"({u['resolve_attempts']} resolution attempts, {retry})\n")


def verify(server: str, as_json: bool, wait: float, keys: Path = KEY_DIR) -> int:
    """``routeflow verify``: print the differences (retrying for ``wait`` seconds until
    there are none); 1 if there are any."""
    reply = OperatorClient(server, keys).verify(wait)
    if as_json:
        print_json({"ok": reply.ok, "differences": list(reply.differences), "checked": reply.checked})
    else:
        for line in reply.differences:
            sys.stdout.write(line + "\n")
        c = reply.checked
        verdict = "clean" if reply.ok else f"{len(reply.differences)} differences"
        sys.stdout.write(f"verify: {verdict} ({c.get('datapaths', 0)} datapaths, {c.get('flows', 0)} flows, "
                         f"{c.get('routes', 0)} routes checked)\n")
    return 0 if reply.ok else 1


def reload(server: str, as_json: bool, keys: Path = KEY_DIR) -> int:
    """``routeflow reload``: what the server changed and the FlowMods it took, or why it
    refused the file (nothing changed then); 1 if it refused."""
    reply = OperatorClient(server, keys).reload()
    if as_json:
        print_json({"ok": reply.ok, "problems": list(reply.problems), "changes": list(reply.changes),
                    "flow_mods": reply.flow_mods, "table_size": reply.table_size})
        return 0 if reply.ok else 1
    for line in reply.problems:
        sys.stderr.write(line + "\n")
    if not reply.ok:
        sys.stderr.write(f"routeflow: reload: refused ({len(reply.problems)} problems); nothing changed\n")
        return 1
    for line in reply.changes or ["nothing changed: the file says what runs"]:
        sys.stdout.write(line + "\n")
    if reply.flow_mods:
        _table([("DATAPATH", "FLOWMODS"), *((dp, str(n)) for dp, n in sorted(reply.flow_mods.items()))])
    sys.stdout.write(f"reload: {sum(reply.flow_mods.values())} FlowMods sent, to datapaths holding "
                     f"{reply.table_size} flows and groups\n")
    return 0


def credentials(keys: Path, made: Sequence[str], as_json: bool) -> int:
    """``routeflow pki``: list every TLS credential in ``keys`` with its expiry, marking
    those of the identities ``made`` just now; 1 if there is none."""
    from routeflow.protocol import pki

    base = pki.tls_dir(keys)
    rows: list[dict[str, Any]] = []
    for cert in sorted(base.glob("*.crt")) if base.is_dir() else []:
        ident = cert.stem
        rows.append({"identity": ident, "certificate": str(cert), "expires": pki.expiry(cert).strftime("%Y-%m-%d"),
                     "made_now": ident in made})
    if as_json:
        print_json({"directory": str(base), "credentials": rows})
    elif rows:
        _table([("IDENTITY", "CERTIFICATE", "EXPIRES", "")]
               + [(str(r["identity"]), str(r["certificate"]), str(r["expires"]), "made now" if r["made_now"] else "")
                  for r in rows])
    else:
        sys.stdout.write(f"no credentials in {base}; make them with: routeflow pki init CONFIG\n")
    return 0 if rows else 1  # none: the check that there are some failed, with or without --json


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
