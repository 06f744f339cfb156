"""The domain records: actors, workers, executions, nonces, aliases and permissions.

Field names are Abaco's, so the REST API can hand a record's dict to a client as is.
Records are frozen attrs classes; change one with ``attrs.evolve`` (after asking
:func:`abaco.actors.states.transition` when the status changes). The collections inside
them are plain lists and dicts so that they map one to one onto JSON and msgpack; do not
mutate them in place.

:data:`converter` turns a record into plain values and back: datetimes become ISO-8601
strings in UTC ending in ``Z``, statuses their name, permission levels their name
(``"READ"``...). Structuring is strict: unknown keys, a ``None`` where a string belongs,
or a string where a list belongs are errors rather than silent coercions. This module
does no I/O.
"""

import enum
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, TypeVar

import attrs
import cattrs
import cattrs.v
from attrs import AttrsInstance

from abaco.actors.states import ActorStatus, ExecutionStatus, WorkerStatus
from abaco.errors import BadRequest

__all__ = [
    "DEFAULT_TENANT",
    "Actor",
    "ActorType",
    "Alias",
    "Execution",
    "Nonce",
    "Permission",
    "PermissionLevel",
    "Worker",
    "converter",
    "fields_of",
    "from_dict",
    "to_dict",
    "utcnow",
]

DEFAULT_TENANT = "default"

ActorType = Literal["none", "bin"]

Record = TypeVar("Record", bound=AttrsInstance)


def utcnow() -> datetime:
    """The current time as an aware datetime in UTC."""
    return datetime.now(UTC)


class PermissionLevel(enum.IntEnum):
    """How much a user may do with an actor; each level includes the ones below it."""

    NONE = 0
    READ = 1
    EXECUTE = 2
    UPDATE = 3

    def __str__(self) -> str:
        return self.name


# -- validators ---------------------------------------------------------------------------


