"""The Flask app on its own (Flask's test client), against a real Redis."""

from hookfan.app import create_app
from hookfan.config import IntakeSettings, Settings
from hookfan.routes import Backend, build_table


def test_create_app_accepts_and_stores_once(store):
    store.publish_routes(build_table([("h.example", Backend("ns/a", "http://a")),
                                      ("h.example", Backend("ns/b", "http://b"))], 0))
    app = create_app(Settings(intake=IntakeSettings(body_size_limit=100)), store=store)
    client = app.test_client()
    resp = client.post("/x?y=1", data=b"hello", headers={"Host": "h.example"})
    assert resp.status_code == 202
    rid = resp.get_json()["id"]
    assert store.r.hget(f"hookfan:req:{rid}", "b") == b"hello"
    assert store.r.hget(f"hookfan:req:{rid}", "n") == b"2"
    assert store.r.zcard("hookfan:schedule") == 2
    assert store.r.llen("hookfan.deliveries") == 2
    assert client.post("/", data=b"x" * 101, headers={"Host": "h.example"}).status_code == 413


def test_no_route_table_yet_is_503_with_retry_after(store):
    app = create_app(Settings(), store=store)
    resp = app.test_client().get("/", headers={"Host": "h.example"})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"]
