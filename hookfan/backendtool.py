"""``hookfan backends``: list backends, pause and resume them (see :mod:`hookfan.backends`)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from hookfan.backends import Backends, BackendView, UnknownBackend
from hookfan.dltool import table
from hookfan.store import Store

LIST_HEADERS = ["BACKEND", "ROUTES", "POLICY", "IN FLIGHT", "PENDING", "OLDEST", "PAUSED",
                "LAST ERROR"]


def seconds(value: float | None) -> str:
    """``3d4h``, ``2h5m``, ``4m10s``, ``12s``; ``-`` for None."""
    if value is None:
        return "-"
    s = int(value)
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                          ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // small_size
            return f"{s // size}{unit}" + (f"{rest}{small}" if rest else "")
    return f"{s}s"


def policy_text(policy: dict[str, Any]) -> str:
    if not policy:
        return "(no worker has started)"
    short = {"maxRetryAge": "maxAge", "concurrency": "conc", "autoPauseAfter": "autoPause"}
    return " ".join(f"{short[k]}={seconds(v) if k != 'concurrency' else v}"
                    for k, v in policy.items() if k in short and v)


def paused_text(v: BackendView) -> str:
    if v.paused is None:
        return "no"
    since = datetime.fromtimestamp(v.paused.since, UTC).isoformat(timespec="seconds")
    return f"yes ({v.paused.by}, since {since})"


def run_list(store: Store, output: str) -> int:
    views = Backends(store.r).views(store.load_routes())
    if output == "json":
        print(json.dumps([v.to_dict() for v in views], indent=2))
        return 0
    if not views:
        print("no backends: no route table published and no copy stored yet")
        return 0
    print(table(LIST_HEADERS, [
        [v.url, ",".join(v.routes) or "-", policy_text(v.policy), v.in_flight, v.pending,
         seconds(v.oldest_age), paused_text(v), v.last_error or "-"] for v in views]))
    return 0


def run_pause(store: Store, action: str, url: str | None, route: str | None) -> int:
    """``pause`` or ``resume`` one URL, or every backend of ``route``."""
    command = f"hookfan backends {action}"
    if (url is None) == (route is None):
        print(f"{command}: error: give a backend URL or --route NAMESPACE/NAME (one of them)",
              file=sys.stderr)
        return 2
    backends = Backends(store.r)
    try:
        urls = backends.resolve(url, route, store.load_routes())
    except UnknownBackend as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 1
    for u in urls:
        if action == "pause":
            done = backends.pause(u, "cli", "hookfan backends pause")
            print(f"paused {u}" if done else f"{u} was already paused")
        else:
            shifted = backends.resume(u)
            if shifted is None:
                print(f"{u} was not paused")
            else:
                print(f"resumed {u} after {seconds(shifted[1])} paused; "
                      f"{shifted[0]} pending copies keep the retry age they had")
    return 0
