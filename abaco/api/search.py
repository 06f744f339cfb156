"""Search routes: ``GET /actors/search/{actors,workers,executions,logs}``, Abaco's search.

The query string is parsed by :mod:`abaco.api.search_query` and each record tested by
:mod:`abaco.api.search_match`; this module finds the records the caller may read and
pages the matches. The answer is Abaco's: ``{"_metadata": {"total_count",
"records_skipped", "record_limit", "count_returned"}, "search": [...]}``, matches in id
order (creation order), or by how many ``search`` words they hold when there are words.

Who sees what: an admin every record of its tenant; anyone else the actors they may read
(their own, those shared with them or with ``ABACO_WORLD``) and those actors' workers,
executions and logs. Fields internal to the platform (``tenant``, an actor's
``api_server``) are neither shown nor searchable.

How it scales: records are read from Redis, not from durable storage, because Redis is
where the live state is (a RUNNING execution, a worker, an actor changed a moment ago),
whereas durable storage lags behind the persistence drainer and holds no workers. A pass
reads the stores' id indexes 500 ids per round trip, with only the fields the
conditions name (:mod:`abaco.api.scan`); records are tested here in Python, which keeps
the server free (a Lua filter would block Redis for the whole pass, and could not run RE2
patterns); only the page returned is read whole. A caller who is not an admin scans only
the indexes of the actors it may read. Full-text terms need every field, so they read
whole records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from quart import Blueprint, request

from abaco.actors.models import Actor, Execution, Worker, from_dict
from abaco.api.access import WORLD_USER
from abaco.api.context import api_server, identity, redis, stores
from abaco.api.display import actor_view, execution_view, worker_view
from abaco.api.envelope import ok
from abaco.api.scan import Keyspace, hashes, log_texts, plain, scan
from abaco.api.search_match import matches, text_of, text_score
from abaco.api.search_query import Kind, SearchQuery, kinds_of, parse_query
from abaco.errors import BadRequest

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SEARCHABLE", "blueprint", "readable_actor_ids"]

blueprint = Blueprint("search", __name__)

#: Logs fetched per round trip (a log may be up to ``[stores] log_max_bytes``).
_LOG_BATCH = 20


@attrs.frozen
class _Collection:
    """One searchable kind of record."""

    #: The record kind in the keyspace (``execution``); empty for logs.
    kind: str
    fields: dict[str, Kind]
    hidden: frozenset[str]


_ACTOR_HIDDEN = frozenset({"tenant", "api_server"})
_HIDDEN = frozenset({"tenant"})

_COLLECTIONS = {
    "actors": _Collection("actor", kinds_of(Actor, _ACTOR_HIDDEN), _ACTOR_HIDDEN),
    "workers": _Collection("worker", kinds_of(Worker, _HIDDEN), _HIDDEN),
    "executions": _Collection("execution", kinds_of(Execution, _HIDDEN), _HIDDEN),
    "logs": _Collection(
        "",
        {"execution_id": Kind.TEXT, "actor_id": Kind.TEXT, "logs": Kind.TEXT},
        frozenset(),
    ),
}

#: The searchable fields of each search type (for documentation and tests).
SEARCHABLE = {name: dict(c.fields) for name, c in _COLLECTIONS.items()}


@attrs.frozen
class _Hit:
    record_id: str
    score: int
    #: The whole plain record, when the pass read it whole.
    record: dict[str, Any] | None


async def readable_actor_ids() -> frozenset[str] | None:
    """The ids of the actors the caller may read; None for an admin (every actor)."""
    caller = identity()
    if caller.is_admin:
        return None
    keys = Keyspace.of(stores())
    found: set[str] = set()
    # Any level the user (or everyone) holds is at least READ: NONE is never stored.
    async for actor_id, _ in scan(
        redis(), keys.index("actor"), keys.permissions_prefix(), [caller.user, WORLD_USER], raw=True
    ):
        found.add(actor_id)
    return frozenset(found)


def _visible(record: dict[str, Any], hidden: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in hidden} if hidden else record


def _passes(query: SearchQuery, visible: dict[str, Any]) -> int | None:
    """The record's score when it matches ``query``, else None."""
    if not matches(query, visible):
        return None
    return text_score(query, text_of(visible)) if query.full_text else 0


async def _select(
    collection: _Collection, query: SearchQuery, scope: frozenset[str] | None
) -> list[_Hit]:
    """The matching records the caller may read, in result order."""
    keys = Keyspace.of(stores())
    kind = collection.kind
    if scope is None or kind == "actor":
        indexes = [keys.index(kind)]
    else:
        indexes = [keys.actor_index(actor_id, kind) for actor_id in sorted(scope)]
    # "_rev" is in every record: asking for it tells a record from an expired index entry.
    wanted = [] if query.full_text else ["_rev", *sorted(query.fields())]
    hits: list[_Hit] = []
    for index in indexes:
        async for record_id, values in scan(redis(), index, keys.prefix(kind), wanted):
            if kind == "actor" and scope is not None and record_id not in scope:
                continue
            record = values
            score = _passes(query, _visible(record, collection.hidden))
            if score is not None:
                hits.append(_Hit(record_id, score, record if query.full_text else None))
    if len(indexes) > 1:
        hits.sort(key=lambda hit: hit.record_id)
    if query.words:
        hits.sort(key=lambda hit: -hit.score)  # stable: id order among equals
    return hits


