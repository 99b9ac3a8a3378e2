"""The dead-letter verbs against 200,000 dead letters over 48 hours, across 3 routes and 2
reasons (every 25th a 404, the rest past their retry age): issue 14's acceptance."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import time
import tracemalloc
from collections import Counter

import pytest

from hookfan import cli
from tests.deadletters.conftest import COUNT, DeadStore
from tests.deadletters.seed import ROUTES, url_of
from tests.support.procs import wait_until

HOUR_MS = 3600 * 1000


def test_list_by_route_answers_from_the_first_page_without_reading_a_body(dl: DeadStore,
                                                                           capsys):
    code, out, _ = dl.run(capsys, "list", "--route", "shop/refunds", "--limit", "50",
                          "--output", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == dl.seeded.select(route="shop/refunds")[:50]
    assert {r["route"] for r in rows} == {"shop/refunds"}
    assert all(r["body_bytes"] == 10 + int(r["id"][1:8]) % 50 for r in rows)
    assert dl.calls("evalsha") == 1  # one page of the selection
    assert dl.calls("hgetall") == 0 and dl.calls("hstrlen") == 0  # no body, no size read


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_list_table_has_headers_and_columns_and_json_stays_an_array(dl: DeadStore, capsys):
    _, text, _ = dl.run(capsys, "list", "--reason", "404", "--limit", "3")
    first = dl.seeded.select(reason="404")[0]
    lines = text.splitlines()
    assert columns(lines[0]) == ["ID", "ROUTE", "BACKEND", "ATTEMPTS", "DEAD AT", "LAST ERROR"]
    assert set(lines[1]) <= {"-", " "}
    cols = columns(lines[2])
    assert cols[:4] == [first, "shop/orders", url_of("shop/orders"), "3"]
    assert cols[5] == "HTTP 404 is not retryable" and len(lines) == 2 + 3
    _, out, _ = dl.run(capsys, "list", "--backend", url_of("billing/invoices"), "--limit", "4",
                       "--output", "json")
    rows = json.loads(out)
    assert [r["id"] for r in rows] == dl.seeded.select(route="billing/invoices")[:4]


def test_stats_counts_oldest_and_newest_per_route_and_reason(dl: DeadStore, capsys):
    code, out, _ = dl.run(capsys, "stats", "--output", "json")
    assert code == 0
    got = {g["route"]: g for g in json.loads(out)}
    assert set(got) == set(ROUTES)
    for route in ROUTES:
        ids = dl.seeded.select(route=route)
        times = [dl.seeded.dead_at[d] / 1000 for d in ids]
        assert got[route]["count"] == len(ids)
        assert got[route]["oldest"] == min(times) and got[route]["newest"] == max(times)
    _, out, _ = dl.run(capsys, "stats", "--by", "reason", "--output", "json")
    assert {g["reason"]: g["count"] for g in json.loads(out)} == {
        "HTTP 404 is not retryable": COUNT // 25, "MaxRetryAgeExceeded": COUNT - COUNT // 25}
    _, text, _ = dl.run(capsys, "stats", "--by", "backend", "--reason", "404")
    assert columns(text.splitlines()[0]) == ["BACKEND", "COUNT", "OLDEST", "NEWEST"]
    assert columns(text.splitlines()[-1]) == ["total", f"{COUNT // 25}"]


def test_paced_replay_replays_exactly_the_selected_ones_at_the_asked_pace(dl: DeadStore,
                                                                          capsys):
    selected = dl.seeded.select(reason="404")
    rate = 2000.0
    started = time.monotonic()
    code, out, err = dl.run(capsys, "replay", "--reason", "404", "--rate", "2000/s")
    took = time.monotonic() - started
    assert code == 0 and out.strip() == f"replayed {len(selected)} dead letter(s)"
    assert "warning" not in err
    assert dl.dead() == set(dl.seeded.ids) - set(selected)
    due: dict[str, float] = {}
    for route in ROUTES:
        due.update({d.decode(): s for d, s in
                    dl.r.zrange(f"hookfan:q:{url_of(route)}", 0, -1, withscores=True)})
        assert dl.r.hlen(f"hookfan:c:{url_of(route)}") == len(dl.seeded.select(route, "404"))
    assert set(due) == set(selected)
    # The pace: the copies became due over (n - 1) / rate seconds of Redis's clock, and the
    # command took at least that long (8,000 copies at 2,000/s: 4 s, within 20 %).
    span = (max(due.values()) - min(due.values())) / 1000
    expected = (len(selected) - 1) / rate
    assert 0.8 * expected <= span <= 1.2 * expected, span
    assert took >= 0.8 * expected
    # and evenly, copy after copy (2 a millisecond), not a chunk of 500 at a time
    assert max(Counter(due.values()).values()) <= 3
    # chunked: one script call per 500 replayed, a few page reads; never one call per id
    assert dl.calls("evalsha") <= len(selected) // 500 + 2 * COUNT // 5000 + 4


def test_unpaced_replay_of_many_warns(dl: DeadStore, capsys):
    code, out, err = dl.run(capsys, "replay", "--route", "shop/orders", "--limit", "10001")
    assert code == 0 and out.strip() == "replayed 10001 dead letter(s)"
    assert "warning: replaying 10001 dead letters at once" in err and "--rate" in err
    code, out, err = dl.run(capsys, "replay", "--route", "shop/orders", "--limit", "10000")
    assert code == 0 and "warning" not in err


def test_purge_since_an_hour_removes_only_those_and_their_bodies(dl: DeadStore, capsys):
    before = dl.now_ms()
    code, out, _ = dl.run(capsys, "purge", "--since", "1h")
    after = dl.now_ms()
    purged = set(dl.seeded.ids) - dl.dead()
    # the hour is counted back from the command's own Redis time, between before and after
    assert set(dl.seeded.select(since_ms=after - HOUR_MS)) <= purged
    assert purged <= set(dl.seeded.select(since_ms=before - HOUR_MS))
    assert code == 0 and out.strip() == f"purged {len(purged)} dead letter(s)"
    assert 4000 < len(purged) < 4300
    pipe = dl.r.pipeline()
    for d in dl.seeded.ids:
        pipe.exists(f"hookfan:req:{d[:-2]}")
    stored = {d for d, e in zip(dl.seeded.ids, pipe.execute(), strict=True) if e}
    assert stored == dl.dead()
    counts = {k.decode(): int(v) for k, v in dl.r.hgetall("hookfan:dlcount").items()}
    assert sum(counts.values()) == COUNT - len(purged)
    assert dl.calls("evalsha") <= len(purged) // 500 + 2 * len(purged) // 1000 + 4


def test_dry_run_says_what_would_go_and_changes_nothing(dl: DeadStore, capsys):
    code, out, _ = dl.run(capsys, "purge", "--route", "shop/orders", "--reason", "404",
                          "--dry-run")
    n = len(dl.seeded.select("shop/orders", "404"))
    assert code == 0 and out.splitlines()[0] == f"would purge {n} dead letter(s)"
    assert [columns(line)[:2] for line in out.splitlines()[3:-1]] == [["shop/orders", f"{n}"]]
    assert len(dl.dead()) == COUNT
    one = dl.seeded.ids[5]
    assert dl.run(capsys, "purge", one, "--dry-run")[:2] == (0, "would purge 1 dead letter(s)\n")
    assert dl.run(capsys, "replay", one, "--dry-run")[:2] == (0, "would replay 1 dead letter(s)\n")
    assert len(dl.dead()) == COUNT


def test_progress_bar_on_a_terminal_and_none_when_piped(dl: DeadStore):
    args = ("purge", "--route", "shop/orders", "--limit", "2000")
    primary, secondary = pty.openpty()
    # a terminal 100 columns wide (a fresh pseudo-terminal has no size at all)
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = dl.spawn(*args, stdout=secondary, stderr=secondary)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    text = shown.decode()
    assert re.search(r"purge: 100%\|.*\| 2000/2000 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+k?copy/s\]",
                     text), text
    piped = dl.spawn("purge", "--route", "shop/orders", "--limit", "2000",
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = piped.communicate(timeout=60)
    assert piped.returncode == 0 and out.decode().strip() == "purged 2000 dead letter(s)"
    assert err == b""


@pytest.mark.parametrize("answer", [b"n\n", b"y\n"])
def test_purge_all_asks_first_on_a_terminal(dl: DeadStore, answer: bytes):
    primary, secondary = pty.openpty()
    os.write(primary, answer)
    proc = dl.spawn("purge", "--all", stdin=secondary, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    os.close(secondary)
    out, err = proc.communicate(timeout=120)
    os.close(primary)
    assert f"Purge all {COUNT} dead letters?" in err.decode()
    if answer == b"n\n":
        assert proc.returncode == 1 and "nothing purged" in err.decode()
        assert len(dl.dead()) == COUNT
    else:
        assert proc.returncode == 0 and out.decode().strip() == f"purged {COUNT} dead letter(s)"
        assert dl.dead() == set()


def test_purge_all_with_yes_or_without_a_terminal_asks_nothing(dl: DeadStore):
    primary, secondary = pty.openpty()
    proc = dl.spawn("purge", "--all", "--yes", "--limit", "10", stdin=secondary,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(secondary)
    out, err = proc.communicate(timeout=60)
    os.close(primary)
    assert proc.returncode == 0 and err == b"" and "purged 10" in out.decode()
    piped = dl.spawn("purge", "--all", "--limit", "10", stdin=subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = piped.communicate(timeout=60)
    assert piped.returncode == 0 and err == b"" and "purged 10" in out.decode()
    assert len(dl.dead()) == COUNT - 20


def test_ctrl_c_stops_a_replay_cleanly_and_says_how_many(dl: DeadStore):
    selected = set(dl.seeded.select(reason="404"))
    proc = dl.spawn("replay", "--reason", "404", "--rate", "1000/s", stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    wait_until(lambda: dl.r.zcard("hookfan:dead") <= COUNT - 500, timeout=60,
               what="the first chunk replayed")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    replayed = selected - dl.dead()
    assert 500 <= len(replayed) < len(selected)
    assert out.decode().strip() == (f"interrupted: replayed {len(replayed)} of {len(selected)} "
                                    "selected dead letter(s); the others are still dead "
                                    "letters")
    queued = sum(dl.r.zcard(f"hookfan:q:{url_of(r)}") for r in ROUTES)
    assert queued == len(replayed) and len(dl.dead()) == COUNT - len(replayed)


def test_list_streams_page_by_page_in_flat_memory(dl: DeadStore):
    """10,000 rows listed (10 pages) are never held at once: the peak of what Python
    allocated stays near one page's worth (under 1 MB here), where holding the 10,000
    selected records alone peaks above 5 MB."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        tracemalloc.start()
        try:
            code = cli.main(["deadletters", "list", "--limit", "10000", "--output", "jsonl",
                             "--redis-url", dl.url])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert code == 0
    assert dl.calls("evalsha") >= 10  # it did walk the pages
    assert peak < 2.5 * 1024 * 1024, peak
