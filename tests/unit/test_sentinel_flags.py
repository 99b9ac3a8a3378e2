"""``--redis-sentinel`` and ``--redis-sentinel-master``: every command that talks to Redis takes
them (and their ``HOOKFAN_*`` variables); one without the other is an error naming the
missing one, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hookfan import cli
from hookfan.config import RedisSettings, SettingsError

REDIS_COMMANDS = ["app", "worker", "operator", "routes", "deadletters list",
                  "deadletters stats", "deadletters replay --all", "deadletters purge --all"]


@pytest.mark.parametrize("command", REDIS_COMMANDS)
def test_every_redis_command_takes_the_sentinel_flags(command):
    settings = cli.resolve([*command.split(), "--redis-sentinel", "s1:26379, s2:26380",
                            "--redis-sentinel-master", "mymaster"], {}).settings.redis
    assert settings.sentinel == (("s1", 26379), ("s2", 26380))
    assert settings.sentinel_master == "mymaster"


def test_the_variables_set_them_and_the_command_line_wins():
    env = {"HOOKFAN_REDIS_SENTINEL": "[::1]:26379", "HOOKFAN_REDIS_SENTINEL_MASTER": "a"}
    r = cli.resolve(["worker"], env).settings.redis
    assert r.sentinel == (("::1", 26379),) and r.sentinel_master == "a"
    r = cli.resolve(["worker", "--redis-sentinel-master", "b"], env).settings.redis
    assert r.sentinel_master == "b"


def test_without_sentinel_flags_the_url_is_used_as_before():
    r = cli.resolve(["app", "--redis-url", "redis://h:6390/3"], {}).settings.redis
    assert r.sentinel == () and r.sentinel_master is None and r.where() == "redis://h:6390/3"


@pytest.mark.parametrize(("given", "missing"), [
    (["--redis-sentinel", "s1:26379"], "--redis-sentinel-master"),
    (["--redis-sentinel-master", "mymaster"], "--redis-sentinel"),
])
def test_one_without_the_other_names_the_missing_flag_with_exit_2(given, missing):
    out = subprocess.run([sys.executable, "-m", "hookfan.cli", "routes", *given],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert f"{missing} is missing" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(SettingsError, match=f"{missing} is missing"):
        cli.resolve(["app", *given], {})


@pytest.mark.parametrize("value", ["s1", "s1:", ":26379", "s1:99999", "s1:26379,s2", ","])
def test_a_bad_sentinel_address_names_the_flag(value):
    with pytest.raises(SettingsError, match="--redis-sentinel"):
        cli.resolve(["worker", "--redis-sentinel", value, "--redis-sentinel-master", "m"], {})


def test_a_unix_socket_url_cannot_go_with_sentinel():
    with pytest.raises(SettingsError, match="redis:// or rediss://"):
        cli.resolve(["app", "--redis-url", "unix:///tmp/redis.sock", "--redis-sentinel",
                     "s:1", "--redis-sentinel-master", "m"], {})


def test_messages_say_where_redis_is_without_the_password():
    r = RedisSettings(url="redis://:pw@h:1/0", sentinel=(("s1", 26379), ("s2", 1)),
                      sentinel_master="m")
    assert r.where() == "primary 'm' through Sentinel s1:26379,s2:1"
    assert "pw" not in RedisSettings(url="redis://:pw@h:1/0").where()


def test_help_says_the_url_host_is_not_used_with_sentinel(capsys):
    assert cli.main(["routes", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--redis-sentinel HOST:PORT,..." in text and "HOOKFAN_REDIS_SENTINEL_MASTER" in text
    assert "with --redis-sentinel its host:port are not used" in text


def test_the_celery_broker_goes_to_every_sentinel_with_the_urls_password_and_database(tmp_path):
    from hookfan.worker.celeryapp import celery_config
    secret = tmp_path / "password"
    secret.write_text("p@ss:w/rd\n")
    settings = cli.resolve(["worker", "--redis-url", "redis://ignored:1/4",
                            "--redis-password-file", str(secret), "--redis-sentinel",
                            "s1:26379,[fd00::1]:26380", "--redis-sentinel-master", "mymaster"],
                           {}).settings
    conf = celery_config(settings)
    assert conf["broker_url"] == ("sentinel://:p%40ss%3Aw%2Frd@s1:26379/4;"
                                  "sentinel://:p%40ss%3Aw%2Frd@[fd00::1]:26380/4")
    assert conf["broker_transport_options"] == {"master_name": "mymaster"}
    plain = celery_config(cli.resolve(["worker", "--redis-url", "redis://r:6379/2"], {})
                          .settings)
    assert plain["broker_url"] == "redis://r:6379/2" and plain["broker_transport_options"] == {}
