"""BASELINE (see bench/naive/__init__.py): the Flask side of the afternoon design.

Backends come from ``NAIVE_BACKENDS`` (comma-separated base URLs). Run under gunicorn.
"""

from __future__ import annotations

import os

from flask import Flask, request

from bench.naive.tasks import deliver

BACKENDS = [u for u in os.environ.get("NAIVE_BACKENDS", "").split(",") if u]
HOP = {"host", "content-length", "connection", "transfer-encoding"}

app = Flask("naive")


@app.route("/", defaults={"path": ""}, methods=["POST", "PUT", "PATCH", "DELETE", "GET"])
@app.route("/<path:path>", methods=["POST", "PUT", "PATCH", "DELETE", "GET"])
def fan_out(path: str) -> tuple[str, int]:
    body = request.get_data().decode("latin-1")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    for url in BACKENDS:
        deliver.apply_async((url, request.method, request.full_path.rstrip("?"), headers, body))
    return "", 202
