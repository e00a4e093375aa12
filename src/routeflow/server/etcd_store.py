"""The NIB and the leader key of a server pair in etcd (v3, over its JSON gateway).

Through ``etcd3gw`` (HTTP, no gRPC or protobuf), each call in a worker thread so
the server's event loop never waits on etcd. The endpoints of a cluster are
tried in turn, starting with the last that answered: with one member of three
down, every call still goes through (reads are linearizable, so a member cut off
from the majority answers none). Each request is bounded by a quarter of the
lease TTL: a member that hangs costs at most that before the next is tried.

Keys, under ``PREFIX`` (the config's ``store.prefix``): ``PREFIX/leader`` holds
the active server's id, bound to its lease; ``PREFIX/nib/ITEM`` the NIB's items
(:mod:`routeflow.server.store`). Every NIB write is a transaction that succeeds
only while the leader key holds this server's id: a server that lost the
leadership cannot overwrite its successor's NIB.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import urllib.parse
import warnings
from collections.abc import Mapping
from typing import Any

from routeflow.lograte import RateLimit
from routeflow.server.store import Deposed

log = logging.getLogger("routeflow.server.etcd")
# An unreachable etcd is met at every poll: said a few times, then summarised.
log.addFilter(RateLimit())

#: Operations per transaction: etcd refuses more than 128 by default.
TXN_OPS = 100


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _prefix_end(prefix: bytes) -> bytes:
    """The end of the key range of every key starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class EtcdStore:
    """One server's connection to the etcd cluster: its lease and its NIB writes."""

    def __init__(self, endpoints: tuple[str, ...], server_id: str, ttl: int, prefix: str = "routeflow") -> None:
        with warnings.catch_warnings():  # its futurist warns of eventlet (os-ken's), which it does not use here
            warnings.simplefilter("ignore")
            from etcd3gw.client import Etcd3Client  # imported here: only a server pair needs it

        self.server_id = server_id
        self.ttl = float(ttl)
        self._clients = []
        for endpoint in endpoints:
            url = urllib.parse.urlsplit(endpoint)
            self._clients.append((endpoint, Etcd3Client(host=url.hostname or "127.0.0.1", port=url.port or 2379,
                                                        protocol=url.scheme or "http", timeout=max(ttl / 4, 0.25))))
        self._current = 0
        self._lease: str | None = None
        self._leader = f"{prefix}/leader"
        self._nib = f"{prefix}/nib/"

    # -- requests ----------------------------------------------------------------------

    def _post_sync(self, path: str, body: dict[str, Any]) -> Any:
        from etcd3gw import exceptions

        failures = []
        for i in range(len(self._clients)):
            index = (self._current + i) % len(self._clients)
            endpoint, client = self._clients[index]
            try:
                reply = client.post(client.get_url(path), json=body)
            except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError,
                    exceptions.ApiVersionDiscoveryFailedError) as exc:
                failures.append(f"{endpoint}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}")
                continue
            except exceptions.Etcd3Exception as exc:  # a member without a leader, a refused request
                failures.append(f"{endpoint}: {exc.detail_text if hasattr(exc, 'detail_text') else exc}"[:300])
                continue
            if index != self._current:
                log.info("etcd: now using %s", endpoint)
                self._current = index
            return reply
        raise ConnectionError("no etcd endpoint answered: " + "; ".join(failures))

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await asyncio.to_thread(self._post_sync, path, body)

    # -- the leader key (election.Lease) -------------------------------------------------

    async def holder(self) -> str | None:
        reply = await self._post("/kv/range", {"key": _b64(self._leader)})
        kvs = reply.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    async def acquire(self) -> float | None:
        grant = await self._post("/lease/grant", {"TTL": int(self.ttl)})
        lease, granted = grant["ID"], float(grant["TTL"])
        reply = await self._post("/kv/txn", {
            "compare": [{"key": _b64(self._leader), "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            "success": [{"request_put": {"key": _b64(self._leader), "value": _b64(self.server_id), "lease": lease}}],
            "failure": [],
        })
        if not reply.get("succeeded"):
            await self._post("/kv/lease/revoke", {"ID": lease})
            return None
        self._lease = lease
        return granted

    async def keepalive(self) -> float:
        if self._lease is None:
            return 0.0
        reply = await self._post("/lease/keepalive", {"ID": self._lease})
        return float(reply.get("result", {}).get("TTL", 0))

    async def resign(self) -> None:
        if self._lease is not None:
            lease, self._lease = self._lease, None
            await self._post("/kv/lease/revoke", {"ID": lease})

    # -- the NIB (store.NibStore) ----------------------------------------------------------

    async def load(self) -> dict[str, bytes]:
        prefix = self._nib.encode()
        reply = await self._post("/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        return {base64.b64decode(kv["key"]).decode()[len(self._nib):]: base64.b64decode(kv.get("value", ""))
                for kv in reply.get("kvs") or []}

    async def save(self, changes: Mapping[str, bytes | None]) -> None:
        guard = [{"key": _b64(self._leader), "result": "EQUAL", "target": "VALUE", "value": _b64(self.server_id)}]
        ops = [{"request_delete_range": {"key": _b64(self._nib + key)}} if value is None else
               {"request_put": {"key": _b64(self._nib + key), "value": _b64(value)}}
               for key, value in sorted(changes.items())]
        for start in range(0, len(ops), TXN_OPS):
            reply = await self._post("/kv/txn", {"compare": guard, "success": ops[start:start + TXN_OPS],
                                                 "failure": []})
            if not reply.get("succeeded"):
                raise Deposed(f"the leader key is no longer {self.server_id!r}")
