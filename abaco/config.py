"""Typed, frozen settings read from ``abaco.conf`` plus ``ABACO__SECTION__KEY`` overrides.

One attrs class per section of the file, gathered in :class:`Settings`. The top-level
``abaco.conf`` lists every option with its default; ``tests/test_conf.py`` keeps the two in
step. :func:`load_settings` is the only reader: it finds the file, applies environment
overrides, validates everything, and raises :class:`~abaco.errors.ConfigError` naming the
file or variable, the ``[section] key`` and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import pathlib
import tomllib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, get_type_hints
from urllib.parse import urlsplit

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError, ForbiddenExtraKeysError

from abaco.errors import ConfigError

CONF_ENV_VAR = "ABACO_CONF"
"""The environment variable naming the configuration file."""

OVERRIDE_PREFIX = "ABACO__"
"""The prefix of environment variables that override one option: ``ABACO__SECTION__KEY``."""

DEFAULT_CONF_NAME = "abaco.conf"
"""The file looked for in the current directory when no other is named."""


class _InvalidValue(ValueError):
    """A validator rejected a value; carries the key so the loader can say where."""

    def __init__(self, key: str, expected: str, value: object) -> None:
        super().__init__(f"{key}: expected {expected}, got {value!r}")
        self.key = key
        self.expected = expected
        self.value = value


class _WrongType(TypeError):
    """A value of the wrong type; cattrs adds the key in a note."""

    def __init__(self, expected: str, value: object) -> None:
        super().__init__(f"expected {expected}, got {value!r}")
        self.expected = expected
        self.value = value


_Validator = Callable[[object, "attrs.Attribute[Any]", Any], None]


def _check(expected: str, ok: Callable[[Any], bool]) -> _Validator:
    def validate(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not ok(value):
            raise _InvalidValue(attribute.name, expected, value)

    return validate


def _one_of(*choices: str) -> _Validator:
    return _check("one of " + ", ".join(map(repr, choices)), lambda value: value in choices)


_POSITIVE = _check("a number > 0", lambda value: value > 0)
_AT_LEAST_ONE = _check("an integer >= 1", lambda value: value >= 1)
_NON_NEGATIVE = _check("an integer >= 0", lambda value: value >= 0)
_PORT = _check("a port number in 0..65535", lambda value: 0 <= value <= 65535)
_NON_EMPTY = _check("a non-empty string", bool)


def _mounts_allowed(value: str) -> bool:
    from abaco.actors.mounts import parse_allowed  # here: the loader stays light

    try:
        parse_allowed(value)
    except ValueError:
        return False
    return True


_MOUNTS = _check("comma-separated HOST_PATH:ro or HOST_PATH:rw entries", _mounts_allowed)


def _networks(value: str) -> bool:
    for part in value.split(","):
        try:
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            return False
    return True


_NETWORKS = _check("comma-separated networks such as 127.0.0.1/32, 10.0.0.0/8", _networks)
_REDIS_URL = _check(
    "a redis://, rediss:// or unix:// URL, or an empty string",
    lambda value: value == "" or urlsplit(value).scheme in {"redis", "rediss", "unix"},
)


@attrs.frozen(kw_only=True)
class StateSettings:
    """``[state]``: where the platform keeps its data on this host."""

    dir: str = ""
    """The data directory; "" means ``$XDG_STATE_HOME/abaco``, else ``~/.local/state/abaco``."""

    def path(self, environ: Mapping[str, str] | None = None) -> pathlib.Path:
        """Resolve :attr:`dir` to an absolute path (``environ`` defaults to ``os.environ``)."""
        if self.dir:
            return pathlib.Path(self.dir).expanduser().absolute()
        environ = os.environ if environ is None else environ
        # The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
        state_home = environ.get("XDG_STATE_HOME", "")
        if state_home and os.path.isabs(state_home):
            return pathlib.Path(state_home) / "abaco"
        return pathlib.Path("~/.local/state/abaco").expanduser().absolute()


@attrs.frozen(kw_only=True)
class RedisSettings:
    """``[redis]``: the Redis/Valkey server every component shares."""

    url: str = attrs.field(default="", validator=_REDIS_URL)
    """redis://, rediss:// or unix:// URL; "" starts the embedded Valkey."""
    password: str = ""
    """Used when set, and then overrides any password in :attr:`url`."""
    db: int = attrs.field(default=0, validator=_NON_NEGATIVE)
    """The database number."""
    key_prefix: str = attrs.field(default="abaco", validator=_NON_EMPTY)
    """Prefix of every key the platform writes."""
    connect_timeout: float = attrs.field(default=5.0, validator=_POSITIVE)
    """Seconds to wait for a connection."""
    max_connections: int = attrs.field(default=64, validator=_AT_LEAST_ONE)
    """Size of each process's connection pool."""


