"""A Kubernetes API server on loopback for tests: kmock's scaffold plus the server behaviour the
official client and the operator need that kmock 0.8's emulator lacks.

kmock (``KubernetesScaffold``) serves discovery, parses every request into (action, resource,
namespace, name, subresource) and renders errors as ``Status`` objects. This subclass keeps the
objects itself, in memory, with the semantics a real API server has and kmock 0.8 does not:

- metadata stamped on create: ``uid``, ``resourceVersion`` (one global counter, as etcd's),
  ``generation``, ``namespace``, ``creationTimestamp`` and ``generateName``; create answers 201;
- ``creationTimestamp`` comes from a clock that ticks one second per create, so "older" is
  deterministic in tests (a real server has one-second resolution and a real clock);
- PUT (replace) with a 409 Conflict on a stale ``resourceVersion``; POST of an existing name
  answers 409 AlreadyExists; merge-patch; ``generation`` bumps only when ``spec`` changes;
- the ``status`` subresource: writes to ``/status`` change only ``status``, other writes never do;
- list returns the current ``resourceVersion``; watch resumes from ``resourceVersion`` out of an
  event history, honours ``timeoutSeconds``, ``labelSelector`` (equality only) and namespaces;
- fault injection: :meth:`KubeServer.compact` forgets the history (watches resuming from an older
  version get a 410 ``ERROR`` event, as from a compacted etcd) and :meth:`KubeServer.drop_watches`
  cuts every open watch connection.

Not covered: admission, validation against the CRD schema (the tests validate manifests with
``jsonschema`` separately), strategic-merge and JSON patches (treated as merge-patch / refused),
field selectors, set-based label selectors, bookmarks, authentication and RBAC.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp.web
import attrs
import kmock

HAS_STATUS = {"requestclones", "receivers"}
NAMESPACES = "x-namespaces"
"""The plural Namespaces are kept under (see :meth:`KubeAPI.__call__`)."""
Key = tuple[str, str | None, str]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _labels_match(obj: dict[str, Any], selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        name, _, value = term.partition("=")
        if labels.get(name.rstrip("!")) != value.lstrip("="):
            return False
    return True


class Gone(kmock.KubernetesError):
    pass


@attrs.define(kw_only=True)
class KubeAPI(kmock.KubernetesScaffold):
    store: dict[Key, dict[str, Any]] = attrs.field(factory=dict)
    history: list[tuple[int, str, dict[str, Any]]] = attrs.field(factory=list)
    rv: int = 1
    compacted: int = 0
    drops: int = 0
    ends: int = 0
    writers: list[tuple[str, str, str]] = attrs.field(factory=list)
    """(User-Agent, method, path) of every write, to tell which client wrote."""
    watch_count: int = 0
    clock: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    changed: asyncio.Condition | None = None

    async def __call__(self, raw_request: aiohttp.web.BaseRequest
                       ) -> aiohttp.web.StreamResponse:
        # kmock 0.8 cannot parse the Namespace collection (``/api/v1/namespaces`` reads as a
        # namespace with no name): serve it as a cluster-scoped kind of another name.
        if raw_request.path == "/api/v1/namespaces":
            url = raw_request.rel_url
            raw_request = raw_request.clone(
                rel_url=url.with_path("/api/v1/" + NAMESPACES).with_query(url.query))
        return await super().__call__(raw_request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.resource.plural is None:
            return await super()._handle(request)
        if self.changed is None:
            self.changed = asyncio.Condition()
        plural = request.resource.plural
        method = str(request.method.value).upper()
        if request.params.get("watch") in ("true", "1"):
            return await self._watch(request, plural)
        if method != "GET":
            self.writers.append((request.headers.get("User-Agent", ""), method,
                                 str(request.url.path)))
        async with self.changed:
            status, body = self._serve(request, plural, method)
            self.changed.notify_all()
        return aiohttp.web.json_response(body, status=status)

    def _serve(self, request: kmock.Request, plural: str, method: str
               ) -> tuple[int, dict[str, Any]]:
        key: Key = (plural, request.namespace, request.name or "")
        data = json.loads(request.body) if request.body else {}
        if method == "GET" and request.name is None:
            items = [o for (p, ns, _), o in sorted(self.store.items(), key=lambda kv: kv[0][2])
                     if p == plural and request.namespace in (None, ns)
                     and _labels_match(o, request.params.get("labelSelector", ""))]
            return 200, {"apiVersion": "v1", "kind": "List",
                         "metadata": {"resourceVersion": str(self.rv)}, "items": items}
        if method == "POST":
            return self._create(plural, request.namespace, data)
        if key not in self.store:
            raise kmock.KubernetesObjectNotFoundError()
        if method == "GET":
            return 200, self.store[key]
        if method == "DELETE":
            obj = self.store.pop(key)
            self._record("DELETED", plural, self._bump(obj))
            return 200, obj
        return self._write(key, data, method, request.subresource == "status")

    def _create(self, plural: str, namespace: str | None, data: dict[str, Any]
                ) -> tuple[int, dict[str, Any]]:
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key: Key = (plural, namespace, meta.get("name", ""))
        if key in self.store:
            raise kmock.KubernetesError(status=409, reason="AlreadyExists",
                                        message=f"{plural} {key[2]!r} already exists")
        self.clock += timedelta(seconds=1)
        meta.update(uid=str(uuid.uuid4()), generation=1,
                    creationTimestamp=self.clock.strftime("%Y-%m-%dT%H:%M:%SZ"))
        if namespace is not None:
            meta["namespace"] = namespace
        if plural in HAS_STATUS:
            data.pop("status", None)
        self.store[key] = self._bump(data)
        self._record("ADDED", plural, data)
        return 201, data

    def _write(self, key: Key, data: dict[str, Any], method: str, status_only: bool
               ) -> tuple[int, dict[str, Any]]:
        old = self.store[key]
        if method == "PUT":
            sent = (data.get("metadata") or {}).get("resourceVersion")
            if sent and sent != old["metadata"]["resourceVersion"]:
                raise kmock.KubernetesError(status=409, reason="Conflict",
                                            message="the object has been modified")
            new = data
        elif isinstance(data, dict):
            new = merge_patch(old, data)
        else:
            raise kmock.KubernetesError(status=415, reason="UnsupportedMediaType",
                                        message="only merge-patch is emulated")
        if key[0] in HAS_STATUS:  # /status changes only status; other writes never do
            base = old if status_only else new
            part = new.get("status") if status_only else old.get("status")
            new = {k: v for k, v in base.items() if k != "status"}
            if part is not None:
                new["status"] = part
        fixed = {k: old["metadata"][k] for k in ("uid", "creationTimestamp", "namespace",
                                                  "name", "generation") if k in old["metadata"]}
        new["metadata"] = {**(new.get("metadata") or {}), **fixed}
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(fixed.get("generation", 1)) + 1
        self.store[key] = self._bump(new)
        self._record("MODIFIED", key[0], new)
        return 200, new

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return obj

    def _record(self, kind: str, plural: str, obj: dict[str, Any]) -> None:
        self.history.append((self.rv, plural, {"type": kind, "object": copy.deepcopy(obj)}))

    def _events_after(self, since: int, plural: str, request: kmock.Request
                      ) -> Iterator[dict[str, Any]]:
        selector = request.params.get("labelSelector", "")
        for rv, p, event in self.history:
            ns = event["object"]["metadata"].get("namespace")
            if (rv > since and p == plural and request.namespace in (None, ns)
                    and _labels_match(event["object"], selector)):
                yield event

    async def _watch(self, request: kmock.Request, plural: str) -> aiohttp.web.StreamResponse:
        assert self.changed is not None
        raw = request._raw_request
        assert raw is not None
        self.watch_count += 1
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(raw)
        timeout = float(request.params.get("timeoutSeconds") or 3600)
        loop = asyncio.get_running_loop()
        deadline, drops, ends = loop.time() + timeout, self.drops, self.ends
        async with self.changed:
            since = int(request.params.get("resourceVersion") or 0)
            if since and since < self.compacted:
                await resp.write(json.dumps({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                    "reason": "Expired", "message": "too old resource version"}}).encode() + b"\n")
                await resp.write_eof()
                return resp
            if not since:  # no version: the current state first, as ADDED events
                for (p, ns, _), obj in list(self.store.items()):
                    if p == plural and request.namespace in (None, ns) and _labels_match(
                            obj, request.params.get("labelSelector", "")):
                        await resp.write(json.dumps({"type": "ADDED", "object": obj}).encode()
                                         + b"\n")
                since = self.rv
            while loop.time() < deadline:
                for event in list(self._events_after(since, plural, request)):
                    await resp.write(json.dumps(event).encode() + b"\n")
                since = self.rv
                if self.drops != drops:
                    assert raw.transport is not None
                    raw.transport.close()  # cut the connection: no clean end of the stream
                    return resp
                if self.ends != ends:
                    break
                try:
                    await asyncio.wait_for(self.changed.wait(), deadline - loop.time())
                except TimeoutError:
                    break
        await resp.write_eof()
        return resp

    async def poke(self, action: str) -> None:
        assert self.changed is not None
        async with self.changed:
            if action == "compact":  # as etcd compaction, then a server-side watch timeout
                self.compacted = self.rv + 1
                self.history.clear()
                self.ends += 1
            elif action == "end":
                self.ends += 1
            else:
                self.drops += 1
            self.changed.notify_all()


class KubeServer:
    """:class:`KubeAPI` served over real HTTP on loopback, from a thread with its own loop."""

    def __init__(self) -> None:
        self.api = KubeAPI()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._run, daemon=True, name="kubeapi")

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.api.changed = asyncio.Condition()
        async with self.api, kmock.Server(self.api) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def start(self) -> KubeServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("kmock server did not start")
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._stop is not None and self._thread.is_alive():
            self._call("end")  # open watches would hold the server's shutdown up
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _call(self, action: str) -> None:
        asyncio.run_coroutine_threadsafe(self.api.poke(action), self.loop).result(5)

    def compact(self) -> None:
        """Forget the event history and end every watch cleanly: resuming gets 410 Gone,
        so only a client that re-lists sees what changed since."""
        self._call("compact")

    def drop_watches(self) -> None:
        """Cut every open watch connection, as a restarting API server or a proxy would."""
        self._call("drop")

    def objects(self, plural: str) -> list[dict[str, Any]]:
        async def snap() -> list[dict[str, Any]]:
            return [copy.deepcopy(o) for (p, _, _), o in self.api.store.items() if p == plural]
        return asyncio.run_coroutine_threadsafe(snap(), self.loop).result(5)

    def kubeconfig(self, path: Any, **extra: Any) -> str:
        """Write a kubeconfig for this server (``extra`` merges into its cluster/user)."""
        cluster = {"server": self.url, **extra.get("cluster", {})}
        user = {"token": "test", **extra.get("user", {})}
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
               "clusters": [{"name": "t", "cluster": cluster}],
               "users": [{"name": "t", "user": user}],
               "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        return str(path)

