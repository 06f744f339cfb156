"""The REST API application: ``create_app(settings)`` and ``serve_api``.

Routes live in one module per resource; this module wires them, authenticates every
request but the public ones (health, metrics, the OpenAPI document, reading bundles),
holds each user to the published request rate, and turns every error into Abaco's JSON
envelope with the status from :mod:`abaco.api.envelope`. :func:`serve_api` opens the
shared resources (Redis, the channel hub) once for the server's lifetime.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, jsonify, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from abaco.api import (
    actors,
    admin,
    aliases,
    configs,
    cron,
    executions,
    messages,
    nonces,
    ops,
    repository,
    search,
    tokens,
    workers,
)
from abaco.api.context import Resources, authenticate, identity
from abaco.api.cors import apply_cors
from abaco.api.envelope import PayloadTooLarge, TooManyRequests, error, ok, status_of
from abaco.api.ratelimit import RateLimiter
from abaco.bundles.archive import ArchiveLimits
from abaco.bundles.repository import Repository
from abaco.channels import open_hub
from abaco.errors import AbacoError
from abaco.jwt_auth import JwtVerifier
from abaco.redis_client import open_configured_redis

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from abaco.config import Settings

__all__ = ["create_app", "serve_api"]

_log = structlog.get_logger(__name__)


#: Endpoints anyone may call without a token.
_PUBLIC = frozenset({"healthz", "ops.metrics", "ops.openapi"})


def create_app(settings: Settings) -> QuartTrio:
    """The API application for ``settings`` (serve it with :func:`serve_api`)."""
    app = QuartTrio("abaco")
    # Quart's own limit must let bundles through; other bodies are held to the smaller
    # published limit in _limit_body below.
    app.config["MAX_CONTENT_LENGTH"] = max(
        settings.api.max_body_bytes, settings.repository.max_bundle_bytes
    )
    app.config["abaco.settings"] = settings
    app.config["abaco.repository"] = _open_repository(settings)
    app.config["abaco.jwt"] = JwtVerifier.from_settings(settings.auth)  # None: JWT is off
    apply_cors(app, settings.api)
    for module in (repository, aliases, nonces, actors, messages, executions, workers, tokens, ops):
        app.register_blueprint(module.blueprint)
    app.register_blueprint(configs.blueprint)
    app.register_blueprint(cron.blueprint)  # /actors/cron: a static rule, not an actor id
    # Static paths under /actors (admin, utilization, search) win over /actors/<actor_id>.
    for module in (search, admin):
        app.register_blueprint(module.blueprint)
    limiter = RateLimiter(settings.api.requests_per_second)

    @app.before_request
    async def _limit_body() -> None:
        size = request.content_length
        if request.blueprint != "repository" and size and size > settings.api.max_body_bytes:
            raise PayloadTooLarge(
                f"Request body too large: the limit is {settings.api.max_body_bytes} bytes."
            )

    @app.before_request
    async def _authenticate() -> None:
        if request.endpoint in _PUBLIC or request.endpoint is None or request.method == "OPTIONS":
            return  # OPTIONS: CORS preflights carry no credentials (abaco.api.cors)
        if request.blueprint == "repository" and request.method in ("GET", "HEAD"):
            return  # fetchers read bundles without a token
        await authenticate()
        user = identity()
        if not limiter.allow(f"{user.tenant}/{user.user}"):
            raise TooManyRequests(
                f"Too many requests: the limit is {settings.api.requests_per_second:g} "
                "per second per user."
            )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return ok({"healthy": True}, "abaco is up.")

    @app.after_request
    async def _close_after_unread_body(response: Response) -> Response:
        # An error may answer before the body was read; hypercorn then leaves the rest of
        # it on a kept-alive connection, where it can stall the client's next request.
        has_body = bool(request.content_length) or "chunked" in request.headers.get(
            "Transfer-Encoding", ""
        )
        if response.status_code >= 400 and has_body:
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(AbacoError)
    async def abaco_error(exc: AbacoError) -> tuple[Response, int]:
        status = status_of(exc)
        if status >= 500:
            _log.warning("api.unavailable", error=str(exc))
        return jsonify(error(str(exc))), status

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        message = {
            404: "Not found: no such resource.",
            405: "Invalid HTTP method on requested resource.",
            413: f"Request body too large: the limit is {settings.api.max_body_bytes} bytes.",
        }.get(status, exc.description or exc.name)
        return jsonify(error(message)), status

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> tuple[Response, int]:
        _log.exception("api.unexpected_error")
        return jsonify(error("Unexpected error processing the request.")), 500

    return app


def _open_repository(settings: Settings) -> Repository:
    options = settings.repository
    root = (
        Path(options.dir).expanduser().absolute()
        if options.dir
        else settings.state.path() / "repository"
    )
    limits = ArchiveLimits(
        max_members=options.max_members,
        max_total_bytes=options.max_unpacked_bytes,
        max_member_bytes=options.max_unpacked_bytes,
        max_ratio=options.max_ratio,
    )
    return Repository(root, limits=limits, max_bundle_bytes=options.max_bundle_bytes)


@contextlib.asynccontextmanager
async def serve_api(app: QuartTrio, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` with hypercorn for the duration of the block; yields its base URL.

    Opens the platform's Redis and a channel hub for the server's requests first.
    Leaving the block shuts the server down gracefully (in-flight requests finish).
    """
    settings: Settings = app.config["abaco.settings"]
    async with (
        open_configured_redis(settings.redis) as redis,
        open_hub(redis, namespace=settings.redis.key_prefix) as hub,
    ):
        server = await redis.server_info()
        if not server.acknowledged_writes_durable:
            _log.warning(
                "api.accepts_not_durable",
                reason="the server does not fsync its append-only file on every write",
                appendonly=server.appendonly,
                appendfsync=server.appendfsync,
            )
        app.config["abaco.resources"] = Resources(settings, redis, hub, server)
        async with _serve(app, host, port) as url:
            yield url


@contextlib.asynccontextmanager
async def _serve(app: QuartTrio, host: str, port: int) -> AsyncIterator[str]:
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    # Hypercorn's own errors (protocol errors, resets) go to the logs, not nowhere.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5.0
    stop = trio.Event()
    async with trio.open_nursery() as nursery:

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)

        binds: list[str] = await nursery.start(run)
        try:
            yield binds[0]
        finally:
            stop.set()
