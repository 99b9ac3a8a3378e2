"""The Flask app on its own (Flask's test client), against a real Redis."""

from hookfan import keys
from hookfan.app import create_app
from hookfan.config import IntakeSettings, Settings
from hookfan.routes import Backend, build_table


def test_create_app_accepts_and_stores_once(store):
    store.publish_routes(build_table([("h.example", Backend("ns/a", "http://a")),
                                      ("h.example", Backend("ns/b", "http://b"))], 0))
    app = create_app(Settings(intake=IntakeSettings(body_size_limit=100)), store=store)
    client = app.test_client()
    wake = store.r.pubsub(ignore_subscribe_messages=True)
    wake.subscribe(keys.WAKE)
    wake.get_message(timeout=1)  # the subscription's own confirmation
    resp = client.post("/x?y=1", data=b"hello", headers={"Host": "h.example"})
    assert resp.status_code == 202
    rid = resp.get_json()["id"]
    # The body once, in the request hash, with the number of copies still owed ...
    assert store.r.hget(f"hookfan:req:{rid}", "b") == b"hello"
    assert store.r.hget(f"hookfan:req:{rid}", "n") == b"2"
    # ... and one pending copy per backend, in that backend's ready queue, due now.
    for i, (url, route) in enumerate((("http://a", "ns/a"), ("http://b", "ns/b"))):
        (copy,) = store.pending(url)
        assert (copy.delivery_id, copy.backend, copy.attempts) == \
            (f"{rid}-{i}", Backend(route, url), 0)
        assert store.r.zscore(keys.ready(url), f"{rid}-{i}") is not None
        assert store.r.zscore(keys.DUE, url) is not None
    assert store.pending_count() == 2
    assert store.backend_urls() == ["http://a", "http://b"]
    # No Celery message: the intake only wakes the dispatchers.
    assert store.r.llen(keys.QUEUE) == 0
    assert wake.get_message(timeout=2) == {"type": "message", "pattern": None,
                                           "channel": keys.WAKE.encode(), "data": b"1"}
    wake.close()
    assert client.post("/", data=b"x" * 101, headers={"Host": "h.example"}).status_code == 413
    assert store.pending_count() == 2


def test_no_route_table_yet_is_503_with_retry_after(store):
    app = create_app(Settings(), store=store)
    resp = app.test_client().get("/", headers={"Host": "h.example"})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"]
    assert store.pending_count() == 0
