"""The bodies the API accepts, parsed strictly, and their JSON Schema for ``/openapi.json``.

Resource objects (actors, permissions, workers requests) reject unknown fields and wrong
types with a 400 that names them; a field left out means "not given" (``None``), so an
update changes only what it names. Message bodies are not resource objects and are
parsed in :mod:`abaco.api.messages`.
"""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

import attrs
import cattrs
import cattrs.v

from abaco.errors import BadRequest

__all__ = [
    "ActorSpec",
    "AliasSpec",
    "ConfigSpec",
    "NonceSpec",
    "PermissionSpec",
    "RevokeSpec",
    "TokenSpec",
    "WorkersSpec",
    "json_schema",
    "parse",
]

Spec = TypeVar("Spec", bound=attrs.AttrsInstance)


@attrs.frozen(kw_only=True)
class ActorSpec:
    """What a client may say about an actor (POST /actors, PUT /actors/ID)."""

    image: str | None = None
    name: str | None = None
    description: str | None = None
    default_environment: dict[str, str] | None = None
    stateless: bool | None = None
    #: ``"none"`` or ``"bin"`` (messages are raw bytes).
    type: str | None = None
    token: bool | None = None
    #: Free-form tags; ``host:LABEL`` places workers on hosts with that label.
    hints: list[str] | None = None
    link: str | None = None
    webhook: str | None = None
    max_workers: int | None = None
    mem_limit: str | None = None
    max_cpus: int | None = None
    use_container_uid: bool | None = None
    privileged: bool | None = None
    queue: str | None = None
    log_ex: int | None = None
    cron_schedule: str | None = None
    cron_on: bool | None = None
    mounts: list[dict[str, str]] | None = None
    #: PUT only: restart the workers even though the image did not change.
    force: bool | None = None

    def given(self) -> dict[str, Any]:
        """The fields the client named, except ``force``."""
        return {
            k: v
            for k, v in attrs.asdict(self, recurse=False).items()
            if v is not None and k != "force"
        }


@attrs.frozen(kw_only=True)
class PermissionSpec:
    """A permission grant (POST /actors/ID/permissions)."""

    user: str
    level: str


@attrs.frozen(kw_only=True)
class AliasSpec:
    """An alias (POST /actors/aliases needs ``alias`` and ``actor_id``; PUT only ``actor_id``)."""

    alias: str | None = None
    actor_id: str | None = None
    description: str | None = None


@attrs.frozen(kw_only=True)
class ConfigSpec:
    """An actor config (POST /actors/configs needs every field; PUT all but ``name``)."""

    name: str | None = None
    value: str | None = None
    #: Comma-separated actor ids and aliases, as in Abaco.
    actors: str | None = None
    is_secret: bool | None = None


@attrs.frozen(kw_only=True)
class NonceSpec:
    """A nonce (POST /actors/ID/nonces); every field has a default, so ``{}`` will do."""

    #: READ, EXECUTE (the default) or UPDATE.
    level: str | None = None
    #: How many requests the nonce may authenticate; -1 (the default) is unlimited.
    max_uses: int | None = None
    description: str | None = None


@attrs.frozen(kw_only=True)
class TokenSpec:
    """A token to issue (POST /tokens)."""

    user: str
    tenant: str | None = None
    role: str | None = None


@attrs.frozen(kw_only=True)
class RevokeSpec:
    """A token to revoke (POST /tokens/revoke)."""

    token: str


@attrs.frozen(kw_only=True)
class WorkersSpec:
    """How many workers an actor should have (POST /actors/ID/workers)."""

    num: int | None = None


def _exactly(kind: type) -> Any:
    def structure(value: object, _: object) -> Any:
        # bool is an int to Python, not to a client.
        if type(value) is not kind:
            raise TypeError(
                f"expected {_JSON_NAMES[kind]}, not {type(value).__name__} {value!r:.40}"
            )
        return value

    return structure


_JSON_NAMES = {str: "a string", int: "an integer", bool: "a boolean"}


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    for kind in (str, int, bool):
        conv.register_structure_hook(kind, _exactly(kind))
    return conv


_converter_instance = _converter()


def parse(cls: type[Spec], data: object) -> Spec:
    """Build a ``cls`` from a decoded JSON body; :class:`BadRequest` naming each problem."""
    name = cls.__name__.removesuffix("Spec").lower()
    if not isinstance(data, dict):
        raise BadRequest(f"Invalid {name} description: expected a JSON object.")
    if cls is ActorSpec and isinstance(data.get("hints"), str):
        data = {**data, "hints": [data["hints"]]}  # Abaco takes a single hint as a string
    try:
        return _converter_instance.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc, format_exception=_describe))
        raise BadRequest(f"Invalid {name} description: {problems}") from exc
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"Invalid {name} description: {exc}") from exc


def _describe(exc: BaseException, kind: type | None) -> str:
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown fields {sorted(exc.extra_fields)}"
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc) or cattrs.v.format_exception(exc, kind)


def _type_schema(kind: Any) -> dict[str, Any]:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(a) for a in args if a is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    return {str: {"type": "string"}, int: {"type": "integer"}, bool: {"type": "boolean"}}[kind]


def json_schema(cls: type[attrs.AttrsInstance]) -> dict[str, Any]:
    """The JSON Schema of a spec class: its fields, which are required, nothing else allowed."""
    hints = typing.get_type_hints(cls)
    fields = attrs.fields(cls)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: _type_schema(hints[f.name]) for f in fields},
        "additionalProperties": False,
    }
    required = [f.name for f in fields if f.default is attrs.NOTHING]
    if required:
        schema["required"] = required
    if cls is ActorSpec:
        # A single hint may be a plain string, as in Abaco.
        schema["properties"]["hints"] = {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        }
    return schema
