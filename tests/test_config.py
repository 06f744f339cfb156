"""Loading settings: defaults, the file, environment overrides, and every kind of error."""

from __future__ import annotations

import os
import textwrap
import tomllib
from typing import TYPE_CHECKING

import attrs
import pytest

from abaco.config import (
    LoggingSettings,
    RedisSettings,
    Settings,
    StateSettings,
    ValkeySettings,
    load_settings,
)
from abaco.errors import ConfigError

if TYPE_CHECKING:
    import pathlib


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    """A current directory with no abaco.conf in it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(textwrap.dedent(text))
    return path


def load_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)
    return str(info.value)


# Defaults and the file.


def test_defaults(empty_cwd):
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.redis.url == ""
    assert settings.redis.key_prefix == "abaco"
    assert settings.valkey.appendfsync == "always"
    assert settings.stores.log_expiry == 86400
    assert settings.logging.format == "auto"


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.redis = RedisSettings()  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.redis.db = 3  # type: ignore[misc]


def test_direct_construction_is_validated():
    with pytest.raises(ValueError, match="port: expected a port number"):
        ValkeySettings(port=-1)


def test_file_values_and_defaults_for_the_rest(tmp_path, empty_cwd):
    conf = write(
        tmp_path / "my.conf",
        """
        [redis]
        url = "redis://db.example:6380"
        db = 2
        connect_timeout = 3

        [logging]
        level = "debug"
        """,
    )
    settings = load_settings(conf, environ={})
    assert settings.redis == RedisSettings(url="redis://db.example:6380", db=2, connect_timeout=3.0)
    assert isinstance(settings.redis.connect_timeout, float)
    assert settings.logging == LoggingSettings(level="debug")
    assert settings.valkey == ValkeySettings()


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss://u:p@h", "unix:///run/valkey.sock", ""])
def test_accepted_redis_urls(url):
    assert RedisSettings(url=url).url == url


# Environment overrides.


def test_env_overrides_of_each_type(empty_cwd):
    settings = load_settings(
        environ={
            "ABACO__REDIS__URL": "unix:///tmp/v.sock",
            "ABACO__REDIS__DB": " 7 ",
            "ABACO__REDIS__CONNECT_TIMEOUT": "0.5",
            "ABACO__STORES__TENANT": "  spaced  ",
            "UNRELATED": "x",
        }
    )
    assert settings.redis.url == "unix:///tmp/v.sock"
    assert settings.redis.db == 7
    assert settings.redis.connect_timeout == 0.5
    assert settings.stores.tenant == "  spaced  "  # strings are taken raw


def test_env_section_and_key_are_case_insensitive(empty_cwd):
    settings = load_settings(environ={"ABACO__Valkey__Port": "6390"})
    assert settings.valkey.port == 6390


def test_env_overrides_the_file(tmp_path):
    conf = write(tmp_path / "a.conf", "[redis]\ndb = 1\nkey_prefix = 'file'\n")
    settings = load_settings(conf, environ={"ABACO__REDIS__DB": "5"})
    assert settings.redis.db == 5
    assert settings.redis.key_prefix == "file"


def test_os_environ_is_the_default(empty_cwd, monkeypatch):
    monkeypatch.setenv("ABACO__LOGGING__LEVEL", "error")
    assert load_settings().logging.level == "error"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("YES", True), ("1", True), ("false", False), ("No", False), ("0", False)],
)
def test_env_bool_values(text, expected):
    # No option is a bool yet; the parser is ready for the first one.
    from abaco.config import _parse_env_value

    assert _parse_env_value(text, bool) is expected


def test_env_bad_bool_value():
    from abaco.config import _parse_env_value

    with pytest.raises(TypeError, match="expected bool"):
        _parse_env_value("maybe", bool)


# Which file is read.


def test_path_resolution_order(tmp_path, empty_cwd):
    explicit = write(tmp_path / "explicit.conf", "[redis]\nkey_prefix = 'explicit'\n")
    named = write(tmp_path / "named.conf", "[redis]\nkey_prefix = 'named'\n")
    write(empty_cwd / "abaco.conf", "[redis]\nkey_prefix = 'cwd'\n")
    env = {"ABACO_CONF": str(named)}

    assert load_settings(explicit, environ=env).redis.key_prefix == "explicit"
    assert load_settings(str(explicit), environ=env).redis.key_prefix == "explicit"
    assert load_settings(environ=env).redis.key_prefix == "named"
    assert load_settings(environ={}).redis.key_prefix == "cwd"
    assert load_settings(environ={"ABACO_CONF": ""}).redis.key_prefix == "cwd"
    (empty_cwd / "abaco.conf").unlink()
    assert load_settings(environ={}) == Settings()


# Errors, each naming the file or variable, the section and key, and what was expected.


def test_unknown_section(tmp_path):
    conf = write(tmp_path / "abaco.conf", "[reddis]\nurl = ''\n")
    assert load_error(conf, environ={}) == f"{conf}: unknown section [reddis]"


def test_unknown_key(tmp_path):
    conf = write(tmp_path / "abaco.conf", "[redis]\nprot = 1\n")
    assert load_error(conf, environ={}) == f"{conf}: unknown key [redis] prot"


def test_every_problem_is_reported(tmp_path):
    conf = write(tmp_path / "abaco.conf", "[redis]\nprot = 1\n[stores]\ncas_retries = 'x'\n[x]\n")
    message = load_error(conf, environ={})
    assert f"{conf}: unknown key [redis] prot" in message
    assert f"{conf}: [stores] cas_retries: expected int, got 'x'" in message
    assert f"{conf}: unknown section [x]" in message


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[redis]\ndb = 'abc'", "[redis] db: expected int, got 'abc'"),
        ("[redis]\ndb = true", "[redis] db: expected int, got True"),
        ("[redis]\ndb = 1.5", "[redis] db: expected int, got 1.5"),
        ("[redis]\nurl = 5", "[redis] url: expected string, got 5"),
        ("[redis]\nconnect_timeout = '5'", "[redis] connect_timeout: expected float, got '5'"),
        ("redis = 5", "[redis]: expected a table, got 5"),
    ],
)
def test_wrong_type(tmp_path, toml, expected):
    conf = write(tmp_path / "abaco.conf", toml)
    assert load_error(conf, environ={}) == f"{conf}: {expected}"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[valkey]\nappendfsync = 'no'", "[valkey] appendfsync: expected one of 'always', "),
        ("[logging]\nlevel = 'INFO'", "[logging] level: expected one of 'debug', 'info', "),
        ("[logging]\nformat = 'xml'", "[logging] format: expected one of 'auto', 'json', "),
    ],
)
def test_bad_enum_value(tmp_path, toml, expected):
    conf = write(tmp_path / "abaco.conf", toml)
    assert load_error(conf, environ={}).startswith(f"{conf}: {expected}")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[valkey]\nport = 65536", "[valkey] port: expected a port number in 0..65535, got 65536"),
        ("[valkey]\nport = -1", "[valkey] port: expected a port number in 0..65535, got -1"),
        ("[redis]\ndb = -1", "[redis] db: expected an integer >= 0, got -1"),
        ("[redis]\nconnect_timeout = 0", "[redis] connect_timeout: expected a number > 0, got 0.0"),
        ("[valkey]\nstartup_timeout = -2.5", "[valkey] startup_timeout: expected a number > 0"),
        ("[redis]\nmax_connections = 0", "[redis] max_connections: expected an integer >= 1"),
        ("[stores]\nlog_expiry = 0", "[stores] log_expiry: expected an integer >= 1, got 0"),
        ("[stores]\ncas_retries = -1", "[stores] cas_retries: expected an integer >= 0, got -1"),
        ("[stores]\ntenant = ''", "[stores] tenant: expected a non-empty string, got ''"),
        ("[redis]\nurl = 'http://h'", "[redis] url: expected a redis://, rediss:// or unix://"),
    ],
)
def test_out_of_range(tmp_path, toml, expected):
    conf = write(tmp_path / "abaco.conf", toml)
    assert load_error(conf, environ={}).startswith(f"{conf}: {expected}")


def test_bad_toml(tmp_path):
    conf = write(tmp_path / "abaco.conf", "[redis]\ndb = 1\nurl = \n")
    message = load_error(conf, environ={})
    assert message.startswith(f"{conf}: invalid TOML: ")
    assert "line 3" in message


def test_missing_explicit_file(tmp_path):
    missing = tmp_path / "nope.conf"
    assert load_error(missing, environ={}) == f"{missing}: no such configuration file"


def test_missing_file_named_by_abaco_conf(tmp_path):
    missing = tmp_path / "nope.conf"
    message = load_error(environ={"ABACO_CONF": str(missing)})
    assert message == f"{missing}: no such configuration file (named by ABACO_CONF)"


def test_unreadable_file(tmp_path):
    assert load_error(tmp_path, environ={}).startswith(f"{tmp_path}: cannot read: ")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ABACO__REDIS__DB", "abc", "[redis] db: expected int, got 'abc'"),
        ("ABACO__REDIS__DB", "1.0", "[redis] db: expected int, got '1.0'"),
        ("ABACO__REDIS__CONNECT_TIMEOUT", "soon", "[redis] connect_timeout: expected float"),
        ("ABACO__VALKEY__PORT", "70000", "[valkey] port: expected a port number in 0..65535"),
        ("ABACO__VALKEY__APPENDFSYNC", "never", "[valkey] appendfsync: expected one of"),
    ],
)
def test_bad_env_value(empty_cwd, name, value, expected):
    assert load_error(environ={name: value}).startswith(f"{name}: {expected}")


def test_bad_env_value_is_blamed_on_the_variable_not_the_file(tmp_path):
    conf = write(tmp_path / "abaco.conf", "[redis]\ndb = -3\n[valkey]\nport = 1\n")
    message = load_error(conf, environ={"ABACO__VALKEY__PORT": "-1"})
    assert "ABACO__VALKEY__PORT: [valkey] port: expected a port number" in message
    assert f"{conf}: [redis] db: expected an integer >= 0, got -3" in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ABACO__REDIS__PROT", "ABACO__REDIS__PROT: unknown key [redis] prot"),
        ("ABACO__REDDIS__URL", "ABACO__REDDIS__URL: unknown section [reddis]"),
        ("ABACO__REDIS", "ABACO__REDIS: expected a variable named ABACO__SECTION__KEY"),
        ("ABACO__A__B__C", "ABACO__A__B__C: expected a variable named ABACO__SECTION__KEY"),
        ("ABACO__REDIS__", "ABACO__REDIS__: expected a variable named ABACO__SECTION__KEY"),
    ],
)
def test_unknown_env_var(empty_cwd, name, expected):
    assert load_error(environ={name: "1"}) == expected


def test_same_option_set_twice_by_env(empty_cwd):
    message = load_error(environ={"ABACO__REDIS__DB": "1", "ABACO__redis__db": "2"})
    assert "[redis] db is also set by" in message


def test_errors_chain_the_original(tmp_path):
    conf = write(tmp_path / "abaco.conf", "[redis]\ndb = 'x'\n")
    for path, exc_type in [(conf, Exception), (tmp_path / "nope", FileNotFoundError)]:
        with pytest.raises(ConfigError) as info:
            load_settings(path, environ={})
        assert isinstance(info.value.__cause__, exc_type)
    write(conf, "[redis\n")
    with pytest.raises(ConfigError) as info:
        load_settings(conf, environ={})
    assert isinstance(info.value.__cause__, tomllib.TOMLDecodeError)
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"ABACO__REDIS__DB": "x"})
    assert isinstance(info.value.__cause__, TypeError)


def test_env_cannot_override_a_section_that_is_not_a_table(tmp_path):
    conf = write(tmp_path / "abaco.conf", "redis = 5\n")
    assert "[redis]: expected a table" in load_error(conf, environ={"ABACO__REDIS__DB": "1"})


# Where the state directory is.


def test_state_dir_explicit_is_expanded_and_absolute(empty_cwd, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert StateSettings(dir="~/data").path() == tmp_path / "home" / "data"
    assert StateSettings(dir="rel").path() == empty_cwd / "rel"


def test_state_dir_default_uses_xdg_state_home(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path / "state")}
    assert StateSettings().path(environ) == tmp_path / "state" / "abaco"


def test_state_dir_default_without_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".local" / "state" / "abaco"
    assert StateSettings().path({}) == expected
    # The XDG spec says a relative value is invalid and is ignored.
    assert StateSettings().path({"XDG_STATE_HOME": "relative"}) == expected


def test_state_dir_reads_os_environ_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert StateSettings().path() == tmp_path / "abaco"
    assert os.path.isabs(StateSettings().path())
