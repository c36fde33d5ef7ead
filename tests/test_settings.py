"""``Settings.from_env``: defaults, overrides, a ConfigError per bad value, no secret echoed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import ENV_VARS, EnvVar, Settings, redact_url

SECRET = "hunter2-s3cr3t"
BY_NAME = {var.name: var for var in ENV_VARS}

# Variables that take any string (paths, names); every other variable needs a bad-value case.
FREE_FORM = {
    "DATA_DIR",
    "PREVIEW_ASSETS_DIR",
    "PREVIEW_HEALTH_HOST",
    "PREVIEW_DEFAULT_HANDLER",
    "PREVIEW_WORKER_ID",
}

BAD_VALUES: list[tuple[str, str]] = [
    ("REDIS_URL", f"http://user:{SECRET}@redis:6379/0"),
    ("REDIS_URL", "127.0.0.1:6379"),
    ("PREVIEW_QUEUE", "bad queue!"),
    ("PREVIEW_REDIS_CLUSTER", "maybe"),
    ("PREVIEW_QUEUE", "-leading-dash"),
    ("PREVIEW_QUEUE", "q" * 65),
    ("PREVIEW_QUEUE", "{tag}"),
    ("PREVIEW_WORKER_CONCURRENCY", "0"),
    ("PREVIEW_WORKER_CONCURRENCY", "1025"),
    ("PREVIEW_WORKER_CONCURRENCY", "two"),
    ("PREVIEW_WORKER_CONCURRENCY", "1.5"),
    ("PREVIEW_QUEUE_MAX", "-1"),
    ("PREVIEW_LEASE_SECONDS", "0.5"),
    ("PREVIEW_LEASE_SECONDS", "nan"),
    ("PREVIEW_LEASE_SECONDS", "30s"),
    ("PREVIEW_REAPER_INTERVAL_SECONDS", "0"),
    ("PREVIEW_JOB_TIMEOUT_SECONDS", "-5"),
    ("PREVIEW_SHUTDOWN_GRACE_SECONDS", "-1"),
    ("PREVIEW_SHUTDOWN_GRACE_SECONDS", "inf"),
    ("PREVIEW_MAX_PAYLOAD_BYTES", "100"),
    ("PREVIEW_MAX_PAYLOAD_BYTES", "1MiB"),
    ("PREVIEW_ATTEMPTS", "0"),
    ("PREVIEW_BACKOFF_SECONDS", "-1"),
    ("PREVIEW_BACKOFF_MAX_SECONDS", "soon"),
    ("PREVIEW_HEALTH_PORT", "65536"),
    ("PREVIEW_HEALTH_PORT", "http"),
    ("PREVIEW_STALL_SECONDS", "0"),
    ("PREVIEW_DEPTH_REFRESH_SECONDS", "0.01"),
    ("PREVIEW_TRACK", "beta"),
    ("PREVIEW_ASSET_HOSTS", "cdn.example.com, bad host/"),
    ("PREVIEW_ASSET_MAX_BYTES", "10"),
    ("PREVIEW_ASSET_TIMEOUT_SECONDS", "0"),
    ("PREVIEW_LOG_LEVEL", "verbose"),
    ("PREVIEW_LOG_FORMAT", "xml"),
]


def test_defaults_with_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.redis_url == "redis://127.0.0.1:6379"
    assert settings.queue == "preview-jobs"
    assert settings.concurrency == 2
    assert settings.health_port == 3000
    assert settings.shutdown_grace_seconds == 25.0
    assert settings.lease_seconds == 30.0
    assert settings.max_payload_bytes == 1024 * 1024
    assert settings.data_dir == Path("./data")
    assert settings.track == "stable"
    assert settings.asset_hosts == ()


@pytest.mark.parametrize("var", ENV_VARS, ids=[v.name for v in ENV_VARS])
def test_documented_default_equals_the_settings_default(var: EnvVar) -> None:
    expected = getattr(Settings(), var.attr)
    assert var.parse(var.default) == expected, (
        f"{var.name}: ENV_VARS default {var.default!r} != Settings.{var.attr} {expected!r}"
    )


def test_every_env_var_maps_to_one_settings_field() -> None:
    names = [var.name for var in ENV_VARS]
    attrs = [var.attr for var in ENV_VARS]
    assert len(set(names)) == len(names)
    assert len(set(attrs)) == len(attrs)
    assert set(attrs) == {f.name for f in dataclasses.fields(Settings)}


def test_empty_values_mean_the_default() -> None:
    env = {var.name: "" for var in ENV_VARS}
    assert Settings.from_env(env) == Settings()


def test_every_validated_variable_has_a_bad_value_case() -> None:
    covered = {name for name, _ in BAD_VALUES}
    assert covered | FREE_FORM == set(BY_NAME), "add a bad-value case for: " + ", ".join(
        sorted(set(BY_NAME) - covered - FREE_FORM)
    )


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_bad_value_raises_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}="), message
    if BY_NAME[name].secret:
        assert value not in message
        assert SECRET not in message
        assert "<redacted>" in message
    else:
        assert repr(value) in message


def test_redis_url_is_never_echoed_in_errors() -> None:
    url = f"redis://default:{SECRET}@redis.internal:6379/0"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_URL": url, "PREVIEW_WORKER_CONCURRENCY": "zero"})
    assert SECRET not in str(caught.value)
    assert "PREVIEW_WORKER_CONCURRENCY" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_URL": f"redis//default:{SECRET}@redis.internal"})
    assert SECRET not in str(caught.value)
    assert str(caught.value).startswith("REDIS_URL=<redacted>: ")


def test_only_redis_url_is_secret() -> None:
    assert [var.name for var in ENV_VARS if var.secret] == ["REDIS_URL"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://default:{SECRET}@redis:6379/0", "redis://***@redis:6379/0"),
        (f"rediss://:{SECRET}@redis.example.com:6380", "rediss://***@redis.example.com:6380"),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redacted_redis_url(url: str, shown: str) -> None:
    settings = Settings.from_env({"REDIS_URL": url})
    assert settings.redis_url == url
    assert settings.redacted_redis_url() == shown
    assert redact_url(url) == shown
    assert SECRET not in settings.redacted_redis_url()


def test_settings_repr_does_not_show_the_redis_password() -> None:
    settings = Settings.from_env({"REDIS_URL": f"redis://:{SECRET}@redis:6379"})
    assert SECRET not in repr(settings)


def test_values_are_parsed_and_normalised() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "rediss://redis.example.com:6380/1",
            "PREVIEW_QUEUE": "previews.canary_2",
            "PREVIEW_WORKER_CONCURRENCY": " 8 ",
            "PREVIEW_LEASE_SECONDS": "12.5",
            "PREVIEW_SHUTDOWN_GRACE_SECONDS": "0",
            "PREVIEW_HEALTH_PORT": "0",
            "PREVIEW_TRACK": "CANARY",
            "PREVIEW_LOG_LEVEL": "Debug",
            "PREVIEW_ASSET_HOSTS": " CDN.example.com:8443, ,assets.example.org ",
            "DATA_DIR": "/data",
            "PREVIEW_WORKER_ID": "pod-a",
        }
    )
    assert settings.redis_url == "rediss://redis.example.com:6380/1"
    assert settings.queue == "previews.canary_2"
    assert settings.concurrency == 8
    assert settings.lease_seconds == 12.5
    assert settings.shutdown_grace_seconds == 0.0
    assert settings.health_port == 0
    assert settings.track == "canary"
    assert settings.log_level == "debug"
    assert settings.asset_hosts == ("cdn.example.com:8443", "assets.example.org")
    assert settings.data_dir == Path("/data")
    assert settings.worker_id == "pod-a"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PREVIEW_WORKER_CONCURRENCY", "1"),
        ("PREVIEW_WORKER_CONCURRENCY", "1024"),
        ("PREVIEW_HEALTH_PORT", "65535"),
        ("PREVIEW_MAX_PAYLOAD_BYTES", "256"),
        ("PREVIEW_LEASE_SECONDS", "3600"),
        ("PREVIEW_QUEUE", "q" * 64),
    ],
)
def test_bounds_are_inclusive(name: str, value: str) -> None:
    settings = Settings.from_env({name: value})
    assert str(getattr(settings, BY_NAME[name].attr)) in {value, f"{value}.0"}


def test_overrides_win_over_the_environment() -> None:
    env = {"PREVIEW_WORKER_CONCURRENCY": "4", "PREVIEW_QUEUE": "from-env"}
    settings = Settings.from_env(env, concurrency=16, queue="from-flag")
    assert (settings.concurrency, settings.queue) == (16, "from-flag")


def test_none_overrides_are_ignored() -> None:
    env = {"PREVIEW_WORKER_CONCURRENCY": "4"}
    assert Settings.from_env(env, concurrency=None).concurrency == 4


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown settings: bogus"):
        Settings.from_env({}, bogus=1)


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.setenv("PREVIEW_WORKER_CONCURRENCY", "7")
    assert Settings.from_env().concurrency == 7
    monkeypatch.setenv("PREVIEW_TRACK", "nightly")
    with pytest.raises(ConfigError, match=r"^PREVIEW_TRACK="):
        Settings.from_env()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.concurrency = 3  # type: ignore[misc]