async def _select_logs(query: SearchQuery, scope: frozenset[str] | None) -> list[_Hit]:
    """The executions whose logs match ``query``, of the actors the caller may read."""
    keys = Keyspace.of(stores())
    if scope is None:
        indexes = [keys.index("execution")]
    else:
        indexes = [keys.actor_index(actor_id, "execution") for actor_id in sorted(scope)]
    hits: list[_Hit] = []
    batch: list[tuple[str, str]] = []

    async def test_batch() -> None:
        texts = await log_texts(redis(), [keys.log_key(eid) for eid, _ in batch])
        for (execution_id, actor_id), text in zip(batch, texts, strict=True):
            if text is None:
                continue  # expired, or never written
            record = {"execution_id": execution_id, "actor_id": actor_id, "logs": text}
            score = _passes(query, record)
            if score is not None:
                # Not the text: a page's logs are read again, so that hits stay small.
                hits.append(_Hit(execution_id, score, {"actor_id": actor_id}))
        batch.clear()

    for index in indexes:
        async for execution_id, values in scan(
            redis(), index, keys.prefix("execution"), ["actor_id"]
        ):
            batch.append((execution_id, str(values.get("actor_id", ""))))
            if len(batch) == _LOG_BATCH:
                await test_batch()
    if batch:
        await test_batch()
    if len(indexes) > 1:
        hits.sort(key=lambda hit: hit.record_id)
    if query.words:
        hits.sort(key=lambda hit: -hit.score)
    return hits


def _renderer(name: str, hidden: frozenset[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    base = api_server()

    def actor(record: dict[str, Any]) -> dict[str, Any]:
        return actor_view(from_dict(Actor, record), base)

    def worker(record: dict[str, Any]) -> dict[str, Any]:
        return worker_view(from_dict(Worker, record))

    def execution(record: dict[str, Any]) -> dict[str, Any]:
        found = from_dict(Execution, record)
        # Abaco's search links the owner to the execution's executor.
        return execution_view(found, found.executor, base)

    view = {"actors": actor, "workers": worker, "executions": execution}[name]

    def render(record: dict[str, Any]) -> dict[str, Any]:
        return _visible(view(record), hidden)

    return render


async def _render(name: str, collection: _Collection, page: list[_Hit]) -> list[dict[str, Any]]:
    keys = Keyspace.of(stores())
    prefix = keys.prefix(collection.kind)
    missing = [hit.record_id for hit in page if hit.record is None]
    fetched = dict(zip(missing, await hashes(redis(), [prefix + i for i in missing]), strict=True))
    render = _renderer(name, collection.hidden)
    found: list[dict[str, Any]] = []
    for hit in page:
        record = hit.record
        if record is None:
            flat = fetched[hit.record_id]
            if not flat:
                continue  # deleted (or expired) since the pass
            record = plain(flat)
        found.append(render(record))
    return found


async def _render_logs(page: list[_Hit]) -> list[dict[str, Any]]:
    keys = Keyspace.of(stores())
    ids = [hit.record_id for hit in page]
    texts = await log_texts(redis(), [keys.log_key(i) for i in ids])
    actor_ids = sorted({str((hit.record or {}).get("actor_id", "")) for hit in page})
    actors = await hashes(redis(), [keys.prefix("actor") + a for a in actor_ids])
    owners = {
        a: plain(flat).get("owner", "") for a, flat in zip(actor_ids, actors, strict=True) if flat
    }
    base = api_server()
    found: list[dict[str, Any]] = []
    for hit, text in zip(page, texts, strict=True):
        if text is None:
            continue  # expired since the pass
        actor_id = str((hit.record or {}).get("actor_id", ""))
        link = f"{base}/actors/{actor_id}/executions/{hit.record_id}"
        found.append(
            {
                "execution_id": hit.record_id,
                "actor_id": actor_id,
                "logs": text,
                "_links": {
                    "self": f"{link}/logs",
                    "owner": f"{base}/profiles/v2/{owners.get(actor_id, '')}",
                    "execution": link,
                },
            }
        )
    return found


async def run_search(name: str, args: list[tuple[str, str]]) -> dict[str, Any]:
    """Abaco's search result (``_metadata`` and ``search``) for search type ``name``."""
    collection = _COLLECTIONS.get(name)
    if collection is None:
        raise BadRequest(f"Invalid search type {name!r}: must be one of {', '.join(_COLLECTIONS)}.")
    query = parse_query(args, collection.fields)
    scope = await readable_actor_ids()
    if name == "logs":
        hits = await _select_logs(query, scope)
    else:
        hits = await _select(collection, query, scope)
    page = hits[query.skip : query.skip + query.limit]
    found = await _render_logs(page) if name == "logs" else await _render(name, collection, page)
    return {
        "_metadata": {
            "total_count": len(hits),
            "records_skipped": query.skip,
            "record_limit": query.limit,
            "count_returned": len(found),
        },
        "search": found,
    }


@blueprint.get("/actors/search/<search_type>")
async def search(search_type: str) -> dict[str, Any]:
    """Search the actors, workers, executions or logs the caller may read."""
    args = list(request.args.items(multi=True))
    return ok(await run_search(search_type, args), "Search completed successfully.")
