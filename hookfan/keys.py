"""Every Redis key hookfan uses, built from one prefix per concept (rq's convention).

The delivery schedule (engine v2) is kept per backend URL: a ready queue, an in-flight set,
a hash of copy state and a set of sender slots. Times in them are milliseconds of Redis's own
clock (``TIME``), never a client's. The layout of each structure is stated once, here; the Lua
scripts in :mod:`hookfan.scripts` declare every key they touch.
"""

from __future__ import annotations

import hashlib
import os
import re

DEFAULT_PREFIX = "hookfan:"
CLUSTER_PREFIX = "{hookfan}:"
"""The prefix for Redis Cluster: the hash tag puts every hookfan key in one slot, so that no
script crosses slots (see docs/scaling.md)."""


def checked_prefix(text: str) -> str:
    """``HOOKFAN_KEY_PREFIX``'s value, checked: raises ValueError naming the variable."""
    tag = re.fullmatch(r"[^{}]*(\{[^{}]+\})?[^{}]*", text)
    if not text.endswith(":") or tag is None:
        raise ValueError(f"HOOKFAN_KEY_PREFIX {text!r}: give a prefix ending in ':', with at "
                         f"most one non-empty {{hash tag}} (e.g. {CLUSTER_PREFIX!r})")
    return text


PREFIX_ERROR = ""
"""Why ``HOOKFAN_KEY_PREFIX`` was refused (the CLI then exits 2 with it before anything runs)."""
try:
    PREFIX = checked_prefix(os.environ.get("HOOKFAN_KEY_PREFIX") or DEFAULT_PREFIX)
except ValueError as exc:
    PREFIX, PREFIX_ERROR = DEFAULT_PREFIX, str(exc)
"""Every key's prefix: ``hookfan:``, or ``HOOKFAN_KEY_PREFIX`` (read once, as the process
starts; every process of one installation must use the same). An installation's prefix cannot
change later: its keys would be left behind."""
_TAG = re.search(r"\{[^{}]+\}", PREFIX)
ROUTES = PREFIX + "routes"
"""The whole route table, JSON, written with :data:`ROUTES_VERSION` in one transaction."""
ROUTES_VERSION = PREFIX + "routes:version"
VERIFY = PREFIX + "verify"
"""JSON, host -> how its requests are verified, signing secrets included (base64): the part of
the route table that holds secrets, kept out of :data:`ROUTES` (``hookfan routes`` and anyone
reading the table see no secret). Written and read with :data:`ROUTES` in one transaction;
absent when no host is verified."""
SEEN = PREFIX + "seen:"
"""String per accepted signed request of a provider with a signed timestamp (the digest of host,
provider and signed content, :func:`hookfan.signatures.check`), set by ``accept.lua`` with the
request and expiring when the signature would no longer be accepted anyway: the same request
sent again within that time is refused as a replay."""
REQUEST = PREFIX + "req:"
"""Hash per accepted request: ``r`` a JSON list of method, raw URI, headers, client address,
acceptance (client Unix time, for latency figures only), host, traceparent, body size, trusted
and, for a request whose sender awaits the answers, the ms its answers are kept; the
body (stored once) in ``b``, ``b1``, ``b2`` ... (pieces that fit Redis's allocation classes, see
:func:`hookfan.envelope.body_pieces`); ``n`` copies not yet delivered or purged (pending and
dead letters); ``q`` ``"<stored bytes> <host>"``, what the request counts in :data:`QUOTA`
(absent in requests stored before quotas: those are not counted). Requests stored before
``r`` have a field per value (``m``, ``u``, ``h``, ``b``,
``ip``, ``t``, ``host``, ``tp``); readers take both. The
hash is deleted with its last copy; when that is delivered within seconds of acceptance, the
string ``'d'`` takes the key until then, so that the intake's look after a lost reply
(``resolve.lua``) can tell "stored and already delivered" from "never stored"."""
ANSWER = PREFIX + "answer:"
"""List per request of a Receiver with an AwaitAll ``responseType``: one record per target
(:func:`hookfan.answers.encode`), pushed by the worker after the first attempt of that
target's copy, popped by the intake thread waiting to answer the sender. Expires the
Receiver's ``timeout`` after the last push; the intake deletes it when its wait ends. Absent
for every other request."""


