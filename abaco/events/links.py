"""Links between actors: resolving a link, and refusing links that would make a cycle.

An actor's ``link`` names another actor of its tenant, by id or alias; the linked actor
gets each event of the first as a message. Each actor has at most one link, so the links
of a tenant form a graph in which every node has at most one way out, and a cycle (events
that would go round for ever) is a walk that comes back to a node it passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from abaco.errors import NotFound

if TYPE_CHECKING:
    from collections.abc import Mapping

    from abaco.actors.models import Actor
    from abaco.stores import Stores

__all__ = ["has_cycles", "link_graph", "resolve_link"]

_PAGE = 500


def has_cycles(links: Mapping[str, str]) -> bool:
    """Whether following the links ``{from: to}`` can come back to where it started."""
    acyclic: set[str] = set()  # nodes from which every walk ends
    for start in links:
        path: set[str] = set()
        node = start
        while node in links and node not in acyclic:
            if node in path:
                return True
            path.add(node)
            node = links[node]
        acyclic |= path
    return False


async def resolve_link(stores: Stores, link: str) -> Actor:
    """The actor ``link`` names (an actor id or an alias); NotFound when there is none."""
    try:
        return await stores.actors.get(link)
    except NotFound:
        pass
    alias = await stores.aliases.get(link)  # NotFound when it is no alias either
    return await stores.actors.get(alias.actor_id)


async def link_graph(stores: Stores) -> dict[str, str]:
    """Every link of the tenant as ``{actor id: linked actor id}``.

    A link that no longer resolves (its actor or alias was deleted) leads nowhere and is
    left out.
    """
    linked: dict[str, str] = {}
    cursor: str | None = None
    while True:
        page = await stores.actors.list(cursor=cursor, limit=_PAGE)
        linked |= {actor.id: actor.link for actor in page.items if actor.link}
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    graph: dict[str, str] = {}
    resolved: dict[str, str | None] = {}
    for actor_id, link in linked.items():
        if link not in resolved:
            try:
                resolved[link] = (await resolve_link(stores, link)).id
            except NotFound:
                resolved[link] = None
        target = resolved[link]
        if target is not None:
            graph[actor_id] = target
    return graph
