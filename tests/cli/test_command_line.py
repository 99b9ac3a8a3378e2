"""The command line on Click: per-command flags, shown defaults, switches, Go durations,
``--version``, and one line naming the flag (exit 2, no traceback) for anything wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hookfan import cli
from hookfan.config import SettingsError

WORKER_ONLY = ("--delivery-timeout", "--concurrency", "--task-events", "--delivery-batch",
               "--backend-concurrency", "--max-retry-age", "--dead-letter-retention")


def help_of(capsys, *command: str) -> str:
    assert cli.main([*command, "--help"]) == 0
    return capsys.readouterr().out


def test_app_help_lists_no_worker_flags_yet_old_app_command_lines_still_run(capsys):
    text = help_of(capsys, "app")
    assert "--http-addr" in text and "--allow-unsafe-redis" in text
    for flag in WORKER_ONLY:
        assert flag not in text, flag
    assert "--lease" not in help_of(capsys, "worker")  # removed: accepted only to say so
    # config/manager and older charts pass delivery flags to the app too.
    resolved = cli.resolve(["app", "--delivery-timeout=10s", "--min-retry-delay=750ms"], {})
    assert resolved.command == "app"


def test_operator_help_lists_the_retry_delays_it_uses_and_no_other_delivery_flag(capsys):
    text = help_of(capsys, "operator")
    assert "--min-retry-delay" in text and "--max-retry-delay" in text
    assert "--routes-dir" in text and "--enable-leader-election" in text
    for flag in WORKER_ONLY:
        assert flag not in text, flag


def test_help_shows_defaults_as_written_and_the_variable(capsys):
    text = " ".join(help_of(capsys, "worker").split())
    assert "--min-retry-delay DURATION" in text
    assert "HOOKFAN_MIN_RETRY_DELAY; default: 750ms]" in text
    assert "HOOKFAN_DEAD_LETTER_RETENTION; default: 14d]" in text
    assert "--task-events / --no-task-events" in text
    assert "HOOKFAN_TASK_EVENTS; default: false]" in text
    text = " ".join(help_of(capsys, "app").split())
    assert "HOOKFAN_HTTP_ADDR; default: :8080]" in text


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "hookfan 0.1.0"


@pytest.mark.parametrize(("args", "expected"), [
    (["--task-events"], True), (["--no-task-events"], False),
    (["--task-events", "true"], True), (["--task-events=false"], False),
    (["--task-events", "yes"], True), (["--task-events=0"], False),
])
def test_switches_take_the_new_and_the_old_spellings(args, expected):
    assert cli.resolve(["worker", *args], {}).settings.delivery.task_events is expected


def test_a_switch_read_from_the_environment():
    env = {"HOOKFAN_WATCH_ALL_NAMESPACES": "false", "HOOKFAN_ENABLE_LEADER_ELECTION": "1"}
    operator = cli.resolve(["operator"], env).settings.operator
    assert operator.watch_all_namespaces is False and operator.enable_leader_election is True
    assert cli.resolve(["operator", "--watch-all-namespaces"], env).settings.operator \
        .watch_all_namespaces is True  # the command line wins


@pytest.mark.parametrize(("text", "seconds"), [
    ("1h30m", 5400.0), ("90s", 90.0), ("1.5s", 1.5), ("750ms", 0.75), ("2h45m30s", 9930.0),
])
def test_durations_are_written_as_in_go(text, seconds):
    settings = cli.resolve(["worker", "--max-retry-age", text], {}).settings
    assert settings.delivery.max_retry_age == pytest.approx(seconds)


def test_a_flag_on_deadletters_before_its_verb_counts_unless_the_verb_gives_it_again():
    url = cli.resolve(["deadletters", "--redis-url", "redis://a/0", "list"],
                      {"HOOKFAN_REDIS_URL": "redis://env/0"}).settings.redis.url
    assert url == "redis://a/0"
    url = cli.resolve(["deadletters", "--redis-url", "redis://a/0", "list", "--redis-url",
                       "redis://b/0"], {}).settings.redis.url
    assert url == "redis://b/0"
    assert cli.resolve(["deadletters", "list"], {"HOOKFAN_REDIS_URL": "redis://env/0"}) \
        .settings.redis.url == "redis://env/0"


@pytest.mark.parametrize(("argv", "env", "named"), [
    (["app", "--no-such-flag"], {}, "--no-such-flag"),
    (["worker", "--concurrency", "many"], {}, "--concurrency"),
    (["worker", "--delivery-timeout", "10"], {}, "--delivery-timeout"),
    (["worker", "--task-events=maybe"], {}, "--task-events"),
    (["worker"], {"HOOKFAN_CONCURRENCY": "many"}, "HOOKFAN_CONCURRENCY"),
    (["worker", "--min-retry-delay", "2m", "--max-retry-delay", "1m"], {}, "--min-retry-delay"),
    (["nosuchcommand"], {}, "nosuchcommand"),
])
def test_anything_wrong_is_one_error_naming_it_with_exit_2_and_no_traceback(argv, env, named):
    out = subprocess.run([sys.executable, "-m", "hookfan.cli", *argv], capture_output=True,
                         text=True, timeout=30, env={"PATH": "/usr/bin:/bin", **env})
    assert out.returncode == 2, out.stderr
    assert named in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(SettingsError, match=named):
        cli.resolve(argv, env)


def test_no_command_prints_the_commands_and_exits_2(capsys):
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    assert "deadletters" in captured.err + captured.out