def answer(request_id: str) -> str:
    return ANSWER + request_id


FENCE = PREFIX + "fence:"
"""String per request id, set when the intake lost the reply to a request's accept and found it
not stored (it answered 503): an accept with that id arriving late stores nothing."""
FENCE_MS = 600_000
"""How long a fence lasts: far longer than any accept can wait in Redis's input buffer."""
READY = PREFIX + "q:"
"""Sorted set per backend URL: delivery id -> ms (Redis clock) when its next attempt is due."""
INFLIGHT = PREFIX + "f:"
"""Sorted set per backend URL: delivery id -> ms when the lease of its claim runs out."""
COPIES = PREFIX + "c:"
"""Hash per backend URL: delivery id -> ``"<generation> <attempts> <t0 ms> <route>"`` for every
pending copy (ready or in flight). The generation is the attempt token: bumped at each claim,
never reset (a replay keeps it), so an outcome carrying an older one is stale. ``t0`` starts the
retry age: acceptance, or the last replay."""
RESUMING = PREFIX + "cr:"
"""Hash per backend URL being resumed: the copies of its :data:`COPIES` hash that
``resume.lua`` has not yet written back with their retry age moved (same layout). Exists
only while a ``hookfan backends resume`` runs (or was interrupted: running it again goes on)."""
SLOTS = PREFIX + "s:"
"""Sorted set per backend URL: ``<task token>:<k>`` -> ms when that sender slot's lease runs
out. Its size is the number of senders allowed to run against the backend right now; claims
keep it at or below ``--backend-concurrency``."""
POLICY = PREFIX + "policy"
"""JSON, backend URL -> its delivery policy (``spec.delivery``, merged over the RequestClones
naming it: :func:`hookfan.deliverypolicy.dump`), written with :data:`ROUTES` in one
transaction; absent when no backend has one. Workers read it every few seconds."""
THROTTLE = PREFIX + "t:"
"""Hash per backend URL with a rate limit or ordered delivery (``settle.lua`` keeps it): ``k``
tokens left in its bucket and ``ts`` the ms they were counted at (rate limit); ``hold`` the ms
before which the head of an ordered backend's queue is not attempted again (its last attempt
failed) and ``head`` that copy's delivery id."""
BACKENDS = PREFIX + "backends"
"""Set of every backend URL that has had a copy: where to look for per-backend keys."""
DUE = PREFIX + "due"
"""Sorted set: backend URL -> ms when the dispatcher should publish a task for it. A backend
owned by a task (:data:`OWNED`) is absent: its task picks up new copies itself."""
OWNED = PREFIX + "owned"
"""Sorted set: backend URL -> ms when the current task's ownership lapses (a task message was
published for it, or a task is running it). A lapsed owner is looked at again."""
WAKE = "hookfan:wake"
"""Pub/Sub channel: the intake (and a task ending with work left) wakes the dispatchers.
A lost message only delays the dispatcher's next look, which is bounded by its idle wait."""
DEAD = PREFIX + "dead"
"""Sorted set: dead-lettered delivery id -> ms (Redis clock) when it was dead-lettered."""
DEAD_INFO = PREFIX + "dl"
"""Hash: dead-lettered delivery id -> JSON ``[url, route, generation, attempts, t0 ms, last
error, body bytes]``; body bytes is -1 when the burying script did not know it, and absent in
records written before it was kept (readers then ask ``HSTRLEN``)."""
DEAD_COUNT = PREFIX + "dlcount"
"""Hash: ``<route> <backend url>`` -> dead letters of that pair now in :data:`DEAD_INFO`, kept
by the scripts that bury, replay, purge and expire them (the ``hookfan_dead_letters`` gauge reads
it, no scan). A record counts once it carries its body size (its 7th element); records written
before that are counted when a worker starts (``deadletters.backfill``)."""
QUOTA = PREFIX + "quota"
"""Hash of what each host holds in Redis, for ``--max-pending-per-host`` and
``--max-stored-bytes-per-host``: field ``p:<host>`` its copies (pending and dead letters),
``b:<host>`` its requests' stored bytes (body and ``r``, once per request whatever its
copies), host as matched (:func:`hookfan.routes.normalize_host`). ``accept.lua`` adds a
request's and checks the caps; ``settle.lua`` (delivered) and ``purge.lua`` (purge,
retention) take them off, reading the request's ``q`` field; a field that reaches 0 is
deleted. Burying and replaying change nothing: a dead letter counts as its copy did.
Never rebuilt by a scan; ``DEL`` resets it (see docs/operations.md)."""
DEDUPE = PREFIX + "dedupe:"
"""String per (host, provider delivery id): ``<request id>:<copies>`` of the first request,
expiring after ``--dedupe-window``."""
STATS = PREFIX + "stats"
"""Hash of per-backend delivery figures the workers keep for RequestClone status: fields
``<figure>:<route> <backend url>`` with figure ``delivered`` (a count), ``last_delivered``
(a Unix time) and ``last_error`` (a status or error class, never content)."""
PAUSED = PREFIX + "paused"
"""Hash: paused backend URL -> JSON ``{"since": ms (Redis clock), "by": "cli"|"auto",
"reason": text}``. Its copies are not claimed (``settle.lua``) nor dispatched
(``dispatch.lua``); ``resume.lua`` removes the entry and moves each copy's retry-age start
forward by the time it spent paused. Absent while no backend is paused."""
FAILING = PREFIX + "failing"
"""Hash: backend URL -> ms (Redis clock) of its first failed attempt since its last delivery,
kept by ``settle.lua`` only for workers run with ``--auto-pause-after``."""
PAUSE_EVENTS = PREFIX + "pausedevents"
"""List of JSON ``{"url", "routes", "since", "reason"}``, one per auto-pause, pushed by
``settle.lua`` (the last 1,000 kept) and popped by the operator's leader, which writes a
``BackendPaused`` Event on each route's RequestClone."""
WORKER_POLICY = PREFIX + "workerpolicy"
"""JSON of the delivery flags the last worker to start runs with (``hookfan backends list``
shows them as each backend's policy)."""
QUEUE = (_TAG.group(0) if _TAG else "hookfan") + ".deliveries"
"""The Celery (kombu) queue of ``hookfan.deliver`` wake-ups; kombu uses the queue name as the
list key. A message names a backend, never a copy: losing or repeating one costs nothing."""
LEGACY = (PREFIX + "schedule", PREFIX + "dlv:", PREFIX + "busy:")
"""Keys of the first delivery engine (a global schedule, per-copy records, busy sets)."""