@attrs.frozen(kw_only=True)
class ValkeySettings:
    """``[valkey]``: the embedded server started when ``[redis] url`` is empty."""

    host: str = attrs.field(default="127.0.0.1", validator=_NON_EMPTY)
    """Address the server listens on."""
    port: int = attrs.field(default=0, validator=_PORT)
    """Port to listen on; 0 picks a free one."""
    appendfsync: str = attrs.field(default="always", validator=_one_of("always", "everysec"))
    """When the append-only file is synced to disk."""
    startup_timeout: float = attrs.field(default=10.0, validator=_POSITIVE)
    """Seconds to wait for the server to answer after starting it."""


@attrs.frozen(kw_only=True)
class StoresSettings:
    """``[stores]``: behaviour of the typed stores over Redis."""

    tenant: str = attrs.field(default="default", validator=_NON_EMPTY)
    """Tenant used when a request names none."""
    log_expiry: int = attrs.field(default=86400, validator=_AT_LEAST_ONE)
    """Seconds execution logs are kept in Redis."""
    log_ex_limit: int = attrs.field(default=86400, validator=_AT_LEAST_ONE)
    """Most seconds an actor's ``log_ex`` keeps its logs; larger values are cut to this."""
    log_max_bytes: int = attrs.field(default=1048576, validator=_AT_LEAST_ONE)
    """Bytes of log kept per execution; the tail is kept."""
    cas_retries: int = attrs.field(default=100, validator=_NON_NEGATIVE)
    """Compare-and-set retries before giving up with Conflict."""


@attrs.frozen(kw_only=True)
class LoggingSettings:
    """``[logging]``: how the platform's structlog events are written."""

    level: str = attrs.field(default="info", validator=_one_of("debug", "info", "warning", "error"))
    """The lowest level written."""
    format: str = attrs.field(default="auto", validator=_one_of("auto", "json", "console"))
    """"auto" is console on a TTY and JSON lines otherwise."""


@attrs.frozen(kw_only=True)
class ApiSettings:
    """``[api]``: the REST API server."""

    host: str = attrs.field(default="127.0.0.1", validator=_NON_EMPTY)
    """Address the API listens on."""
    port: int = attrs.field(default=8000, validator=_PORT)
    """Port the API listens on; 0 picks a free one."""
    max_body_bytes: int = attrs.field(default=1048576, validator=_AT_LEAST_ONE)
    """Largest request body accepted, except bundle uploads (413 above it)."""
    max_message_bytes: int = attrs.field(default=524288, validator=_AT_LEAST_ONE)
    """Largest message accepted (413 above it)."""
    max_actors_per_user: int = attrs.field(default=1000, validator=_AT_LEAST_ONE)
    """Most actors one user may own (429 above it)."""
    max_queued_messages: int = attrs.field(default=100000, validator=_AT_LEAST_ONE)
    """Most messages waiting in one actor's mailbox (429 above it)."""
    requests_per_second: float = attrs.field(default=1000.0, validator=_POSITIVE)
    """Requests per second one user may make to one API process, in bursts of as many (429)."""
    cors_origins: str = "*"
    """Comma-separated origins browsers may call the API from; "*" any, "" none (no CORS)."""


