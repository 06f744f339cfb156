"""Durable storage of entity records: the :class:`Storage` extension point.

Implementations are found through the ``abaco.storage`` entry point group, one entry per
URL scheme, each naming a function ``url -> AsyncContextManager[Storage]``. Two ship with
abaco: ``sqlite`` (embedded default) and ``postgresql``. :func:`open_storage` picks one
from the URL. Importing this package does not import psycopg; only a PostgreSQL URL does.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from abaco.errors import BadRequest
from abaco.storage.base import Storage as Storage

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

__all__ = ["Storage", "open_storage", "storage_factories"]

#: Entry point group of storage implementations.
ENTRY_POINT_GROUP = "abaco.storage"

# The built-in implementations, used when the entry points are not installed: an editable
# install made before pyproject.toml declared them has no entry point metadata until it
# is reinstalled, and abaco must still open its own default storage then.
_BUILTIN = {
    "sqlite": "abaco.storage.sqlite:open_sqlite",
    "postgresql": "abaco.storage.postgres:open_postgres",
    "postgres": "abaco.storage.postgres:open_postgres",
}


def _load(target: str) -> Callable[[str], AbstractAsyncContextManager[Storage]]:
    module, _, name = target.partition(":")
    factory = getattr(importlib.import_module(module), name)
    return cast("Callable[[str], AbstractAsyncContextManager[Storage]]", factory)


def storage_factories() -> dict[str, str]:
    """Scheme -> ``module:function`` of every known implementation, entry points first."""
    found = dict(_BUILTIN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found[point.name] = point.value
    return found


def open_storage(url: str) -> AbstractAsyncContextManager[Storage]:
    """The storage for ``url`` (``sqlite:///path``, ``postgresql://...``), as a context.

    :class:`~abaco.errors.BadRequest` for a scheme no implementation handles;
    :class:`~abaco.errors.StoreUnavailable` (on entering) when the database cannot be
    reached.
    """
    scheme = urlsplit(url).scheme
    target = storage_factories().get(scheme)
    if target is None:
        known = ", ".join(sorted(storage_factories()))
        raise BadRequest(f"storage URL {url!r}: no storage for scheme {scheme!r} ({known})")
    return _load(target)(url)
