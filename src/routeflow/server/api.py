"""The operator's HTTP surface of the RF-Server: a read-only REST API, its OpenAPI
document, the Prometheus metrics and the live web view (aiohttp, in the server's own
event loop).

Every resource is read from the NIB the moment it is asked for, through the same
functions as ``routeflow status`` (:mod:`routeflow.server.status`), so the API, the CLI
and the web view cannot disagree. Large collections (a VM's routes, a datapath's flows:
a million of each on a full Internet table) are streamed in chunks of :data:`CHUNK`
entries, yielding to the event loop between chunks, so no request holds the server
for long; ``offset``/``limit`` page through them and ``q`` filters them by text.

Requests from loopback need no credential to read. With ``http.token_file`` configured,
a request from anywhere else must carry ``Authorization: Bearer TOKEN``; the loader refuses
a listener off loopback without one. The one request that changes state, ``POST /reload``
(:meth:`~routeflow.server.operations.Operations.reload`), exists only with a token, and
needs it from loopback too.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from routeflow.config.loader import split_http_address
from routeflow.config.schema import HttpConfig
from routeflow.errors import ConfigError
from routeflow.model import Flow, format_action, format_flow, format_group
from routeflow.server.metrics import CONTENT_TYPE
from routeflow.server.openapi import SCHEMAS, parameters
from routeflow.server.status import (
    datapath_entry,
    datapath_ids,
    interface_entries,
    link_entries,
    vm_entry,
)

if TYPE_CHECKING:
    from routeflow.server.service import RFServer

log = logging.getLogger("routeflow.server.http")

PREFIX = "/api/v1"
#: Entries of a streamed collection encoded between two yields to the event loop: about
#: 0.3 ms of the server's time for routes, as much for flows (which become dicts first).
CHUNK = 1000
FLOW_CHUNK = 100
#: References copied between two yields when a collection is snapshot (about 5 ms).
COPY_CHUNK = 100_000
SNAPSHOT_ATTEMPTS = 3
#: Longest ``routeflow events --follow`` long poll.
MAX_WAIT = 60.0
#: Seconds between keepalive comments on an idle event stream.
KEEPALIVE = 15.0
#: The web view's files: a page, a script and a style sheet, served as they are.
WEB = Path(__file__).with_name("web")
_SERVER: web.AppKey[RFServer] = web.AppKey("server", object)  # type: ignore[arg-type]
#: Whether ``POST /reload`` is served (a token is configured).
_RELOAD: web.AppKey[bool] = web.AppKey("reload", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Endpoint:
    """One GET endpoint: its path (``{name}`` parameters), handler, and what the OpenAPI
    document says of it."""

    path: str
    handler: Handler
    summary: str
    #: The response's schema in the OpenAPI document's components.
    schema: str
    #: A streamed collection: takes ``offset``, ``limit`` and ``q``.
    paged: bool = False


def _server(request: web.Request) -> RFServer:
    return request.app[_SERVER]


def _error(status: int, reason: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 404: web.HTTPNotFound}[status]
    return cls(text=msgspec.json.encode({"error": reason}).decode(), content_type="application/json")


def _json(document: Any) -> web.Response:
    return web.Response(body=msgspec.json.encode(document), content_type="application/json")


def _dpid(request: web.Request) -> int:
    text = request.match_info["dpid"]
    try:
        dpid = int(text, 0)
    except ValueError:
        raise _error(400, f"{text[:40]!r} is not a datapath id (0x1, 1)") from None
    if dpid not in datapath_ids(_server(request).core.nib):
        raise _error(404, f"no datapath {dpid:#x}")
    return dpid


def _vm(request: web.Request) -> str:
    name = request.match_info["name"]
    if _server(request).config.vm(name) is None:
        raise _error(404, f"no VM {name[:40]!r}")
    return name


async def snapshot(values: Callable[[], Iterable[Any]], size: Callable[[], int]) -> list[Any]:
    """A list of what ``values()`` iterates (a NIB dict's values), copied :data:`COPY_CHUNK`
    at a time with the event loop served in between: copying a million references at once
    holds the server for 50 ms and more (each object's reference count is touched).

    The copy is the dict as it was at its end: an entry replaced meanwhile may be the old or
    the new one; if entries were added or removed meanwhile (the dict's size changed), the
    copy starts again, and the last attempt copies at once."""
    for _ in range(SNAPSHOT_ATTEMPTS - 1):
        copied: list[Any] = []
        expected = size()
        iterator = iter(values())
        try:
            while piece := list(itertools.islice(iterator, COPY_CHUNK)):
                copied += piece
                await asyncio.sleep(0)
        except RuntimeError:  # changed size during iteration: try again
            continue
        if len(copied) == expected == size():
            return copied
    return list(values())


def _page(request: web.Request) -> tuple[int, int | None, str]:
    """``offset``, ``limit`` and ``q`` of a paged request."""
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query["limit"]) if "limit" in request.query else None
    except ValueError:
        raise _error(400, "offset and limit must be integers") from None
    if offset < 0 or (limit is not None and limit < 0):
        raise _error(400, "offset and limit must not be negative")
    return offset, limit, request.query.get("q", "")


async def _stream(request: web.Request, head: dict[str, Any], key: str, items: Sequence[Any],
                  text: Callable[[Any], str], entry: Callable[[Any], dict[str, Any]] | None = None,
                  chunk: int = CHUNK) -> web.StreamResponse:
    """``head`` with ``key`` the page of ``items``, written ``chunk`` entries at a time.

    ``items`` is a copy taken when the request came (a list of references: milliseconds for a
    million), so the answer is one consistent moment even as the NIB moves on. Each item is
    encoded as it is (a msgspec struct: 0.3 µs a route), or as ``entry`` makes it."""
    offset, limit, query = _page(request)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    opening = msgspec.json.encode(head)[:-1]
    await response.write(opening + (b"," if head else b"") + b'"' + key.encode() + b'":[')
    # Without a filter the page starts right at ``offset``; with one, ``offset`` matches are skipped.
    skip, left, first = (offset if query else 0), limit, True
    for start in range(0 if query else offset, len(items), chunk):
        batch = items[start:start + chunk]
        if query:
            batch = [item for item in batch if query in text(item)]
            dropped = min(skip, len(batch))
            batch, skip = batch[dropped:], skip - dropped
        if left is not None:
            batch = batch[:left]
            left -= len(batch)
        if batch:
            body = msgspec.json.encode(batch if entry is None else [entry(item) for item in batch])[1:-1]
            await response.write(body if first else b"," + body)
            first = False
        if left == 0:
            break
        await asyncio.sleep(0)  # let the server's own work run between chunks
    await response.write(b"]}")
    await response.write_eof()
    return response


# -- handlers -------------------------------------------------------------------------

async def _datapaths(request: web.Request) -> web.Response:
    server = _server(request)
    stats = await server.controller_stats()
    nib = server.core.nib
    return _json({"datapaths": [datapath_entry(nib, dpid, stats, detail=False) for dpid in datapath_ids(nib)]})


async def _datapath(request: web.Request) -> web.Response:
    dpid = _dpid(request)
    server = _server(request)
    return _json(datapath_entry(server.core.nib, dpid, await server.controller_stats(), detail=False))


def flow_entry(flow: Flow) -> dict[str, Any]:
    """A flow as the API gives it: its fields, and the ``ovs-ofctl``-like text status prints."""
    return {"table": flow.table, "priority": flow.priority, "match": dict(flow.match),
            "actions": [format_action(a) for a in flow.actions], "goto": flow.goto, "text": format_flow(flow)}


async def _flows(request: web.Request) -> web.StreamResponse:
    dpid = _dpid(request)
    dp = _server(request).core.nib.datapaths.get(dpid)
    table = dp.installed if dp else None
    flows = await snapshot(table.flows.values, table.flows.__len__) if table else []
    return await _stream(request, {"dpid": f"{dpid:#x}", "flow_count": len(flows)}, "flows", flows,
                         format_flow, flow_entry, FLOW_CHUNK)


async def _groups(request: web.Request) -> web.Response:
    dpid = _dpid(request)
    dp = _server(request).core.nib.datapaths.get(dpid)
    groups = sorted(dp.installed.groups.values()) if dp and dp.installed else []
    return _json({"dpid": f"{dpid:#x}", "groups": [
        {"group_id": g.group_id, "type": g.type, "buckets": [[format_action(a) for a in b] for b in g.buckets],
         "text": format_group(g)} for g in groups]})


async def _links(request: web.Request) -> web.Response:
    return _json({"links": link_entries(_server(request).core.nib)})


async def _vms(request: web.Request) -> web.Response:
    nib = _server(request).core.nib
    return _json({"vms": [vm_entry(nib, vm.name, detail=False) for vm in nib.config.vms]})


async def _vm_one(request: web.Request) -> web.Response:
    return _json(vm_entry(_server(request).core.nib, _vm(request), detail=False))


async def _routes(request: web.Request) -> web.StreamResponse:
    name = _vm(request)
    held = _server(request).core.nib.vms[name].routes
    routes = await snapshot(held.values, held.__len__)
    # A Route struct encodes as route_entry makes it (the same keys), four times faster.
    return await _stream(request, {"vm": name, "route_count": len(routes)}, "routes", routes, lambda r: r.prefix)


async def _neighbours(request: web.Request) -> web.StreamResponse:
    name = _vm(request)
    held = _server(request).core.nib.vms[name].neighbours
    neighbours = await snapshot(held.values, held.__len__)
    return await _stream(request, {"vm": name, "neighbour_count": len(neighbours)}, "neighbours", neighbours,
                         lambda n: f"{n.ifname} {n.ip} {n.mac}")


async def _mappings(request: web.Request) -> web.Response:
    nib = _server(request).core.nib
    return _json({"mappings": [{"vm": vm.name, **nic} for vm in nib.config.vms
                               for nic in interface_entries(nib, vm.name)]})


async def _verify(request: web.Request) -> web.Response:
    reply = await _server(request).verify()
    return _json({"ok": reply.ok, "differences": list(reply.differences), "checked": reply.checked})


def _reload(token: str) -> Handler:
    """``POST /reload``, for bearers of ``token`` only: 200 with what changed, 422 with the
    problems of a config refused (nothing changed)."""
    async def reload(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()):
            log.warning("refused a reload from %s: no valid bearer token", request.remote)
            raise _error(401, "a bearer token is required to change state")
        reply = await _server(request).reload()
        return web.json_response({"ok": reply.ok, "problems": list(reply.problems), "changes": list(reply.changes),
                                  "flow_mods": reply.flow_mods, "table_size": reply.table_size},
                                 status=200 if reply.ok else 422)
    return reload


async def _events(request: web.Request) -> web.Response:
    events = _server(request).events
    try:
        since = int(request.query.get("since", "0"))
        wait = min(float(request.query.get("wait", "0")), MAX_WAIT)
    except ValueError:
        raise _error(400, "since must be an integer and wait a number of seconds") from None
    if wait > 0:
        await events.wait(since, wait)
    found, missed = events.since(since)
    return _json({"events": [e.as_json() for e in found], "missed": missed, "last": events.last_seq})


async def _status(request: web.Request) -> web.Response:
    return _json(await _server(request).status(detail=False))


async def _metrics(request: web.Request) -> web.Response:
    server = _server(request)
    body = server.metrics.exposition(await server.controller_stats(), server.peer_counts())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _event_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each event as it is recorded (after ``since``, by default from
    now), and a comment every :data:`KEEPALIVE` seconds so proxies keep the stream open."""
    events = _server(request).events
    try:
        since = int(request.query.get("since", str(events.last_seq)))
    except ValueError:
        raise _error(400, "since must be an integer") from None
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        while True:
            await events.wait(since, KEEPALIVE)
            found, _ = events.since(since)
            if not found:
                await response.write(b": keepalive\n\n")
            for event in found:
                await response.write(b"id: %d\ndata: %s\n\n" % (event.seq, msgspec.json.encode(event.as_json())))
                since = event.seq
    except ConnectionResetError:  # the browser left
        pass
    return response


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "index.html")


async def _openapi(request: web.Request) -> web.Response:
    return _json(openapi_document(ENDPOINTS, reload=request.app[_RELOAD]))


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/status", _status, "The whole picture in counts: what `routeflow status --json` prints", "Status"),
    Endpoint("/datapaths", _datapaths, "Every datapath: connection, ports, flow and group counts", "Datapaths"),
    Endpoint("/datapaths/{dpid}", _datapath, "One datapath", "Datapath"),
    Endpoint("/datapaths/{dpid}/flows", _flows, "The flows installed on a datapath, streamed", "Flows", paged=True),
    Endpoint("/datapaths/{dpid}/groups", _groups, "The groups installed on a datapath", "Groups"),
    Endpoint("/links", _links, "Links discovered between switch ports", "Links"),
    Endpoint("/vms", _vms, "Every VM: client, NICs, route and neighbour counts", "Vms"),
    Endpoint("/vms/{name}", _vm_one, "One VM", "Vm"),
    Endpoint("/vms/{name}/routes", _routes, "A VM's FIB, streamed", "Routes", paged=True),
    Endpoint("/vms/{name}/neighbours", _neighbours, "A VM's resolved neighbours, streamed", "Neighbours", paged=True),
    Endpoint("/mappings", _mappings, "The mapping table: each VM NIC, its datapath port and RFVS port", "Mappings"),
    Endpoint("/verify", _verify, "Compare every VM's FIB, translated, with what its switch holds", "Verify"),
    Endpoint("/events", _events, "What the server saw happen after event `since`; `wait` long-polls", "Events"),
)


def openapi_document(endpoints: Iterable[Endpoint], reload: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints`` (and ``POST /reload`` if ``reload``): derived
    from the table the routes are made from, so the two cannot drift."""
    paths: dict[str, Any] = {}
    for ep in endpoints:
        paths[PREFIX + ep.path] = {"get": {
            "summary": ep.summary,
            "operationId": ep.handler.__name__.strip("_"),
            "parameters": parameters(ep.path, ep.paged, ep.path == "/events"),
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{ep.schema}"}}}},
                "400": {"description": "A parameter is malformed", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
                "404": {"description": "No such datapath or VM", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }}
    if reload:
        paths[PREFIX + "/reload"] = {"post": {
            "summary": "Read the config file again and apply only what changed (a bearer token required)",
            "operationId": "reload", "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "Applied", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Reload"}}}},
                "401": {"description": "No valid bearer token", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
                "422": {"description": "The config was refused whole; nothing changed", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Reload"}}}},
            },
        }}
    return {"openapi": "3.1.0",
            "info": {"title": "routeflow RF-Server API", "version": "1",
                     "description": "The RF-Server's NIB: datapaths, links, VMs, routes, flows; and its reload."},
            "servers": [{"url": PREFIX}], "paths": paths,
            "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


# -- the application --------------------------------------------------------------------

def allowed(remote: str | None, authorization: str, token: str | None) -> bool:
    """Whether a request from ``remote`` with header ``authorization`` is served: from
    loopback always, from elsewhere with the bearer ``token`` only."""
    try:
        if remote is not None and ipaddress.ip_address(remote).is_loopback:
            return True
    except ValueError:
        pass
    return token is not None and hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode())


def build_app(server: RFServer, token: str | None = None) -> web.Application:
    """The aiohttp application of ``server``; ``token``: what a request from off this host
    must carry (None: such requests are refused)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allowed(request.remote, request.headers.get("Authorization", ""), token):
            log.warning("refused an HTTP request from %s: no valid bearer token", request.remote)
            raise web.HTTPUnauthorized(text='{"error": "a bearer token is required"}',
                                       content_type="application/json", headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    app = web.Application(middlewares=[authenticate], client_max_size=64 << 10)
    app[_SERVER] = server
    app[_RELOAD] = token is not None
    if token is not None:
        app.router.add_post(PREFIX + "/reload", _reload(token))
    for ep in ENDPOINTS:
        app.router.add_get(PREFIX + ep.path, ep.handler)
    app.router.add_get(PREFIX + "/openapi.json", _openapi)
    app.router.add_get(PREFIX + "/events/stream", _event_stream)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", _index)
    app.router.add_static("/static", WEB)
    return app


def read_token(path: str, source: str) -> str:
    """The bearer token in ``path`` (one line); ConfigError naming config ``source`` if unusable."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(source, [("http.token_file", f"cannot read {path}: {exc.strerror}")]) from None
    if len(token) < 16:
        raise ConfigError(source, [("http.token_file", f"{path} holds a token of {len(token)} characters "
                                                       "(at least 16)")])
    return token


class HttpApi:
    """The HTTP surface as a lifecycle: ``await start()`` listens, ``await stop()`` closes."""

    def __init__(self, server: RFServer, config: HttpConfig) -> None:
        self.config = config
        token = read_token(config.token_file, server.config.source) if config.token_file else None
        # An open event stream must not hold the server's exit for aiohttp's default 60 s.
        self._runner = web.AppRunner(build_app(server, token), access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)

    async def start(self) -> None:
        assert self.config.listen is not None
        host, port = split_http_address(self.config.listen)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(exc.errno, f"HTTP API on {self.config.listen}: {exc.strerror} "
                                     "(set http.listen in the config, or 'off')") from None
        log.info("HTTP API on http://%s%s/, metrics at /metrics", self.config.listen, PREFIX)

    async def stop(self) -> None:
        await self._runner.cleanup()
