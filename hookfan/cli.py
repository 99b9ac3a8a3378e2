"""``hookfan``: one command line for every process and the operator's tools."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from hookfan import config, logs, tracing
from hookfan.config import COMMON, DELIVERY, INTAKE, OPERATOR, SERVING, Flag, Settings
from hookfan.store import Store, connect

Handler = Callable[[Settings, argparse.Namespace], int]
COMMANDS: dict[str, tuple[tuple[Flag, ...], Handler, str]] = {}


def command(name: str, flags: tuple[Flag, ...], help: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = (COMMON + flags, fn, help)
        return fn
    return register


def _store(settings: Settings) -> Store:
    return Store(connect(settings.redis))


@command("app", INTAKE + DELIVERY + SERVING, "run the intake (Flask under gunicorn)")
def _app(settings: Settings, args: argparse.Namespace) -> int:
    from hookfan.app.server import run
    run(settings)
    return 0


@command("worker", DELIVERY + SERVING, "run a delivery worker (Celery)")
def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from hookfan.worker.celeryapp import run
    return run(settings)


@command("operator", OPERATOR + DELIVERY + SERVING, "publish RequestClones as the route table")
def _operator(settings: Settings, args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if settings.operator.routes_dir is None:
        import os

        from hookfan.operator import kubeclient, kubesource
        kubeconfig = settings.operator.kubeconfig or os.environ.get("KUBECONFIG") or None
        namespace = kubesource.own_namespace(os.environ, kubeclient.SA_NAMESPACE_FILE)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                kubesource.run(settings, _store(settings), stop, kubeconfig, namespace)
        except kubeclient.KubeConfigError as exc:
            print(f"hookfan operator: error: {exc}", file=sys.stderr)
            return 2
        return 0
    from hookfan.operator.filesource import run
    with contextlib.suppress(KeyboardInterrupt):
        run(settings, _store(settings), stop)
    return 0


def _routes_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", choices=("table", "json"), default="table")


@command("routes", (), "print the live route table")
def _routes(settings: Settings, args: argparse.Namespace) -> int:
    table = _store(settings).load_routes()
    if table is None:
        print("no route table published yet: is the operator running?", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps({"version": table.version, "routes": {
            h: [{"route": b.route, "backend": b.url} for b in bs]
            for h, bs in table.routes.items()}}, indent=2))
        return 0
    print(f"version {table.version}")
    for host, backends in table.routes.items():
        for b in backends:
            print(f"{host}\t{b.route}\t{b.url}")
    return 0


def _dl_setup(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="list dead letters (no bodies)")
    config.add_flags(ls, COMMON, nested=True)
    ls.add_argument("--output", choices=("table", "json"), default="table")
    show = sub.add_parser("show", help="show one dead letter")
    show.add_argument("id")
    config.add_flags(show, COMMON, nested=True)
    show.add_argument("--body", action="store_true", help="also print the body (sensitive)")
    for action in ("replay", "purge"):
        a = sub.add_parser(action, help=f"{action} one dead letter, or all with --all")
        a.add_argument("id", nargs="?")
        a.add_argument("--all", action="store_true")
        config.add_flags(a, COMMON, nested=True)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@command("deadletters", (), "list, show, replay or purge dead letters")
def _deadletters(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    if args.action == "list":
        rows = [info[0].summary() for d in store.dead_ids()
                if (info := store.dead_letter_info(d)) is not None]
        if args.output == "json":
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(f"{r['id']}\t{r['route']}\t{r['backend']}\t{r['attempts']}\t"
                      f"{_when(r['dead_at'])}\t{r['last_error']}")
        return 0
    if args.action == "show":
        info = store.dead_letter_info(args.id)
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
    return _bulk(store, args)


def _bulk(store: Store, args: argparse.Namespace) -> int:
    if bool(args.id) == bool(args.all):
        print(f"hookfan deadletters {args.action}: give one ID or --all", file=sys.stderr)
        return 2
    ids = store.dead_ids() if args.all else [args.id]
    act = store.replay if args.action == "replay" else store.purge
    done = sum(1 for d in ids if act(d))
    print(f"{'replayed' if args.action == 'replay' else 'purged'} {done} dead letter(s)")
    if not args.all and done == 0:
        print(f"no dead letter {args.id!r}", file=sys.stderr)
        return 1
    return 0


def _echo_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")


@command("echo", (), "a demo backend that prints every request it receives")
def _echo(settings: Settings, args: argparse.Namespace) -> int:
    from hookfan.devstack import serve_echo
    serve_echo(args.host, args.port)
    return 0


def _dev_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=".hookfan-dev", help="embedded Redis data (AOF)")
    p.add_argument("--routes-dir", default="examples/routes")
    p.add_argument("--flower", action="store_true", help="also run Flower on :5555")


@command("dev", (Flag("http-addr", "intake.http_addr", config.parse_addr, "intake address"),),
         "the whole stack on an embedded Redis, with demo backends")
def _dev(settings: Settings, args: argparse.Namespace) -> int:
    from hookfan.devstack import run_dev
    return run_dev(settings, args.data_dir, args.routes_dir, args.flower)


SETUP: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "routes": _routes_setup, "deadletters": _dl_setup, "echo": _echo_setup, "dev": _dev_setup}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hookfan", description="Durable webhook fan-out proxy.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (flags, _, help) in COMMANDS.items():
        sp = sub.add_parser(name, help=help, description=help)
        config.add_flags(sp, flags)
        if name in SETUP:
            SETUP[name](sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    flags, handler, _ = COMMANDS[args.command]
    try:
        settings = config.build(flags, vars(args))
        tracing.require(settings.otel)
    except config.SettingsError as exc:
        print(f"hookfan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log.level, settings.log.encoding)
    try:
        return handler(settings, args)
    except config.SettingsError as exc:  # found while starting: a --metrics-addr in use, say
        print(f"hookfan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"hookfan {args.command}: error: cannot reach Redis at "
              f"{config.mask_url(settings.redis.url)} ({type(exc).__name__}); "
              "check --redis-url", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
