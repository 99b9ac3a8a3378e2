import pytest

from hookfan import config
from hookfan.config import COMMON, DELIVERY, INTAKE, SettingsError


def test_durations_parse_as_in_the_original():
    assert config.parse_duration("750ms") == pytest.approx(0.75)
    assert config.parse_duration("10s") == 10
    assert config.parse_duration("15m") == 900
    assert config.parse_duration("24h") == 86400


def test_durations_parse_as_in_go():
    assert config.parse_duration("1h30m") == 5400
    assert config.parse_duration("1.5s") == pytest.approx(1.5)
    assert config.parse_duration("90s") == 90
    assert config.parse_duration("0") == 0
    for seconds in (0.75, 10, 90, 900, 5400, 86400, 9930.5):
        assert config.parse_duration(config.format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10", "ten s", "5d", "", "-1s", "1h 30m", "m"])
def test_bad_duration_names_the_flag(bad):
    with pytest.raises(SettingsError, match="--min-retry-delay") as exc:
        config.build(DELIVERY, {"min-retry-delay": bad}, environ={})
    assert "750ms" in str(exc.value)


def test_environment_variable_is_read_and_flag_wins():
    s = config.build(COMMON + INTAKE, {"http-addr": None},
                     environ={"HOOKFAN_HTTP_ADDR": "127.0.0.1:9000"})
    assert s.intake.http_addr == ("127.0.0.1", 9000)
    s = config.build(COMMON + INTAKE, {"http-addr": ":8081"},
                     environ={"HOOKFAN_HTTP_ADDR": "127.0.0.1:9000"})
    assert s.intake.http_addr == ("0.0.0.0", 8081)


def test_bad_environment_value_names_variable_and_flag():
    with pytest.raises(SettingsError, match="HOOKFAN_BODY_SIZE_LIMIT.*--body-size-limit"):
        config.build(INTAKE, {}, environ={"HOOKFAN_BODY_SIZE_LIMIT": "lots"})


def test_settings_are_frozen():
    s = config.build(COMMON, {}, environ={})
    with pytest.raises(AttributeError):
        s.redis.url = "redis://elsewhere"  # type: ignore[misc]


def test_min_delay_above_max_is_refused():
    with pytest.raises(SettingsError, match="--min-retry-delay"):
        config.build(DELIVERY, {"min-retry-delay": "2m", "max-retry-delay": "1m"}, environ={})


def test_redis_password_is_masked():
    assert config.mask_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert "s3cret" not in config.mask_url("rediss://user:s3cret@h/1")


def test_password_file_fills_the_url(tmp_path):
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    s = config.build(COMMON, {"redis-password-file": str(f),
                              "redis-url": "redis://r:6379/2"}, environ={})
    assert s.redis.client_url() == "redis://:s3cret@r:6379/2"


def test_cli_bad_flag_is_one_line_naming_it(capsys):
    from hookfan.cli import main
    assert main(["routes", "--redis-url", "http://nope"]) == 2
    err = capsys.readouterr().err
    assert "--redis-url" in err and "Traceback" not in err
