"""``hookfan deadletters``: list, stats, show, replay and purge, at the size of a real outage.

Every verb that selects takes the same filters (:data:`FILTERS`). Listing streams one
page at a time; replay and purge work in chunks of :data:`deadletters.CHUNK` ids per Redis
call, show a progress bar on a terminal (tqdm, on stderr; silent when it is not a TTY), and
stop cleanly on Ctrl-C: a chunk is one script, so it happened or it did not, and the summary
says how many.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import click
from tabulate import tabulate
from tqdm import tqdm

from hookfan.deadletters import DeadLetters, Group, Selection, chunks, parse_when
from hookfan.store import Store

WARN_ABOVE = 10_000
"""An unpaced replay of more than this many dead letters gets a warning."""
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(?:/(s|m|h))?$")


def parse_rate(text: str) -> float:
    """Copies per second from ``2000/s``, ``600/m``, ``100/h`` or ``50``; ValueError else."""
    m = _RATE.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"invalid rate {text!r} (write it like 200/s, 600/m or 100/h)")
    return float(m.group(1)) / {"s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]


FILTERS = (
    click.option("--route", metavar="NS/NAME", help="only this RequestClone's"),
    click.option("--backend", metavar="URL", help="only this backend URL's"),
    click.option("--reason", metavar="TEXT", help="only those whose last error contains TEXT"),
    click.option("--since", metavar="DURATION|TIME",
                 help="dead-lettered at or after (1h: an hour ago; or ISO 8601)"),
    click.option("--until", metavar="DURATION|TIME",
                 help="dead-lettered at or before (2d: two days ago; or ISO 8601)"),
    click.option("--limit", metavar="N", type=int, help="at most N, oldest first"),
)
"""The filters of every verb that selects."""


def rate_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Click callback for ``--rate``: copies per second, or None when not given."""
    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@dataclass(frozen=True)
class Verb:
    """One ``hookfan deadletters`` verb and its options."""

    action: str
    id: str | None = None
    all: bool = False
    dry_run: bool = False
    yes: bool = False
    """``purge --all`` without asking (it asks only when standard input is a terminal)."""
    rate: float | None = None
    output: str = "table"
    by: str = "route"
    body: bool = False
    filters: dict[str, Any] = field(default_factory=dict)
    """The :data:`FILTERS` as given (route, backend, reason, since, until, limit; None: not
    given), the fields of a :class:`Selection` before :func:`selection` parses the times."""

    @classmethod
    def of(cls, action: str, given: dict[str, Any]) -> Verb:
        """The verb from a command's options: its own fields, and the filters."""
        own = {f.name for f in fields(cls)}
        return cls(action=action, **{k: v for k, v in given.items() if k in own},
                   filters={k: v for k, v in given.items() if k not in own})

    @property
    def filtered(self) -> bool:
        return any(v is not None for v in self.filters.values())


def selection(args: Verb, now: float) -> Selection:
    """The filters given, with ``--until`` no later than ``now``: dead letters arriving while a
    verb runs are not selected. ValueError naming the fix on a bad value."""
    given = args.filters
    since = parse_when(given["since"], now) if given.get("since") else None
    until = min(parse_when(given["until"], now), now) if given.get("until") else now
    limit = given.get("limit")
    if limit is not None and limit <= 0:
        raise ValueError(f"--limit must be a positive integer, got {limit}")
    return Selection(**{**given, "since": since, "until": until})


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def run(store: Store, args: Verb) -> int:
    """The ``deadletters`` command; returns its exit code."""
    dead = store.dead
    if args.action == "show":
        return _show(store, args)
    if args.action in ("replay", "purge") and args.id:
        return _one(store, args)
    try:
        sel = selection(args, dead.now())
    except ValueError as exc:
        print(f"hookfan deadletters {args.action}: error: {exc}", file=sys.stderr)
        return 2
    if args.action == "list":
        return _list(dead, sel, args.output)
    if args.action == "stats":
        return _stats(dead.stats(sel, args.by), args.by, args.output)
    if not args.all and sel == Selection(until=sel.until):
        print(f"hookfan deadletters {args.action}: give one ID, --all, or filters "
              "(--route, --backend, --reason, --since, --until, --limit)", file=sys.stderr)
        return 2
    return _bulk(dead, sel, args)


LIST_HEADERS = ["ID", "ROUTE", "BACKEND", "ATTEMPTS", "DEAD AT", "LAST ERROR"]
TABLE_PAGE = 500
"""Rows per table block of ``list``: columns are aligned within a block, so memory stays
flat however many dead letters are listed (a long listing's column widths may change
between blocks)."""


def table(headers: list[str] | None, rows: list[list[Any]]) -> str:
    """Rows aligned in columns under ``headers`` (none: rows only), for people to read;
    scripts use ``--output json``."""
    return tabulate(rows, headers or (), tablefmt="simple" if headers else "plain",
                    disable_numparse=True)