def _utc(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{attribute.name} must be a datetime, not {value!r}")
    if value.utcoffset() != timedelta(0):
        raise ValueError(f"{attribute.name} must be an aware datetime in UTC, not {value!r}")


def _non_negative(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, not {value!r}")


_optional_utc = attrs.validators.optional(_utc)
_optional_non_negative = attrs.validators.optional(_non_negative)


def _uses(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if type(value) is not int or value < -1:
        raise ValueError(f"{attribute.name} must be an int >= -1 (-1: unlimited), not {value!r}")


def _remaining_uses(nonce: "Nonce") -> int:
    return -1 if nonce.max_uses == -1 else max(nonce.max_uses - nonce.current_uses, 0)


# -- records ------------------------------------------------------------------------------


@attrs.define(frozen=True, kw_only=True)
class Actor:
    """A registered bundle of code that runs once per message it receives."""

    SCHEMA_VERSION: ClassVar[int] = 1

    id: str
    name: str
    owner: str
    image: str
    description: str = ""
    default_environment: dict[str, str] = attrs.field(factory=dict)
    status: ActorStatus = attrs.field(
        default=ActorStatus.SUBMITTED, validator=attrs.validators.instance_of(ActorStatus)
    )
    status_message: str = ""
    # False: one worker at a time, and the actor may keep state between executions.
    stateless: bool = True
    # "bin": messages are raw bytes rather than text or JSON.
    type: ActorType = attrs.field(default="none", validator=attrs.validators.in_(("none", "bin")))
    # Whether executions receive an access token for the API.
    token: bool = False
    hints: list[str] = attrs.field(factory=list)
    # An actor id or alias to which this actor's events are sent as messages.
    link: str = ""
    # A URL to which this actor's events are posted.
    webhook: str = ""
    max_workers: int | None = attrs.field(default=None, validator=_optional_non_negative)
    mem_limit: str | None = None
    max_cpus: int | None = attrs.field(default=None, validator=_optional_non_negative)
    use_container_uid: bool = False
    privileged: bool = False
    queue: str = "default"
    # Seconds an execution's logs are kept; None: the platform's default.
    log_ex: int | None = attrs.field(default=None, validator=_optional_non_negative)
    cron_schedule: str | None = None
    cron_on: bool = False
    # Abaco's "yyyy-mm-dd hh" form of the next scheduled run.
    cron_next_ex: str | None = None
    mounts: list[dict[str, str]] = attrs.field(factory=list)
    uid: str | None = None
    gid: str | None = None
    revision: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    tenant: str = DEFAULT_TENANT
    api_server: str = ""
    create_time: datetime = attrs.field(factory=utcnow, validator=_utc)
    last_update_time: datetime = attrs.field(
        default=attrs.Factory(lambda self: self.create_time, takes_self=True), validator=_utc
    )


@attrs.define(frozen=True, kw_only=True)
class Worker:
    """A process on some host that takes an actor's messages and runs them one by one."""

    SCHEMA_VERSION: ClassVar[int] = 1

    id: str
    actor_id: str
    tenant: str = DEFAULT_TENANT
    # The address of the worker's command channel.
    ch_name: str = ""
    status: WorkerStatus = attrs.field(
        default=WorkerStatus.REQUESTED, validator=attrs.validators.instance_of(WorkerStatus)
    )
    # The host's address as the spawner reports it.
    location: str = ""
    host_id: str = ""
    image: str = ""
    pid: int | None = attrs.field(default=None, validator=_optional_non_negative)
    create_time: datetime = attrs.field(factory=utcnow, validator=_utc)
    last_execution_time: datetime | None = attrs.field(default=None, validator=_optional_utc)
    last_health_check_time: datetime | None = attrs.field(default=None, validator=_optional_utc)


@attrs.define(frozen=True, kw_only=True)
class Execution:
    """One run of an actor for one message, with its outcome and resource use."""

    SCHEMA_VERSION: ClassVar[int] = 1

    id: str
    actor_id: str
    # None until a worker claims the message.
    worker_id: str | None = None
    # The user who sent the message.
    executor: str = ""
    status: ExecutionStatus = attrs.field(
        default=ExecutionStatus.SUBMITTED, validator=attrs.validators.instance_of(ExecutionStatus)
    )
    message_received_time: datetime = attrs.field(factory=utcnow, validator=_utc)
    start_time: datetime | None = attrs.field(default=None, validator=_optional_utc)
    finish_time: datetime | None = attrs.field(default=None, validator=_optional_utc)
    # What the runner reports about the ended process (Abaco: the container's state).
    final_state: dict[str, Any] | None = None
    # Wall-clock seconds, CPU nanoseconds, and bytes read plus written.
    runtime: int = attrs.field(default=0, validator=_non_negative)
    cpu: int = attrs.field(default=0, validator=_non_negative)
    io: int = attrs.field(default=0, validator=_non_negative)
    exit_code: int | None = None
    status_message: str = ""
    tenant: str = DEFAULT_TENANT


def _one_target(nonce: "Nonce", attribute: "attrs.Attribute[Any]", alias: str | None) -> None:
    if (nonce.actor_id is None) == (alias is None):
        raise ValueError("a nonce is for exactly one of actor_id and alias")


def _nonce_level(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, PermissionLevel) or value is PermissionLevel.NONE:
        raise ValueError(f"level must be READ, EXECUTE or UPDATE, not {value!r}")


def _consistent_remaining(nonce: "Nonce", attribute: "attrs.Attribute[Any]", value: int) -> None:
    if value != _remaining_uses(nonce):
        raise ValueError(
            f"remaining_uses is {value!r} but max_uses {nonce.max_uses} and current_uses "
            f"{nonce.current_uses} leave {_remaining_uses(nonce)}"
        )


@attrs.define(frozen=True, kw_only=True)
class Nonce:
    """A token that lets its bearer act on one actor or alias at one level, a few times."""

    SCHEMA_VERSION: ClassVar[int] = 1

    id: str
    owner: str
    actor_id: str | None = None
    alias: str | None = attrs.field(default=None, validator=_one_target)
    tenant: str = DEFAULT_TENANT
    level: PermissionLevel = attrs.field(default=PermissionLevel.EXECUTE, validator=_nonce_level)
    # -1: unlimited, for max_uses and remaining_uses alike.
    max_uses: int = attrs.field(default=-1, validator=_uses)
    current_uses: int = attrs.field(default=0, validator=_non_negative)
    remaining_uses: int = attrs.field(
        default=attrs.Factory(_remaining_uses, takes_self=True),
        validator=[_uses, _consistent_remaining],
    )
    create_time: datetime = attrs.field(factory=utcnow, validator=_utc)
    last_use_time: datetime | None = attrs.field(default=None, validator=_optional_utc)
    description: str = ""
    roles: list[str] = attrs.field(factory=list)
    api_server: str = ""


@attrs.define(frozen=True, kw_only=True)
class Alias:
    """A stable, user-chosen name that points at an actor id."""

    SCHEMA_VERSION: ClassVar[int] = 1

    alias: str
    actor_id: str
    owner: str
    tenant: str = DEFAULT_TENANT
    description: str = ""


@attrs.define(frozen=True, kw_only=True)
class Permission:
    """What one user may do with one actor or alias."""

    SCHEMA_VERSION: ClassVar[int] = 1

    # The actor id or alias the permission is about.
    resource_id: str
    user: str
    level: PermissionLevel = attrs.field(validator=attrs.validators.instance_of(PermissionLevel))
    tenant: str = DEFAULT_TENANT


# -- conversion ---------------------------------------------------------------------------


def _unstructure_datetime(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"


def _structure_datetime(value: object, _: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        raise TypeError(f"expected an ISO-8601 string, not {value!r}")
    if moment.utcoffset() is None:
        raise ValueError(f"a datetime needs a time zone: {value!r}")
    return moment.astimezone(UTC)


def _structure_member(value: object, kind: type[enum.Enum]) -> enum.Enum:
    # By name: the statuses' names are their values, and levels travel as "READ"...
    if isinstance(value, kind):
        return value
    if type(value) is str and value in kind.__members__:
        return kind[value]
    raise ValueError(f"expected one of {', '.join(kind.__members__)}, not {value!r}")


def _exactly(kind: type) -> Callable[[object, object], Any]:
    def structure(value: object, _: object) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, not {value!r}")
        return value

    return structure


def _structure_str_list(value: object, _: object) -> list[str]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list of strings, not {value!r}")
    return [_exactly(str)(item, str) for item in value]


def _structure_str_dict(value: object, _: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping of strings to strings, not {value!r}")
    return {_exactly(str)(k, str): _exactly(str)(v, str) for k, v in value.items()}


def _structure_dict_list(value: object, _: object) -> list[dict[str, str]]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list of mappings, not {value!r}")
    return [_structure_str_dict(item, None) for item in value]


def _structure_any_dict(value: object, _: object) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"expected a mapping with string keys, not {value!r}")
    return dict(value)


def _is(kind: object) -> Callable[[object], bool]:
    return lambda t: t == kind


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_unstructure_hook(datetime, _unstructure_datetime)
    conv.register_structure_hook(datetime, _structure_datetime)
    conv.register_unstructure_hook(PermissionLevel, lambda level: level.name)
    conv.register_structure_hook(PermissionLevel, _structure_member)
    # cattrs would call str(None) or int("12"); a record must not be built from a guess.
    # These are class hooks, so they also catch subclasses such as the StrEnum statuses,
    # whose own hook is registered on StrEnum to be the more specific one.
    for kind in (str, int, bool):
        conv.register_structure_hook(kind, _exactly(kind))
    conv.register_structure_hook(enum.StrEnum, _structure_member)
    conv.register_unstructure_hook(enum.StrEnum, lambda status: status.value)
    for generic, hook in (
        (list[str], _structure_str_list),
        (dict[str, str], _structure_str_dict),
        (list[dict[str, str]], _structure_dict_list),
        (dict[str, Any], _structure_any_dict),
    ):
        conv.register_structure_hook_func(_is(generic), hook)
    return conv


converter = _make_converter()
"""Turns records into plain JSON/msgpack values (``unstructure``) and back (``structure``)."""


def _describe(exc: BaseException, kind: type | None) -> str:
    # Our hooks and validators word their errors for people; cattrs' generic wording is
    # kept only for missing and unknown keys, where it is the clearer one.
    if isinstance(exc, KeyError | cattrs.ForbiddenExtraKeysError) or not str(exc):
        return cattrs.v.format_exception(exc, kind)
    return str(exc)


def to_dict(record: AttrsInstance) -> dict[str, Any]:
    """The record as a dict of plain values, ready for JSON or msgpack."""
    result: dict[str, Any] = converter.unstructure(record)
    return result


def from_dict(cls: type[Record], data: Mapping[str, Any]) -> Record:
    """Build a ``cls`` from what :func:`to_dict` made.

    Raises BadRequest, saying which fields are wrong, if ``data`` does not fit ``cls``.
    """
    if not isinstance(data, Mapping):
        raise BadRequest(f"invalid {cls.__name__}: expected an object, not {data!r}")
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc, format_exception=_describe))
        raise BadRequest(f"invalid {cls.__name__}: {problems}") from exc
    except (cattrs.errors.CattrsError, ValueError, TypeError) as exc:
        raise BadRequest(f"invalid {cls.__name__}: {exc}") from exc


def fields_of(cls: type[AttrsInstance]) -> tuple[str, ...]:
    """The names of the fields of the record class ``cls``, in declaration order."""
    return tuple(field.name for field in attrs.fields(cls))
