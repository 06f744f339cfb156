"""Actor configs: named values that several actors share, in their executions' environment.

As in Abaco, a config has a ``name`` (unique in its tenant), a ``value``, the ``actors`` it
applies to (a comma-separated string of actor ids and aliases) and ``is_secret``. Every
execution of an actor sees, in the variable ``_actor_configs``, a JSON object of the
configs that name it directly or through an alias that points at it now; Abaco put the
same mapping there (as the Python text of a dict).

A secret's value is encrypted at rest with Fernet (AES-128-CBC with an HMAC), under the
key ``[auth] config_key`` or, when that is empty, a key made on first use in the state
dir (mode 0600), as :func:`abaco.auth.admin_token` does for the admin token. The API
shows a secret only as its ciphertext, as Abaco does; only the worker decrypts it.

Configs have permissions of their own, in a :class:`~abaco.stores.PermissionStore` apart
from the actors' (keys ``P:T:config:permissions:NAME``), so a config may share its name
with an actor or alias.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import attrs
import structlog

from abaco.actors.ids import is_valid_id
from abaco.actors.models import DEFAULT_TENANT
from abaco.errors import BadRequest, ConfigError, NotFound

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from abaco.actors.models import Actor
    from abaco.config import Settings
    from abaco.stores import Stores

__all__ = [
    "CONFIGS_VARIABLE",
    "RESERVED_CONFIG_NAMES",
    "ActorConfig",
    "check_config_name",
    "configs_for",
    "decrypt",
    "encrypt",
    "environment_value",
    "execution_configs",
    "identifiers_of",
]

_log = structlog.get_logger(__name__)

#: The environment variable that carries an execution's configs (Abaco's name).
CONFIGS_VARIABLE = "_actor_configs"

#: Abaco's reserved words for config names.
RESERVED_CONFIG_NAMES = frozenset(
    {"executions", "nonces", "logs", "messages", "adapters", "admin", "utilization"}
)

# The characters Abaco allows (it forbids URL delimiters and spaces), narrowed to what is
# URL-safe unescaped; the first a letter or digit, so "_ids" (a store key) is out.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")

# What an entry of ``actors`` may be: an actor id or an alias name.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")


@attrs.define(frozen=True, kw_only=True)
class ActorConfig:
    """A named value shared by the actors and aliases listed in ``actors``."""

    SCHEMA_VERSION: ClassVar[int] = 1

    name: str
    #: The value as stored: for a secret, its Fernet ciphertext.
    value: str
    #: Comma-separated actor ids and aliases, as Abaco takes and shows them.
    actors: str
    is_secret: bool = False
    tenant: str = DEFAULT_TENANT


def check_config_name(name: str) -> None:
    """BadRequest, saying why, unless ``name`` may name a config."""
    if name.lower() in RESERVED_CONFIG_NAMES:
        raise BadRequest(
            f"{name} is a reserved word. The following reserved words cannot be used for a "
            f"config: {sorted(RESERVED_CONFIG_NAMES)}."
        )
    if not _NAME.fullmatch(name):
        raise BadRequest(
            f"Invalid config description: name {name!r} must be 1 to 128 letters, digits, "
            "'.', '_', '~' or '-', starting with a letter or digit."
        )


def identifiers_of(actors: str) -> list[str]:
    """The actor ids and aliases of a comma-separated ``actors`` string, in order, once each.

    BadRequest when an entry is empty or could be neither an actor id nor an alias.
    """
    found: list[str] = []
    for part in actors.split(","):
        identifier = part.strip()
        if not _IDENTIFIER.fullmatch(identifier):
            raise BadRequest(
                f"Could not parse the actors parameter ({actors!r:.200}). It should be a "
                "comma-separated list of actor ids or alias ids."
            )
        if identifier not in found:
            found.append(identifier)
    return found


# -- encryption ---------------------------------------------------------------------------


def _key_file(settings: Settings) -> Path:
    return settings.state.path() / "config-key"


def _write_new_key(path: Path) -> None:
    """Write a new key to ``path`` unless another process already has (never half a file)."""
    from cryptography.fernet import Fernet

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-key-")
    try:
        with os.fdopen(fd, "w") as file:  # mkstemp makes it 0600
            file.write(Fernet.generate_key().decode() + "\n")
        # A hard link fails if the name exists: of several processes, the first one wins,
        # and readers only ever see a whole key.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


@functools.cache
def _fernet(configured: str, key_file: str) -> Fernet:
    # Imported here: every process opens the stores, few need the key (41 ms to import).
    from cryptography.fernet import Fernet

    # Cached: the key of a running platform never changes, and the file is read once.
    key = configured
    if not key:
        path = Path(key_file)
        if not path.exists():
            _write_new_key(path)
        key = path.read_text().strip()
    try:
        if len(base64.urlsafe_b64decode(key.encode())) != 32:
            raise ValueError("not 32 bytes")
        return Fernet(key.encode())
    except (binascii.Error, ValueError) as exc:
        where = "[auth] config_key" if configured else key_file
        raise ConfigError(f"{where}: not a Fernet key (32 bytes, url-safe base64)") from exc


def _fernet_for(settings: Settings) -> Fernet:
    return _fernet(settings.auth.config_key, str(_key_file(settings)))


def encrypt(settings: Settings, value: str) -> str:
    """``value`` encrypted under the platform's config key (a Fernet token, as text)."""
    return _fernet_for(settings).encrypt(value.encode()).decode()


def decrypt(settings: Settings, token: str) -> str:
    """The value a Fernet token from :func:`encrypt` holds.

    ConfigError when the token was made under another key (or is not a token at all).
    """
    from cryptography.fernet import InvalidToken

    try:
        return _fernet_for(settings).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ConfigError(
            "a secret actor config cannot be decrypted: it was encrypted under another "
            "key (set the same [auth] config_key on every host)"
        ) from exc


# -- lookup for an execution --------------------------------------------------------------


async def configs_for(stores: Stores, actor: Actor) -> list[ActorConfig]:
    """The configs that name ``actor``'s id, or an alias that points at it now."""
    aliases: dict[str, bool] = {}

    async def points_here(name: str) -> bool:
        if name not in aliases:
            try:
                aliases[name] = (await stores.aliases.get(name)).actor_id == actor.id
            except (NotFound, BadRequest):
                aliases[name] = False
        return aliases[name]

    found: list[ActorConfig] = []
    cursor: str | None = None
    # A tenant has few configs, so each execution reads them all; with none, that is one
    # round trip.
    while True:
        page = await stores.configs.list(cursor=cursor, limit=100)
        for config in page.items:
            for name in config.actors.split(","):
                name = name.strip()
                if name == actor.id or (not is_valid_id(name) and await points_here(name)):
                    found.append(config)
                    break
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def execution_configs(stores: Stores, settings: Settings, actor: Actor) -> dict[str, str]:
    """The configs an execution of ``actor`` sees, by name, secrets decrypted.

    A secret that does not decrypt (another host's key) is left out and logged, as Abaco
    leaves out a config it cannot read, so the execution still runs.
    """
    values: dict[str, str] = {}
    for config in await configs_for(stores, actor):
        if not config.is_secret:
            values[config.name] = config.value
            continue
        try:
            values[config.name] = decrypt(settings, config.value)
        except ConfigError as exc:
            _log.warning("configs.undecryptable", config=config.name, error=str(exc))
    return values


def environment_value(configs: dict[str, str]) -> str:
    """The text of ``_actor_configs`` for these configs (a JSON object)."""
    return json.dumps(configs, sort_keys=True)
