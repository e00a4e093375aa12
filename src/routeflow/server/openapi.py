"""The schemas of the REST API's OpenAPI document (:func:`routeflow.server.api.openapi_document`).

They describe the entries :mod:`routeflow.server.status` builds; the unit tests validate
every endpoint's answer against its schema, so the document cannot drift from the code.
"""

from __future__ import annotations

import re
from typing import Any


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": sorted(required), "properties": {**required, **(optional or {})}}


def _array(item: Any) -> dict[str, Any]:
    return {"type": "array", "items": item}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
NULL_STR: dict[str, Any] = {"type": ["string", "null"]}
NULL_INT: dict[str, Any] = {"type": ["integer", "null"]}
DPID: dict[str, Any] = {"type": "string", "pattern": "^0x[0-9a-f]+$", "description": "datapath id, hex"}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STR}),
    "Port": _obj({"port": INT, "name": STR, "mac": STR, "up": BOOL}),
    "Datapath": _obj({
        "dpid": DPID, "mirrored_by": STR, "connected": BOOL, "ports": _array(_ref("Port")),
        "flow_count": INT, "group_count": INT, "flow_mods_sent": INT, "compile_error": STR,
        "packet_in": {"type": ["object", "null"], "additionalProperties": INT},
        "refused_connections": NULL_INT,
        "unresolved_next_hops": _array({"type": "object"}),
        "admission": {"oneOf": [{"type": "null"}, _ref("Admission")]}, "missing_ports": _array(STR),
    }, {"flows": _array(STR), "groups": _array(STR)}),
    "Admission": _obj({"admitted": BOOL, "vm": NULL_STR, "template": NULL_STR, "reason": NULL_STR, "leaving": BOOL}),
    "Datapaths": _obj({"datapaths": _array(_ref("Datapath"))}),
    "Flow": _obj({"table": INT, "priority": INT, "match": {"type": "object"}, "actions": _array(STR),
                  "goto": NULL_INT, "text": STR}),
    "Flows": _obj({"dpid": DPID, "flow_count": INT, "flows": _array(_ref("Flow"))}),
    "Group": _obj({"group_id": INT, "type": STR, "buckets": _array(_array(STR)), "text": STR}),
    "Groups": _obj({"dpid": DPID, "groups": _array(_ref("Group"))}),
    "Link": _obj({"from": STR, "to": STR}),
    "Links": _obj({"links": _array(_ref("Link"))}),
    "Interface": _obj({"name": STR, "dpid": DPID, "port": INT, "vlan": NULL_INT, "rfvs_port": NULL_INT, "mac": NULL_STR,
                       "up": {"type": ["boolean", "null"]}, "addresses": _array(STR), "virtual_link": NULL_STR}),
    "Vm": _obj({"name": STR, "dpid": DPID, "engine": STR, "client_connected": BOOL, "synced": BOOL,
                "interfaces": _array(_ref("Interface")), "route_count": INT, "neighbour_count": INT,
                "fib_audits": INT, "fib_repaired": INT, "fib_last_repair": STR},
               {"routes": _array(_ref("Route")), "neighbours": _array(_ref("Neighbour"))}),
    "Vms": _obj({"vms": _array(_ref("Vm"))}),
    "NextHop": _obj({"ifname": STR, "gateway": NULL_STR}),
    "Route": _obj({"prefix": STR, "type": STR, "proto": STR, "nexthops": _array(_ref("NextHop"))}),
    "Routes": _obj({"vm": STR, "route_count": INT, "routes": _array(_ref("Route"))}),
    "Neighbour": _obj({"ifname": STR, "ip": STR, "mac": STR}),
    "Neighbours": _obj({"vm": STR, "neighbour_count": INT, "neighbours": _array(_ref("Neighbour"))}),
    "Mapping": {"allOf": [_ref("Interface"), _obj({"vm": STR})]},
    "Mappings": _obj({"mappings": _array(_ref("Mapping"))}),
    "Verify": _obj({"ok": BOOL, "differences": _array(STR), "checked": {"type": "object",
                                                                       "additionalProperties": INT}}),
    "Reload": _obj({"ok": BOOL, "problems": _array(STR), "changes": _array(STR),
                    "flow_mods": {"type": "object", "additionalProperties": INT}, "table_size": INT}),
    "Event": _obj({"seq": INT, "time": STR, "kind": STR, "text": STR, "dpid": NULL_STR, "vm": NULL_STR}),
    "Events": _obj({"events": _array(_ref("Event")), "missed": INT, "last": INT}),
    "Status": _obj({"controller_connected": BOOL, "datapaths": _array(_ref("Datapath")),
                    "vms": _array(_ref("Vm")), "links": _array(_ref("Link")), "server": {"type": "object"},
                    "admissions": _obj({"admitted": INT, "rejected": INT})}),
}

_PAGED = [
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0},
     "description": "entries to skip (after the filter)"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "most entries"},
    {"name": "q", "in": "query", "schema": STR, "description": "only entries whose text contains this"},
]
_EVENTS = [
    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0},
     "description": "events after this number"},
    {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 60},
     "description": "seconds to wait for a new event if there is none yet"},
]


def parameters(path: str, paged: bool, events: bool) -> list[dict[str, Any]]:
    """The parameters of an endpoint: its path's ``{name}`` parts, then its query."""
    found = [{"name": name, "in": "path", "required": True, "schema": STR}
             for name in re.findall(r"\{(\w+)\}", path)]
    return found + (_PAGED if paged else []) + (_EVENTS if events else [])