@attrs.frozen(kw_only=True)
class RepositorySettings:
    """``[repository]``: the software repository of actor bundles."""

    dir: str = ""
    """Where bundles are kept; "" means the ``repository`` folder of the state dir."""
    max_bundle_bytes: int = attrs.field(default=268435456, validator=_AT_LEAST_ONE)
    """Largest bundle archive accepted (413 above it)."""
    max_members: int = attrs.field(default=10000, validator=_AT_LEAST_ONE)
    """Most files a bundle may hold."""
    max_unpacked_bytes: int = attrs.field(default=1073741824, validator=_AT_LEAST_ONE)
    """Largest total size of a bundle's files once unpacked."""
    max_ratio: int = attrs.field(default=200, validator=_AT_LEAST_ONE)
    """Largest compression ratio of one file (higher looks like a zip bomb)."""


@attrs.frozen(kw_only=True)
class FetcherSettings:
    """``[fetcher]``: each host's bundle fetcher and its cache of unpacked bundles."""

    repository_url: str = ""
    """Base URL of the software repository; "" means this host's API (``[api] host:port``)."""
    cache_dir: str = ""
    """Where unpacked bundles are cached; "" means the ``bundle-cache`` folder of the state dir."""
    max_cache_bytes: int = attrs.field(default=2147483648, validator=_AT_LEAST_ONE)
    """Size the cache is kept under, evicting least recently used bundles no worker uses."""
    download_timeout: float = attrs.field(default=300.0, validator=_POSITIVE)
    """Seconds a bundle download may take."""


@attrs.frozen(kw_only=True)
class WorkerSettings:
    """``[worker]``: how workers run executions."""

    heartbeat: float = attrs.field(default=5.0, validator=_POSITIVE)
    """Seconds between a worker's heartbeats (its record's last_health_check_time)."""
    execution_timeout: float = attrs.field(default=300.0, validator=_POSITIVE)
    """Wall-clock seconds an execution may run before it is killed."""
    stop_deadline: float = attrs.field(default=30.0, validator=_POSITIVE)
    """Seconds a stopping worker lets its current execution finish before killing it."""
    visibility: float = attrs.field(default=30.0, validator=_POSITIVE)
    """Seconds a message taken by a worker that stopped renewing it waits to be retaken."""
    sandbox: bool = True
    """Run executions in bubblewrap where it is installed (rlimits apply everywhere)."""
    work_dir: str = ""
    """Where executions' work dirs go; "" means ``work`` in the runtime dir (short paths)."""
    allow_privileged: bool = False
    """Whether admins and privileged users may make privileged actors (root in the sandbox)."""
    mounts_allowed: str = attrs.field(default="", validator=_MOUNTS)
    """Host paths actors may mount: comma-separated ``HOST_PATH:ro`` or ``HOST_PATH:rw``."""


@attrs.frozen(kw_only=True)
class PersistenceSettings:
    """``[persistence]``: durable storage and the actors that drain into it."""

    storage_url: str = ""
    """sqlite:///PATH or postgresql://...; "" means ``records.db`` (SQLite) in the state dir."""
    batch_size: int = attrs.field(default=500, validator=_AT_LEAST_ONE)
    """Most records a drainer stores in one batch."""
    query_timeout: float = attrs.field(default=2.0, validator=_POSITIVE)
    """Seconds the API waits for a persistence actor to take a query of durable history."""
    processing_timeout: float = attrs.field(default=10.0, validator=_POSITIVE)
    """Seconds the API waits for a taken query's answer."""
    write_through: bool = True
    """Whether the API hands every accepted message to storage at once (write-through), so
    that a restart after losing Redis runs it again; false: an execution reaches storage
    only when it ends (write-back). Actors and permissions are written as they change either
    way."""


@attrs.frozen(kw_only=True)
class JanitorSettings:
    """``[janitor]``: how long durable records are kept."""

    finished_longevity: float = attrs.field(default=604800.0, validator=_POSITIVE)
    """Seconds a COMPLETE execution keeps its log (its record and results stay)."""
    failed_longevity: float = attrs.field(default=2592000.0, validator=_POSITIVE)
    """Seconds a failed (ERROR) execution is kept at all."""
    interval: float = attrs.field(default=3600.0, validator=_POSITIVE)
    """Seconds between the janitor's sweeps (each waits for the storage to be idle)."""


def _fernet_key_ok(value: str) -> bool:
    if value == "":
        return True
    try:
        return len(base64.urlsafe_b64decode(value.encode())) == 32
    except (binascii.Error, ValueError):
        return False


