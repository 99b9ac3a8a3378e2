"""The :class:`~hookfan.config.Flag` tables as Click options.

Each flag becomes ``--name`` reading ``HOOKFAN_NAME`` too, its default shown as a user would
write it, its value parsed by the flag's own parser (a bad one: Click's usage error naming the
flag, or the variable and the flag, exit 2). Switches are ``--x/--no-x``; the spellings users
have written before (``--x true``, ``--x=false``) still work. A flag a command keeps only so
old command lines still run is accepted and left out of its help.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from hookfan import config
from hookfan.config import Flag, Settings, assemble, env_name

F = TypeVar("F", bound=Callable[..., Any])

ENVIRON = "hookfan.environ"
"""Root ``Context.obj`` key of the environment to read ``HOOKFAN_*`` from (default: os.environ)."""
METAVAR: dict[Callable[[str], Any], str] = {
    config.parse_duration: "DURATION", config.parse_addr: "[HOST]:PORT",
    config.parse_positive_int: "N", config.parse_count: "N", config.parse_redis_url: "URL",
    config.parse_names: "NAME,...", config.parse_cidrs: "CIDR,...",
    config.parse_aliases: "NAME=HOST:PORT,...", config.parse_sentinels: "HOST:PORT,...",
}
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class FlagType(click.ParamType[Any]):
    """A value parsed by the flag's parser; its ValueError is Click's "Invalid value"."""

    def __init__(self, flag: Flag) -> None:
        self.flag = flag
        self.name = METAVAR.get(flag.parse, "[HOST]:PORT" if flag.name.endswith("-addr")
                                else "TEXT")

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.flag.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class FlagOption(click.Option):
    """An option for a :class:`Flag`: reads ``HOOKFAN_*`` from the context's environment
    (so :func:`hookfan.cli.resolve` can hand one in) and shows the default as written."""

    def __init__(self, *args: Any, flag: Flag, **kwargs: Any) -> None:
        self.flag = flag
        super().__init__(*args, **kwargs)

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        obj = ctx.find_root().obj
        environ: Mapping[str, str] = obj.get(ENVIRON, os.environ) if isinstance(
            obj, dict) else os.environ
        value = environ.get(env_name(self.flag.name))
        return value or None  # empty means unset, as Click reads variables

    def get_error_hint(self, ctx: click.Context | None) -> str:
        names = " / ".join(f"'{x}'" for x in self.opts)
        if ctx is not None and ctx.get_parameter_source(self.name or "") is \
                ParameterSource.ENVIRONMENT:
            return f"{names} (env var: '{env_name(self.flag.name)}')"
        return names

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        shown = self.flag.shown_default()
        if shown is not None:
            extra["default"] = shown
        else:
            extra.pop("default", None)
        return extra


def option(flag: Flag, hidden: bool = False) -> Callable[[F], F]:
    """The Click option for ``flag``; ``hidden``: accepted, not in ``--help``."""
    decls = [f"--{flag.name}/--no-{flag.name}" if flag.boolean else f"--{flag.name}",
             flag.name.replace("-", "_")]
    return click.option(*decls, cls=FlagOption, flag=flag, hidden=hidden or flag.hidden,
                        default=None,
                        show_default=True, show_envvar=True, envvar=env_name(flag.name),
                        help=flag.help, **({} if flag.boolean else {"type": FlagType(flag)}))


def options(flags: Sequence[Flag], kept: Sequence[Flag] = ()) -> Callable[[F], F]:
    """All of ``flags`` as options, and ``kept`` (flags old command lines may still give
    this command, which it does not use) accepted but hidden."""
    def apply(fn: F) -> F:
        for flag in reversed(list(flags)):
            fn = option(flag)(fn)
        for flag in kept:
            if flag not in flags:
                fn = option(flag, hidden=True)(fn)
        return fn
    return apply


def old_switches(args: Sequence[str], switches: Iterable[str]) -> list[str]:
    """``args`` with the older spellings of switches made Click's: ``--x true`` and
    ``--x=yes`` become ``--x``, ``--x false`` / ``--x=off`` become ``--no-x``. Anything else
    (a bad value included) is left for Click to judge."""
    names = {f"--{s}" for s in switches}
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        nxt = args[i + 1].lower() if i + 1 < len(args) else ""
        if name in names and eq and value.lower() in TRUE + FALSE:
            out.append(name if value.lower() in TRUE else f"--no-{name[2:]}")
        elif arg in names and nxt in TRUE + FALSE:
            out.append(arg if nxt in TRUE else f"--no-{arg[2:]}")
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


class FlagCommand(click.Command):
    """A command whose :class:`Flag` switches also take their older spellings."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        switches = [p.flag.name for p in self.params
                    if isinstance(p, FlagOption) and p.flag.boolean]
        return super().parse_args(ctx, old_switches(args, switches))


def settings(ctx: click.Context) -> Settings:
    """Settings from the flags given to this command and the groups above it: a flag on the
    command line wins over one on an enclosing group, which wins over ``HOOKFAN_*``."""
    rank = {ParameterSource.COMMANDLINE: 2, ParameterSource.ENVIRONMENT: 1}
    chosen: dict[Flag, tuple[int, Any]] = {}
    chain = []
    c: click.Context | None = ctx
    while c is not None:
        chain.append(c)
        c = c.parent
    for c in reversed(chain):  # outermost first: a command's own flags come last and win
        for param in c.command.params:
            if not isinstance(param, FlagOption) or c.params.get(param.name or "") is None:
                continue
            source = c.get_parameter_source(param.name or "")
            level = rank.get(source, 0) if source is not None else 0
            if level >= chosen.get(param.flag, (0, None))[0]:
                chosen[param.flag] = (level, c.params[param.name or ""])
    return assemble({flag: value for flag, (_, value) in chosen.items()})


def flag_names(ctx: click.Context) -> set[str]:
    """The parameter names of this command's :class:`FlagOption` s."""
    return {p.name or "" for p in ctx.command.params if isinstance(p, FlagOption)}
