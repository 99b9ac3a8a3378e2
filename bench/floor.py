"""The floor: a bare Flask view that reads the body and answers 202, served with exactly the
gunicorn options ``hookfan app`` uses (IntakeServer.load_config: bind, worker count, hookfan's
worker class, timeouts). Only the WSGI app differs. Run as ``python -m bench.floor HOST:PORT``.
"""

from __future__ import annotations

import sys
from typing import Any

from flask import Flask, request

from hookfan.app.server import IntakeServer
from hookfan.config import IntakeSettings, Settings


def bare_app() -> Flask:
    app = Flask("bench.floor")

    @app.route("/", methods=["POST"])
    def accept() -> tuple[str, int]:
        request.get_data()
        return "", 202

    return app


class FloorServer(IntakeServer):
    def load(self) -> Any:
        return bare_app()


def main(addr: str) -> None:
    host, _, port = addr.rpartition(":")
    FloorServer(Settings(intake=IntakeSettings(http_addr=(host, int(port))))).run()


if __name__ == "__main__":
    main(sys.argv[1])