@attrs.frozen(kw_only=True)
class AuthSettings:
    """``[auth]``: who may call the API."""

    admin_token: str = ""
    """A static bearer token for the admin user; "" means ``abaco up`` makes one."""
    admin_user: str = attrs.field(default="admin", validator=_NON_EMPTY)
    """The user the admin token identifies."""
    config_key: str = attrs.field(
        default="",
        validator=_check('"" or a Fernet key (32 bytes, url-safe base64)', _fernet_key_ok),
    )
    """The key secret actor configs are encrypted with; "" means one made in the state dir."""
    jwt_public_key_file: str = ""
    """A PEM public key that signs the JWTs of ``X-JWT-Assertion-TENANT`` headers."""
    jwt_jwks_file: str = ""
    """A JWKS file of such keys (chosen by the token's ``kid``); both "": JWT disabled."""
    jwt_algorithms: str = attrs.field(default="RS256", validator=_NON_EMPTY)
    """Comma-separated signature algorithms accepted."""
    jwt_audience: str = ""
    """When set, the ``aud`` a token must carry; "" does not check ``aud``."""
    jwt_user_claim: str = attrs.field(
        default="http://wso2.org/claims/enduser", validator=_NON_EMPTY
    )
    """The claim naming the user (anything from an "@" on is dropped, as Abaco does)."""
    jwt_roles_claim: str = attrs.field(default="http://wso2.org/claims/role", validator=_NON_EMPTY)
    """The claim listing the user's roles: a comma-separated string or a list."""
    jwt_role_prefix: str = "Internal/abaco-"
    """What precedes admin, privileged, user or limited in a role of that claim."""
    jwt_tenant_claim: str = ""
    """When set, a claim that must equal the tenant of the header's name; "" trusts the name."""


@attrs.frozen(kw_only=True)
class SchedulerSettings:
    """``[scheduler]``: placing new workers on hosts."""

    retry_interval: float = attrs.field(default=0.5, validator=_POSITIVE)
    """Seconds between tries to place a worker that no host fits yet (it WAITs meanwhile)."""


@attrs.frozen(kw_only=True)
class SpawnerSettings:
    """``[spawner]``: the per-host daemon that starts workers."""

    queue: str = attrs.field(default="default", validator=_NON_EMPTY)
    """The pool of spawners this one serves: actors whose ``queue`` names it run here."""
    labels: str = ""
    """Comma-separated host labels that actor hints ``host:LABEL`` select."""
    capacity: int = attrs.field(default=0, validator=_check("an int >= 0", lambda v: v >= 0))
    """Most workers on this host; 0 means four per CPU."""
    heartbeat: float = attrs.field(default=2.0, validator=_POSITIVE)
    """Seconds between the host's load samples (which are also its heartbeat)."""
    drain_deadline: float = attrs.field(default=30.0, validator=_POSITIVE)
    """Seconds a stopping spawner gives its workers to finish before killing them."""


@attrs.frozen(kw_only=True)
class HealthSettings:
    """``[health]``: the health supervisor (dead workers and hosts, autoscaling, repairs)."""

    interval: float = attrs.field(default=1.0, validator=_POSITIVE)
    """Seconds between the supervisor's passes."""
    missed_heartbeats: int = attrs.field(default=3, validator=_AT_LEAST_ONE)
    """Heartbeats a worker or host may miss before it is taken for dead."""
    max_workers: int = attrs.field(default=8, validator=_AT_LEAST_ONE)
    """Workers per actor when the actor sets no ``max_workers``."""
    idle_timeout: float = attrs.field(default=300.0, validator=_POSITIVE)
    """Seconds a worker may stay idle before the autoscaler stops it."""
    sync_idle_timeout: float = attrs.field(default=3600.0, validator=_POSITIVE)
    """Seconds the last worker of an actor hinted ``sync`` is kept warm while idle."""


@attrs.frozen(kw_only=True)
class CronSettings:
    """``[cron]``: the cron actor, which sends actors their scheduled messages."""

    tick: float = attrs.field(default=5.0, validator=_POSITIVE)
    """Seconds between the cron actor's passes over the actors (how late a run may be)."""
    allow_seconds: bool = False
    """Whether schedules may count in seconds (``now + 2 seconds``): for tests."""


