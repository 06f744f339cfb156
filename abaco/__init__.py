"""abaco: an actor platform on trio, Redis/Valkey and 0MQ.

Layers, bottom up: ``errors`` (the exception tree) and ``config`` (settings) depend on
nothing else; ``actors`` holds the domain (ids, records, life cycles); ``redis_client``
is the only module that touches the Redis client library; ``stores`` builds typed stores
on it; ``valkey`` runs the embedded server. This module re-exports the small public
surface and does no I/O. ``Settings`` and ``load_settings`` load on first use (PEP 562):
actor code in every zygote imports this package and should not pay for the config reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from abaco.errors import AbacoError as AbacoError
from abaco.errors import Aborted as Aborted
from abaco.errors import BadRequest as BadRequest
from abaco.errors import BundleError as BundleError
from abaco.errors import ChannelClosed as ChannelClosed
from abaco.errors import ChannelError as ChannelError
from abaco.errors import ChannelTimeout as ChannelTimeout
from abaco.errors import ConfigError as ConfigError
from abaco.errors import Conflict as Conflict
from abaco.errors import DestinationUnavailable as DestinationUnavailable
from abaco.errors import InvalidTransition as InvalidTransition
from abaco.errors import NotFound as NotFound
from abaco.errors import PermissionDenied as PermissionDenied
from abaco.errors import RemoteError as RemoteError
from abaco.errors import RunnerError as RunnerError
from abaco.errors import SchemaError as SchemaError
from abaco.errors import SendFailed as SendFailed
from abaco.errors import StoreError as StoreError
from abaco.errors import StoreUnavailable as StoreUnavailable
from abaco.errors import ValkeyError as ValkeyError
from abaco.errors import WireError as WireError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from abaco.config import Settings as Settings
    from abaco.config import load_settings as load_settings

_LAZY = {"Settings", "load_settings"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import abaco.config

    value = getattr(abaco.config, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
