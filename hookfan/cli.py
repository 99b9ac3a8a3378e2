"""``hookfan``: one command line for every process and the operator's tools (Click).

Every command takes only its own flags (see :mod:`hookfan.clickflags` for how the
:mod:`hookfan.config` tables become options); a flag an older command line may still give a
command that does not use it is accepted and left out of its help.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
import redis

from hookfan import backendtool, clickflags, config, dltool, keys, logs, tracing
from hookfan.clickflags import FlagCommand, options
from hookfan.config import (
    COMMON,
    DELIVERY,
    INTAKE,
    OPERATOR,
    PAUSING,
    RETENTION,
    SERVING,
    UNSAFE_REDIS,
    VERIFY_KEY,
    Flag,
    Settings,
)
from hookfan.store import Store, connect

Handler = Callable[[Settings, dict[str, Any]], int]
RESOLVE_ONLY = "hookfan.resolve_only"
"""Root context ``obj`` key: build the Settings, store them, run nothing (:func:`resolve`)."""
RETRY_DELAYS = tuple(f for f in DELIVERY if f.name in ("min-retry-delay", "max-retry-delay"))
"""The delivery flags the operator uses (its Kubernetes API retries back off between them)."""


@dataclass(frozen=True)
class Resolved:
    """What ``hookfan ARGV`` would run: the command, its Settings and its other options."""

    command: str
    settings: Settings
    options: dict[str, Any]


def _error(command: str, message: object, code: int) -> int:
    print(f"hookfan {command}: error: {message}", file=sys.stderr)
    return code


def _run(name: str, handler: Handler, ctx: click.Context, params: dict[str, Any]) -> int:
    """Build the Settings from the flags given, then run ``handler``; a bad value or a
    failure to start is one line naming the fix, never a traceback."""
    given = {k: v for k, v in params.items() if k not in clickflags.flag_names(ctx)}
    root = ctx.find_root().obj or {}
    if root.get(RESOLVE_ONLY):
        root["resolved"] = Resolved(name, clickflags.settings(ctx), given)
        return 0
    try:
        settings = clickflags.settings(ctx)
        tracing.require(settings.otel)
    except config.SettingsError as exc:
        return _error(name, exc, 2)
    logs.setup(settings.log.level, settings.log.encoding)
    try:
        return handler(settings, given)
    except config.SettingsError as exc:  # found while starting: a --metrics-addr in use, say
        return _error(name, exc, 2)
    except redis.RedisError as exc:
        flags = ("--redis-sentinel and --redis-sentinel-master" if settings.redis.sentinel
                 else "--redis-url")
        return _error(name, f"cannot reach Redis at {settings.redis.where()} "
                      f"({type(exc).__name__}); check {flags}", 1)


def command(group: click.Group, name: str, flags: Sequence[Flag], help: str,
            kept: Sequence[Flag] = ()) -> Callable[[Handler], click.Command]:
    """Register ``handler`` as ``name`` under ``group`` with ``flags`` (and ``kept`` hidden);
    options added with ``@click.option`` below this decorator come after them."""
    def register(handler: Handler) -> click.Command:
        @click.pass_context
        def callback(ctx: click.Context, /, **params: Any) -> int:
            return _run(ctx.command_path.split(" ", 1)[1], handler, ctx, params)
        callback.__doc__ = help
        extra = getattr(handler, "__click_params__", [])
        cmd = group.command(name, cls=FlagCommand, help=help)(
            options([*COMMON, *flags], kept)(callback))
        cmd.params.extend(reversed(extra))
        return cmd
    return register


@click.group(context_settings={"help_option_names": ["-h", "--help"],
                               "max_content_width": 100})
@click.version_option(package_name="hookfan", prog_name="hookfan",
                      message="%(prog)s %(version)s")
def hookfan() -> None:
    """Durable webhook fan-out proxy."""
    if keys.PREFIX_ERROR:
        raise click.UsageError(keys.PREFIX_ERROR)


def _store(settings: Settings) -> Store:
    return Store(connect(settings.redis), verify_key=settings.redis.verify_key())


@command(hookfan, "app", [*INTAKE, *VERIFY_KEY, *SERVING, *UNSAFE_REDIS],
         "Run the intake (Flask under gunicorn).", kept=DELIVERY)
def _app(settings: Settings, given: dict[str, Any]) -> int:
    from hookfan.app.server import run
    run(settings)
    return 0


@command(hookfan, "worker", [*DELIVERY, *RETENTION, *PAUSING, *SERVING, *UNSAFE_REDIS],
         "Run a delivery worker (Celery).")
def _worker(settings: Settings, given: dict[str, Any]) -> int:
    from hookfan.worker.celeryapp import run
    return run(settings)


@command(hookfan, "operator", [*OPERATOR, *VERIFY_KEY, *RETRY_DELAYS, *SERVING],
         "Publish RequestClones (Kubernetes or --routes-dir files) as the route table.",
         kept=DELIVERY)
def _operator(settings: Settings, given: dict[str, Any]) -> int:
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
            return _error("operator", exc, 2)
        return 0
    from hookfan.operator.filesource import run
    with contextlib.suppress(KeyboardInterrupt):
        run(settings, _store(settings), stop)
    return 0


@command(hookfan, "routes", [], "Print the live route table.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def _routes(settings: Settings, given: dict[str, Any]) -> int:
    table = _store(settings).load_routes()
    if table is None:
        print("no route table published yet: is the operator running?", file=sys.stderr)
        return 1
    if given["output"] == "json":
        print(json.dumps({"version": table.version, "routes": {
            h: [{"route": b.route, "backend": b.url} for b in bs]
            for h, bs in table.routes.items()}, "receivers": {
            p: {"route": r.route, "mode": r.mode, "timeout": r.timeout,
                "bodySizeLimit": r.body_limit, "suspended": r.suspended,
                "targets": [b.url for b in r.backends]}
            for p, r in table.receivers.items()}}, indent=2))
        return 0
    print(f"version {table.version}")
    print(dltool.table(["HOST", "ROUTE", "BACKEND"],
                       [[h, b.route, b.url] for h, bs in table.routes.items() for b in bs]))
    if table.receivers:
        print(dltool.table(["PATH", "ROUTE", "MODE", "TARGET"], [
            [p, r.route, r.mode + (" (suspended)" if r.suspended else ""), url]
            for p, r in table.receivers.items()
            for url in [b.url for b in r.backends] or ["(none ready)"]]))
    return 0


@hookfan.group("deadletters", cls=click.Group)
@options(COMMON)
def deadletters(**_: Any) -> None:
    """List, count, show, replay or purge dead letters."""


def _verb(action: str, given: dict[str, Any], settings: Settings) -> int:
    verb = dltool.Verb.of(action, given)
    if action in ("replay", "purge") and verb.id and (verb.all or verb.filtered):
        return _error(f"deadletters {action}", "give one ID, or --all / filters, not both", 2)
    return dltool.run(_store(settings), verb)


def filters(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(dltool.FILTERS):
        fn = option(fn)
    return fn


@command(deadletters, "list", [], "List dead letters, oldest first (no bodies).")
@filters
@click.option("--output", type=click.Choice(["table", "json", "jsonl"]), default="table",
              show_default=True)
def _dl_list(settings: Settings, given: dict[str, Any]) -> int:
    return _verb("list", given, settings)


@command(deadletters, "stats", [], "Count, oldest and newest dead letter per group.")
@filters
@click.option("--by", type=click.Choice(["route", "backend", "reason"]), default="route",
              show_default=True)
@click.option("--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def _dl_stats(settings: Settings, given: dict[str, Any]) -> int:
    return _verb("stats", given, settings)


@command(deadletters, "show", [], "Show one dead letter.")
@click.argument("id")
@click.option("--body", is_flag=True, help="also print the body (sensitive)")
def _dl_show(settings: Settings, given: dict[str, Any]) -> int:
    return _verb("show", given, settings)


def choice(done: str, every: str = "every dead letter") -> Callable[[Handler], Handler]:
    """What replay and purge select: one ID, --all (helped as ``every``) or the filters;
    and --dry-run, to say what would be ``done``."""
    def add(fn: Handler) -> Handler:
        fn = click.option("--dry-run", is_flag=True, help=f"say what would be {done}")(fn)
        fn = click.option("--all", is_flag=True, help=every)(filters(fn))
        return click.argument("id", required=False)(fn)
    return add


@command(deadletters, "replay", [],
         "Replay one dead letter, those the filters select, or all with --all.")
@choice("replayed")
@click.option("--rate", metavar="N/s", callback=dltool.rate_option,
              help="make at most N copies due again per second (also N/m, N/h); "
                   "default: all at once")
def _dl_replay(settings: Settings, given: dict[str, Any]) -> int:
    return _verb("replay", given, settings)


@command(deadletters, "purge", [],
         "Purge one dead letter, those the filters select, or all with --all.")
@choice("purged", "every dead letter (asks first on a terminal)")
@click.option("--yes", "-y", is_flag=True,
              help="purge --all without asking (it asks only on a terminal)")
def _dl_purge(settings: Settings, given: dict[str, Any]) -> int:
    return _verb("purge", given, settings)


@hookfan.group("backends", cls=click.Group)
@options(COMMON)
def backends(**_: Any) -> None:
    """List backends with their backlog; pause and resume their deliveries."""


@command(backends, "list", [], "Each backend: routes, policy, in flight, pending, oldest, "
         "paused, last error.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def _backends_list(settings: Settings, given: dict[str, Any]) -> int:
    return backendtool.run_list(_store(settings), given["output"])


def _pausing(action: str, settings: Settings, given: dict[str, Any]) -> int:
    return backendtool.run_pause(_store(settings), action, given["url"], given["route"])


def target(fn: Handler) -> Handler:
    fn = click.option("--route", metavar="NS/NAME", help="every backend of this route")(fn)
    return click.argument("url", required=False)(fn)


@command(backends, "pause", [], "Stop attempting a backend's copies (URL, or --route); they "
         "wait without ageing.")
@target
def _backends_pause(settings: Settings, given: dict[str, Any]) -> int:
    return _pausing("pause", settings, given)


@command(backends, "resume", [], "Attempt a paused backend's copies again (URL, or --route).")
@target
def _backends_resume(settings: Settings, given: dict[str, Any]) -> int:
    return _pausing("resume", settings, given)


@command(hookfan, "echo", [], "A demo backend that prints every request it receives.")
@click.option("--port", type=int, required=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def _echo(settings: Settings, given: dict[str, Any]) -> int:
    from hookfan.devstack import serve_echo
    serve_echo(given["host"], given["port"])
    return 0


@command(hookfan, "dev", [f for f in INTAKE if f.name == "http-addr"],
         "The whole stack on an embedded Redis, with demo backends.")
@click.option("--data-dir", default=".hookfan-dev", show_default=True,
              help="embedded Redis data (AOF)")
@click.option("--routes-dir", default="examples/routes", show_default=True)
@click.option("--flower", is_flag=True, help="also run Flower on :5555")
def _dev(settings: Settings, given: dict[str, Any]) -> int:
    from hookfan.devstack import run_dev
    return run_dev(settings, given["data_dir"], given["routes_dir"], given["flower"])


def resolve(argv: Sequence[str], environ: Mapping[str, str]) -> Resolved:
    """Parse ``argv`` with ``environ``'s ``HOOKFAN_*`` as :func:`main` does, without running
    anything. Raises SettingsError on a bad flag or value."""
    obj: dict[str, Any] = {RESOLVE_ONLY: True, clickflags.ENVIRON: environ}
    try:
        hookfan.main(list(argv), prog_name="hookfan", standalone_mode=False, obj=obj)
    except click.ClickException as exc:
        raise config.SettingsError(exc.format_message()) from None
    resolved: Resolved = obj["resolved"]
    return resolved


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hookfan ARGV``; returns the exit code (2: a bad flag or value)."""
    try:
        code = hookfan.main(None if argv is None else list(argv), prog_name="hookfan",
                            standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        print("Aborted!", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