@attrs.frozen(kw_only=True)
class EventsSettings:
    """``[events]``: delivering actor events to linked actors and webhooks."""

    allow_private_webhooks: bool = False
    """Let webhooks reach loopback, private, link-local and other non-public addresses."""
    webhook_allowed_networks: str = attrs.field(default="", validator=_NETWORKS)
    """Comma-separated networks webhooks may reach even though they are not public."""
    webhook_timeout: float = attrs.field(default=10.0, validator=_POSITIVE)
    """Seconds one webhook attempt may take (connect, send, answer)."""
    webhook_attempts: int = attrs.field(default=3, validator=_AT_LEAST_ONE)
    """Attempts per webhook delivery before giving up (on errors, timeouts and 5xx/429)."""
    webhook_backoff: float = attrs.field(default=1.0, validator=_POSITIVE)
    """Seconds before the first retry; each further retry waits twice as long."""
    concurrency: int = attrs.field(default=32, validator=_AT_LEAST_ONE)
    """Events one delivery actor works on at once."""


@attrs.frozen(kw_only=True)
class Settings:
    """All settings, one attribute per section of ``abaco.conf``."""

    state: StateSettings = attrs.Factory(StateSettings)
    redis: RedisSettings = attrs.Factory(RedisSettings)
    valkey: ValkeySettings = attrs.Factory(ValkeySettings)
    stores: StoresSettings = attrs.Factory(StoresSettings)
    logging: LoggingSettings = attrs.Factory(LoggingSettings)
    api: ApiSettings = attrs.Factory(ApiSettings)
    repository: RepositorySettings = attrs.Factory(RepositorySettings)
    fetcher: FetcherSettings = attrs.Factory(FetcherSettings)
    worker: WorkerSettings = attrs.Factory(WorkerSettings)
    persistence: PersistenceSettings = attrs.Factory(PersistenceSettings)
    janitor: JanitorSettings = attrs.Factory(JanitorSettings)
    auth: AuthSettings = attrs.Factory(AuthSettings)
    scheduler: SchedulerSettings = attrs.Factory(SchedulerSettings)
    spawner: SpawnerSettings = attrs.Factory(SpawnerSettings)
    health: HealthSettings = attrs.Factory(HealthSettings)
    cron: CronSettings = attrs.Factory(CronSettings)
    events: EventsSettings = attrs.Factory(EventsSettings)


# Section name -> section class; and per section, option name -> option type.
_SECTIONS: dict[str, type[Any]] = get_type_hints(Settings)
_OPTIONS: dict[str, dict[str, type[Any]]] = {
    name: get_type_hints(section) for name, section in _SECTIONS.items()
}


