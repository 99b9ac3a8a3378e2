"""The operator's file source: parsing, validation, and changes republished within 2 s."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hookfan.operator.files import load
from hookfan.operator.filesource import file_table
from tests.support.procs import HookfanProcess, wait_until

GOOD = """\
apiVersion: proxy.infra.doodle.com/v1beta1
kind: RequestClone
metadata: {name: %(name)s}
spec: {host: %(host)s, backend: {serviceName: %(svc)s, servicePort: %(port)s}}
"""


def clone(name="a", host="h.example.com", svc="svc-a", port="http") -> str:
    return GOOD % {"name": name, "host": host, "svc": svc, "port": port}


def test_ports_as_number_digit_string_or_http(tmp_path: Path):
    (tmp_path / "r.yaml").write_text("---\n".join([
        clone("a", port="8080"), clone("b", svc="svc-b", port="'9090'"),
        clone("c", svc="svc-c", port="http")]))
    clones, rejected = load(tmp_path)
    table, unresolved = file_table(clones, {})
    assert rejected == [] and unresolved == []
    assert [b.url for b in table.routes["h.example.com"]] == [
        "http://svc-a:8080", "http://svc-b:9090", "http://svc-c:80"]


def test_invalid_documents_are_skipped_with_file_name_and_reason(tmp_path: Path):
    (tmp_path / "mixed.yml").write_text("---\n".join([
        clone("ok"),
        "apiVersion: proxy.infra.doodle.com/v1beta1\nkind: RequestClone\n"
        "metadata: {name: nohost}\nspec: {backend: {serviceName: s, servicePort: 80}}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
        clone("badport", port="99999"),
        clone("named", port="grpc"),
    ]))
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    clones, rejected = load(tmp_path)
    table, unresolved = file_table(clones, {})
    reasons = {r.name: r.reason for r in rejected + unresolved}
    assert set(table.routes) == {"h.example.com"}
    assert "host" in reasons["nohost"]
    assert "99999" in reasons["badport"]
    assert "grpc" in reasons["default/named"]
    assert any(r.file.endswith("broken.yaml") for r in rejected)
    assert any(r.file.endswith("mixed.yml") for r in rejected)


def test_operator_logs_a_skipped_document_and_serves_the_rest(tmp_path, redis_url, store):
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "r.yaml").write_text(clone("good") + "---\n" + clone("bad", port="-1"))
    op = HookfanProcess(["operator", "--routes-dir", str(routes), "--redis-url", redis_url,
                         "--poll-interval", "100ms"], tmp_path, "operator").start()
    try:
        wait_until(lambda: store.load_routes() is not None, what="table published")
        assert set(store.load_routes().routes) == {"h.example.com"}
        wait_until(lambda: "RequestClone skipped" in op.log(), what="skip logged")
        line = next(json.loads(x) for x in op.log().splitlines() if "skipped" in x)
        assert line["requestclone"] == "bad" and line["file"].endswith("r.yaml") and line["reason"]
    finally:
        op.stop()
        print(op.log())


@pytest.mark.parametrize("change", ["add", "edit", "remove"])
def test_route_file_changes_take_effect_in_the_app_within_2s(tmp_path, redis_url, store,
                                                              make_backend, change):
    from tests.conftest import route_file
    from tests.stackfixtures import raw_send
    from tests.support.procs import Stack
    routes = tmp_path / "routes"
    routes.mkdir()
    a, b = make_backend(), make_backend()
    route_file(routes, "keep.example.com", [a], name="keep")
    if change != "add":
        route_file(routes, "moving.example.com", [a], name="moving")
    s = Stack(redis_url, routes, tmp_path / "logs")
    try:
        s.start_operator()
        s.start_app()
        wait_until(lambda: raw_send(s.url, "keep.example.com").status_code == 202,
                   what="app serving")
        start = time.monotonic()
        if change == "remove":
            (routes / "moving.yaml").unlink()
        else:
            route_file(routes, "moving.example.com", [a, b] if change == "edit" else [b],
                       name="moving")
        streak = [0]

        def effective() -> bool:
            resp = raw_send(s.url, "moving.example.com")
            if change == "remove":
                return resp.status_code == 503
            want = 2 if change == "edit" else 1
            return resp.status_code == 202 and resp.json()["deliveries"] == want

        def settled() -> bool:
            streak[0] = streak[0] + 1 if effective() else 0
            return streak[0] >= 4  # both gunicorn workers, twice each on average
        wait_until(settled, timeout=5, what=f"{change} visible")
        assert time.monotonic() - start < 2.0
    finally:
        s.stop()


def test_routes_command_prints_the_live_table(tmp_path, redis_url, store):
    from hookfan.routes import Backend, build_table
    store.publish_routes(build_table([("h.example.com", Backend("ns/a", "http://a:80"))], 0))
    out = subprocess.run([sys.executable, "-m", "hookfan.cli", "routes", "--redis-url",
                          redis_url, "--output", "json"], capture_output=True, text=True)
    assert out.returncode == 0
    assert json.loads(out.stdout)["routes"] == {
        "h.example.com": [{"route": "ns/a", "backend": "http://a:80"}]}
    text = subprocess.run([sys.executable, "-m", "hookfan.cli", "routes", "--redis-url",
                           redis_url], capture_output=True, text=True).stdout
    lines = text.splitlines()
    assert lines[0] == "version 1"
    assert lines[1].split() == ["HOST", "ROUTE", "BACKEND"]
    assert lines[3].split() == ["h.example.com", "ns/a", "http://a:80"]


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_operator_refuses_a_routes_dir_it_cannot_list(tmp_path, redis_url, store, kind):
    from hookfan.routes import Backend, build_table
    store.publish_routes(build_table([("live.example.com", Backend("ns/a", "http://a:80"))], 0))
    path = tmp_path / "nonexistent"
    if kind == "a file":
        path.write_text(clone())
    out = subprocess.run([sys.executable, "-m", "hookfan.cli", "operator", "--routes-dir",
                          str(path), "--redis-url", redis_url], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2, out.stderr
    assert str(path) in out.stderr and "--routes-dir" in out.stderr
    assert "Traceback" not in out.stderr
    assert set(store.load_routes().routes) == {"live.example.com"}


def test_file_source_empties_the_live_table_only_for_a_directory_without_requestclones(
        tmp_path, redis_url, store):
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "r.yaml").write_text(clone("good"))
    op = HookfanProcess(["operator", "--routes-dir", str(routes), "--redis-url", redis_url,
                         "--poll-interval", "50ms"], tmp_path, "operator").start()

    def hosts() -> set[str]:
        table = store.load_routes()
        return set() if table is None else set(table.routes)
    try:
        wait_until(lambda: hosts() == {"h.example.com"}, what="table published")
        routes.rename(tmp_path / "away")  # a ConfigMap unmounted, a volume gone
        wait_until(lambda: "routes directory unreadable" in op.log(), what="unreadable logged")
        assert hosts() == {"h.example.com"}
        (tmp_path / "away").rename(routes)
        (routes / "r.yaml").write_text(clone("bad", port="-1"))
        wait_until(lambda: "no RequestClone in the routes directory is usable" in op.log(),
                   what="unusable directory logged")
        assert hosts() == {"h.example.com"}
        (routes / "r.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
        wait_until(lambda: hosts() == set(), what="table emptied")
        warning = next(json.loads(x) for x in op.log().splitlines() if "holds no" in x)
        assert warning["level"] == "warning" and warning["hosts"] == 1
        assert op.proc.poll() is None
    finally:
        op.stop()
        print(op.log())