def _list(dead: DeadLetters, sel: Selection, output: str) -> int:
    if output == "json":
        print("[")
    first = True
    for page in chunks(dead.select(sel), TABLE_PAGE if output == "table" else 100):
        summaries = [letter.summary() for letter in dead.letters(page)]
        if not summaries:
            continue
        if output == "table":
            print(table(LIST_HEADERS if first else None, [
                [r["id"], r["route"], r["backend"], r["attempts"], when(r["dead_at"]),
                 r["last_error"]] for r in summaries]))
        elif output == "jsonl":
            print("\n".join(json.dumps(r) for r in summaries))
        else:
            print("\n".join(("  " if first and i == 0 else ", ") + json.dumps(r)
                            for i, r in enumerate(summaries)))
        first = False
    if output == "json":
        print("]")
    return 0


def _stats(groups: list[Group], by: str, output: str) -> int:
    if output == "json":
        print(json.dumps([{by: g.key, "count": g.count, "oldest": g.oldest,
                           "newest": g.newest} for g in groups], indent=2))
        return 0
    rows = [[g.key, g.count, when(g.oldest), when(g.newest)] for g in groups]
    rows.append(["total", sum(g.count for g in groups), "", ""])
    print(table([by.upper(), "COUNT", "OLDEST", "NEWEST"], rows))
    return 0


def _show(store: Store, args: Verb) -> int:
    info = store.dead_letter_info(args.id or "")
    if info is None:
        print(f"no dead letter {args.id!r}", file=sys.stderr)
        return 1
    letter, req = info
    out: dict[str, Any] = letter.summary()
    out["uri"] = req.uri
    out["header_names"] = [n for n, _ in req.headers]
    if args.body:
        out["body"] = req.body.decode("utf-8", errors="backslashreplace")
    print(json.dumps(out, indent=2))
    return 0


def _one(store: Store, args: Verb) -> int:
    delivery_id = args.id or ""
    if args.dry_run:
        done = store.dead_letter(delivery_id) is not None
        print(f"would {args.action} {int(done)} dead letter(s)")
    else:
        done = (store.replay(delivery_id) if args.action == "replay"
                else store.purge(delivery_id))
        print(f"{'replayed' if args.action == 'replay' else 'purged'} {int(done)} "
              "dead letter(s)")
    if not done:
        print(f"no dead letter {args.id!r}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def interruptible() -> Iterator[threading.Event]:
    """An Event set by Ctrl-C (SIGINT) instead of a KeyboardInterrupt in the middle of a
    Redis call, so a chunk's answer is never lost."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _bulk(dead: DeadLetters, sel: Selection, args: Verb) -> int:
    verb = args.action
    rate = args.rate
    total = dead.count(sel)
    if args.dry_run:
        print(f"would {verb} {total} dead letter(s)")
        return _stats(dead.stats(sel, "route"), "route", "table") if total else 0
    if verb == "purge" and args.all and not args.yes and total and sys.stdin.isatty() and \
            not click.confirm(f"Purge all {total} dead letters? They cannot be replayed "
                              "afterwards", err=True):
        print("nothing purged", file=sys.stderr)
        return 1
    if verb == "replay" and rate is None and total > WARN_ABOVE:
        print(f"warning: replaying {total} dead letters at once; a backend that has just "
              "recovered may fail again under them (pace it with --rate, e.g. --rate 100/s)",
              file=sys.stderr)
    act: Callable[[list[Any]], int]
    if verb == "replay":
        gap, following = (1 / rate if rate else 0.0), [0]

        def act(chunk: list[Any]) -> int:
            # each chunk's copies become due after the previous chunk's: one even pace
            done, following[0] = dead.replay(chunk, gap, following[0])
            return done
    else:
        def act(chunk: list[Any]) -> int:
            return sum(dead.purge(chunk).values())
    done, stopped = _paced(dead, sel, act, total, rate, verb)
    past = "replayed" if verb == "replay" else "purged"
    if stopped:
        print(f"interrupted: {past} {done} of {total} selected dead letter(s); the others "
              "are still dead letters")
        return 130
    print(f"{past} {done} dead letter(s)")
    return 0


def _paced(dead: DeadLetters, sel: Selection, act: Callable[[list[Any]], int], total: int,
           rate: float | None, verb: str) -> tuple[int, bool]:
    """Act on the selection chunk by chunk, at most ``rate`` copies a second (a chunk's copies
    are spread over its share of time by their due times, and the next chunk waits for its
    turn); returns (how many were acted on, whether Ctrl-C stopped it)."""
    done = 0
    with interruptible() as stop, tqdm(total=total, unit="copy", desc=verb, file=sys.stderr,
                                       disable=not sys.stderr.isatty()) as bar:
        turn = time.monotonic()
        for chunk in chunks(dead.select(replace(sel, limit=total))):
            if rate and stop.wait(max(0.0, turn - time.monotonic())):
                break
            if stop.is_set():
                break
            began = time.monotonic()
            n = act(chunk)
            turn = began + n / rate if rate else began
            done += n
            bar.update(n)
        else:
            if rate:  # the last chunk's copies become due over its share of time
                stop.wait(max(0.0, turn - time.monotonic()))
            return done, False
    return done, True
