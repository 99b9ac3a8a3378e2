from hookfan.routes import Backend, RouteTable, build_table, match, normalize_host

A = Backend("apps/a", "http://a:80")
B = Backend("apps/b", "http://b:80")


def table() -> RouteTable:
    return build_table([("Webhook-Receiver.example.com", A), ("webhook-receiver.example.com", B),
                        ("webhook-receiver.example.com", B)], version=3)


def test_host_match_ignores_case_and_port():
    assert match(table(), "WEBHOOK-receiver.example.com:8080") == (A, B)


def test_match_is_exact_not_suffix_or_prefix():
    assert match(table(), "x.webhook-receiver.example.com") == ()
    assert match(table(), "webhook-receiver.example") == ()
    assert match(table(), "") == ()
    assert match(table(), None) == ()


def test_duplicate_backends_collapse():
    assert len(table().routes["webhook-receiver.example.com"]) == 2


def test_normalize_host_handles_ipv6_and_trailing_dot():
    assert normalize_host("[::1]:8080") == "[::1]"
    assert normalize_host("Example.COM.") == "example.com"


def test_table_round_trips_through_json():
    t = table()
    assert RouteTable.from_json(t.to_json()) == t
