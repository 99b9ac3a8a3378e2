"""The intake process: a Flask app that stores each matching request once and answers 202."""

from __future__ import annotations

from typing import Any

from flask import Flask

from hookfan.config import Settings
from hookfan.store import Store, connect

from .intake import Intake, install_request_log
from .routecache import RouteCache


class IntakeFlask(Flask):
    """Every method on every path goes to the intake: Flask's router would normalise paths
    (merge slashes, redirect) and answer OPTIONS itself, and a copy must be exact."""

    def dispatch_request(self) -> Any:
        return self.view_functions["intake"]()


def create_app(settings: Settings | None = None, store: Store | None = None) -> Flask:
    """The intake app. ``store`` defaults to one on ``settings.redis``."""
    settings = settings or Settings()
    if store is None:
        store = Store(connect(settings.redis))
    app = IntakeFlask("hookfan.app")
    app.config["MAX_CONTENT_LENGTH"] = settings.intake.body_size_limit
    routes = RouteCache(store)
    app.view_functions["intake"] = Intake(store, routes, settings.intake.proxy_write_timeout,
                                          dedupe_headers=settings.intake.dedupe_headers,
                                          dedupe_window=settings.intake.dedupe_window)
    app.extensions["hookfan.routes"] = routes
    install_request_log(app)
    return app