def request(request_id: str) -> str:
    return REQUEST + request_id


def seen(digest: str) -> str:
    return SEEN + digest


def fence(request_id: str) -> str:
    return FENCE + request_id


def ready(url: str) -> str:
    return READY + url


def inflight(url: str) -> str:
    return INFLIGHT + url


def copies(url: str) -> str:
    return COPIES + url


def resuming(url: str) -> str:
    return RESUMING + url


def slots(url: str) -> str:
    return SLOTS + url


def throttle(url: str) -> str:
    return THROTTLE + url


def backend_keys(url: str) -> list[str]:
    """The four per-backend keys, in the order the scripts declare them."""
    return [ready(url), inflight(url), copies(url), slots(url)]


def request_id_of(delivery_id: str) -> str:
    """Delivery ids are ``<request id>-<index>``; see :func:`delivery_ids`."""
    return delivery_id.rpartition("-")[0]


def delivery_ids(request_id: str, count: int) -> list[str]:
    return [f"{request_id}-{i}" for i in range(count)]


def quota_fields(host: str) -> tuple[str, str]:
    """The :data:`QUOTA` fields of one host: (copies, stored bytes)."""
    return f"p:{host}", f"b:{host}"


def dedupe(host: str, header: str, value: str) -> str:
    """The key for one provider delivery id; hashed so header values never appear in keys."""
    digest = hashlib.sha256(f"{host}\n{header.lower()}\n{value}".encode("latin-1", "replace"))
    return DEDUPE + digest.hexdigest()


def stat_field(figure: str, route: str, backend_url: str) -> str:
    """A field of :data:`STATS`; routes and URLs contain no spaces."""
    return f"{figure}:{route} {backend_url}"
