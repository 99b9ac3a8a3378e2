"""The intake process: a Flask app that stores each matching request once and answers 202."""

from __future__ import annotations

from typing import Any

from flask import Flask

from hookfan.config import Settings
from hookfan.durability import DurabilityCheck
from hookfan.store import Quota, Store, connect

from .answer import Waiter
from .intake import RETRY_AFTER, Intake, error, install_request_log
from .routecache import RouteCache

LOOKUP_TIMEOUT = 0.4
"""Timeouts of the look after a lost reply: with the write's 1.5 s, a 503 within 2 s."""


class IntakeFlask(Flask):
    """Every method on every path goes to the intake: Flask's router would normalise paths
    (merge slashes, redirect) and answer OPTIONS itself, and a copy must be exact."""

    durability: DurabilityCheck | None = None
    """Set by :func:`create_app` for a served app; while it is ``refusing`` every request
    gets 503 (the one check per request: the reading runs on its own thread)."""

    def dispatch_request(self) -> Any:
        if self.durability is not None and self.durability.refusing:
            return error(503, "Redis settings do not keep a 202 durable; see the app's log",
                         **{"Retry-After": RETRY_AFTER})
        return self.view_functions["intake"]()

    def create_url_adapter(self, request: Any) -> Any:
        # No URL matching at all for a request (it is never used); url_for outside a request
        # still gets Flask's adapter.
        return None if request is not None else super().create_url_adapter(request)


def create_app(settings: Settings | None = None, store: Store | None = None) -> Flask:
    """The intake app. ``store`` defaults to one on ``settings.redis``; then the app also
    checks Redis's durability settings now and every minute (:mod:`hookfan.durability`)."""
    settings = settings or Settings()
    lookup = None
    app = IntakeFlask("hookfan.app")
    if store is None:
        key = settings.redis.verify_key()  # both load the route table (signing secrets)
        store = Store(connect(settings.redis), verify_key=key)
        lookup = Store(connect(settings.redis, LOOKUP_TIMEOUT), verify_key=key)
        # A client of its own: nothing it waits on delays what the intake's clients do.
        app.durability = DurabilityCheck(connect(settings.redis, timeout=1.0),
                                         settings.redis.allow_unsafe, "app").start()
    app.config["MAX_CONTENT_LENGTH"] = settings.intake.body_size_limit
    routes = RouteCache(store, quick=lookup)
    intake = Intake(store, routes, settings.intake.proxy_write_timeout,
                    dedupe_headers=settings.intake.dedupe_headers,
                    dedupe_window=settings.intake.dedupe_window, lookup=lookup,
                    max_pending=settings.intake.max_pending,
                    quota=Quota(settings.intake.max_pending_per_host,
                                settings.intake.max_stored_bytes_per_host),
                    trusted_proxies=settings.intake.trusted_proxies,
                    min_replicas_ack=settings.intake.min_replicas_ack,
                    replica_ack_timeout=settings.intake.replica_ack_timeout)
    # Its own client: a BLPOP never waits in front of the intake's writes or looks.
    intake.waiter = Waiter(store.r if lookup is None else connect(settings.redis),
                           settings.intake.max_answer_waits)
    app.extensions["hookfan.routes"] = routes
    app.view_functions["intake"] = intake
    app.extensions["hookfan.intake"] = intake
    install_request_log(app)
    return app
