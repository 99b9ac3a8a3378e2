from hookfan.envelope import StoredRequest, forward_headers


def req(headers):
    return StoredRequest("POST", "/hook?a=1", tuple(headers), b"x", "10.0.0.9", 1.0, "h.example")


def test_hop_by_hop_and_connection_named_headers_are_dropped():
    out = forward_headers(req([("Connection", "keep-alive, X-Private"), ("X-Private", "1"),
                               ("Keep-Alive", "5"), ("Transfer-Encoding", "chunked"),
                               ("X-Sig", "abc")]), "r", "r-0", 1)
    names = [n for n, _ in out]
    assert "X-Private" not in names and "Keep-Alive" not in names
    assert "Transfer-Encoding" not in names and "Connection" not in names
    assert ("X-Sig", "abc") in out


def test_repeated_headers_keep_their_order():
    out = forward_headers(req([("X-A", "1"), ("X-B", "2"), ("X-A", "3")]), "r", "r-0", 1)
    assert [(n, v) for n, v in out if n.startswith("X-A") or n == "X-B"] == [
        ("X-A", "1"), ("X-B", "2"), ("X-A", "3")]


def test_forwarding_headers_and_ids_are_added():
    out = dict(forward_headers(req([("X-Forwarded-For", "1.2.3.4")]), "r", "r-1", 4))
    assert out["X-Forwarded-For"] == "1.2.3.4, 10.0.0.9"
    assert out["X-Forwarded-Host"] == "h.example"
    assert out["X-Hookfan-Delivery"] == "r-1"
    assert out["X-Hookfan-Attempt"] == "4"


def test_hop_by_hop_names_spelled_with_underscores_are_dropped_too():
    out = forward_headers(req([("Transfer_Encoding", "chunked"), ("Content_Length", "5"),
                               ("Keep_Alive", "1"), ("X_Custom", "kept")]), "r", "r-0", 1)
    names = [n for n, _ in out]
    assert "Transfer_Encoding" not in names and "Content_Length" not in names
    assert "Keep_Alive" not in names and ("X_Custom", "kept") in out