# cattrs would happily turn 5 into "5" and "false" into True; a config file deserves better.
def _structure_int(value: object, _type: type[Any]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _WrongType("int", value)


def _structure_float(value: object, _type: type[Any]) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _WrongType("float", value)


def _structure_bool(value: object, _type: type[Any]) -> bool:
    if isinstance(value, bool):
        return value
    raise _WrongType("bool", value)


def _structure_str(value: object, _type: type[Any]) -> str:
    if isinstance(value, str):
        return value
    raise _WrongType("string", value)


_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
_converter.register_structure_hook(int, _structure_int)
_converter.register_structure_hook(float, _structure_float)
_converter.register_structure_hook(bool, _structure_bool)
_converter.register_structure_hook(str, _structure_str)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _parse_env_value(text: str, type_: type[Any]) -> object:
    """Turn an environment variable's text into a value of the option's type."""
    if type_ is str:
        return text
    cleaned = text.strip().lower()
    if type_ is bool:
        if cleaned in _TRUE | _FALSE:
            return cleaned in _TRUE
        raise _WrongType("bool (true/false/1/0/yes/no)", text)
    try:
        return type_(cleaned)
    except ValueError:
        raise _WrongType(type_.__name__, text) from None


def config_file(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> pathlib.Path | None:
    """The configuration file :func:`load_settings` reads for ``path`` (None: defaults only)."""
    return _resolve_path(path, os.environ if environ is None else environ)[0]


def _resolve_path(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> tuple[pathlib.Path | None, str]:
    """Return the file to read (None: defaults only) and who named it, for error messages."""
    if path is not None:
        return pathlib.Path(path), ""
    if environ.get(CONF_ENV_VAR):
        return pathlib.Path(environ[CONF_ENV_VAR]), f" (named by {CONF_ENV_VAR})"
    default = pathlib.Path(DEFAULT_CONF_NAME)
    return (default if default.is_file() else None), ""


def _read_file(path: pathlib.Path, named_by: str) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such configuration file{named_by}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _apply_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> dict[tuple[str, str], str]:
    """Write ``ABACO__SECTION__KEY`` values into ``data``; return which variable set what."""
    origins: dict[tuple[str, str], str] = {}
    for name in sorted(environ):
        if not name.startswith(OVERRIDE_PREFIX):
            continue
        parts = name[len(OVERRIDE_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"{name}: expected a variable named ABACO__SECTION__KEY")
        section, key = parts
        if section not in _SECTIONS:
            raise ConfigError(f"{name}: unknown section [{section}]")
        if key not in _OPTIONS[section]:
            raise ConfigError(f"{name}: unknown key [{section}] {key}")
        if (section, key) in origins:
            other = origins[section, key]
            raise ConfigError(f"{name}: [{section}] {key} is also set by {other}")
        try:
            value = _parse_env_value(environ[name], _OPTIONS[section][key])
        except _WrongType as exc:
            raise ConfigError(f"{name}: [{section}] {key}: {exc}") from exc
        data.setdefault(section, {})[key] = value
        origins[section, key] = name
    return origins


def _problems(
    exc: BaseException, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], BaseException]]:
    """Flatten cattrs' nested exception groups into (attribute path, error) pairs."""
    if isinstance(exc, ClassValidationError):
        for sub in exc.exceptions:
            notes = getattr(sub, "__notes__", ())
            names = [note.name for note in notes if isinstance(note, AttributeValidationNote)]
            yield from _problems(sub, path + tuple(names[:1]))
    else:
        yield path, exc


def _describe(
    path: tuple[str, ...], exc: BaseException, source: str, origins: Mapping[tuple[str, str], str]
) -> list[str]:
    """One message line per problem, naming the variable that set the value if one did."""
    if isinstance(exc, ForbiddenExtraKeysError):
        if not path:
            return [f"{source}: unknown section [{extra}]" for extra in sorted(exc.extra_fields)]
        return [f"{source}: unknown key [{path[0]}] {extra}" for extra in sorted(exc.extra_fields)]
    if isinstance(exc, _InvalidValue) and len(path) == 1:
        path = (path[0], exc.key)
    if len(path) == 2:
        where = f"{origins.get((path[0], path[1]), source)}: [{path[0]}] {path[1]}"
        if isinstance(exc, _WrongType | _InvalidValue):
            return [f"{where}: expected {exc.expected}, got {exc.value!r}"]
        return [f"{where}: {exc}"]
    if len(path) == 1:
        return [f"{source}: [{path[0]}]: {exc}"]
    return [f"{source}: {exc}"]


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings: a TOML file, then ``ABACO__SECTION__KEY`` overrides from ``environ``.

    The file is ``path`` if given, else ``$ABACO_CONF``, else ``./abaco.conf`` if it exists;
    with none of these, the defaults apply. ``environ`` defaults to ``os.environ``. Every
    problem raises :class:`~abaco.errors.ConfigError`.
    """
    environ = os.environ if environ is None else environ
    file, named_by = _resolve_path(path, environ)
    data = _read_file(file, named_by) if file is not None else {}
    source = str(file) if file is not None else "defaults"
    for section, table in data.items():
        if section in _SECTIONS and not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}]: expected a table, got {table!r}")
    origins = _apply_overrides(data, environ)
    try:
        return _converter.structure(data, Settings)
    except ClassValidationError as exc:
        lines = [
            line
            for where, error in _problems(exc)
            for line in _describe(where, error, source, origins)
        ]
        raise ConfigError("\n".join(lines)) from exc
