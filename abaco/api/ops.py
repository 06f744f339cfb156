"""Operations routes: ``/metrics`` (Prometheus text) and ``/openapi.json`` (made from the routes).

The OpenAPI document is generated from the application itself: every URL rule becomes a
path, its view's docstring the summary, and the spec classes in :mod:`abaco.api.schemas`
the request bodies, so it cannot drift from what the server accepts.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Blueprint, Response, current_app, g, request

import abaco
from abaco.api.schemas import (
    ActorSpec,
    AliasSpec,
    ConfigSpec,
    NonceSpec,
    PermissionSpec,
    RevokeSpec,
    TokenSpec,
    WorkersSpec,
    json_schema,
)

if TYPE_CHECKING:
    from quart import Quart

__all__ = ["blueprint", "openapi_document"]

blueprint = Blueprint("ops", __name__)

# Endpoint -> the schema of its body (JSON, or a form: see abaco.api.inputs.spec_body).
_BODIES: dict[str, dict[str, Any]] = {
    "actors.create_actor": {**json_schema(ActorSpec), "required": ["image"]},
    "actors.update_actor": json_schema(ActorSpec),
    "actors.grant_permission": json_schema(PermissionSpec),
    "actors.set_state": {},
    "workers.ensure_workers": json_schema(WorkersSpec),
    "tokens.create_token": json_schema(TokenSpec),
    "tokens.revoke": json_schema(RevokeSpec),
    "aliases.create_alias": {**json_schema(AliasSpec), "required": ["alias", "actor_id"]},
    "aliases.update_alias": {
        **json_schema(AliasSpec),
        "properties": {
            k: v for k, v in json_schema(AliasSpec)["properties"].items() if k != "alias"
        },
        "required": ["actor_id"],
    },
    "aliases.grant_alias_permission": json_schema(PermissionSpec),
    "configs.create_config": {
        **json_schema(ConfigSpec),
        "required": ["name", "value", "actors", "is_secret"],
    },
    "configs.update_config": {
        **json_schema(ConfigSpec),
        "required": ["value", "actors", "is_secret"],
    },
    "configs.grant_config_permission": json_schema(PermissionSpec),
    "nonces.create_nonce": json_schema(NonceSpec),
    "nonces.create_alias_nonce": json_schema(NonceSpec),
}

# Endpoints whose body may be left out (the defaults then apply, as in Abaco).
_OPTIONAL_BODIES = frozenset(
    {"workers.ensure_workers", "nonces.create_nonce", "nonces.create_alias_nonce"}
)

_PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
]

# Endpoint -> its query parameters.
_QUERIES: dict[str, list[dict[str, Any]]] = {
    "actors.list_actors": _PAGING,
    "aliases.list_aliases": _PAGING,
    "configs.list_configs": _PAGING,
    "nonces.list_nonces": _PAGING,
    "nonces.list_alias_nonces": _PAGING,
    "executions.list_executions": _PAGING,
    "workers.list_workers": _PAGING,
    "executions.get_logs": [{"name": "follow", "in": "query", "schema": {"type": "boolean"}}],
    # Field conditions (FIELD[.OP]=VALUE) are free-form, so only the fixed ones are listed.
    "search.search": [
        {"name": "search", "in": "query", "schema": {"type": "string"}},
        {"name": "exactsearch", "in": "query", "schema": {"type": "string"}},
        {"name": "skip", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
        },
    ],
    "messages.send_message": [
        {"name": "_abaco_synchronous", "in": "query", "schema": {"type": "boolean"}},
    ],
}

_ENVELOPE = {
    "type": "object",
    "required": ["status", "message", "result", "version"],
    "properties": {
        "status": {"type": "string", "enum": ["success", "error"]},
        "message": {"type": "string"},
        "result": {},
        "version": {"type": "string"},
    },
}


def _answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ENVELOPE}}}


def _operation(app: Quart, endpoint: str, method: str, params: list[str]) -> dict[str, Any]:
    view = app.view_functions[endpoint]
    summary = (view.__doc__ or endpoint).strip().splitlines()[0]
    operation: dict[str, Any] = {
        "operationId": f"{endpoint}.{method}",
        "summary": summary,
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
        + _QUERIES.get(endpoint, []),
        "responses": {
            "200": {"description": "Success"},
            "400": _answer("Invalid input"),
            "401": _answer("No valid token"),
            "403": _answer("Not permitted"),
            "404": _answer("No such resource"),
            "413": _answer("Body over the published limit"),
            "429": _answer("Over the request rate or a quota"),
        },
    }
    if endpoint in _BODIES:
        schema = _BODIES[endpoint]
        content = {"application/json": {"schema": schema}}
        if endpoint != "actors.set_state":
            # A resource's description may also come as a form, as Abaco's clients send it.
            content["application/x-www-form-urlencoded"] = {"schema": schema}
        operation["requestBody"] = {
            "required": endpoint not in _OPTIONAL_BODIES,
            "content": content,
        }
    elif endpoint == "messages.send_message":
        operation["requestBody"] = {
            "content": {
                "application/json": {"schema": {}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    if endpoint not in ("healthz", "ops.metrics", "ops.openapi"):
        # Either a bearer token or, on an actor's or alias's routes, ?x-nonce=ID.
        operation["security"] = [{"bearer": []}, {"nonce": []}]
    return operation


def openapi_document(app: Quart) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``app``'s routes."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        params = re.findall(r"{([a-z_]+)}", path)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = _operation(app, rule.endpoint, method.lower(), params)
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "abaco", "version": abaco.__version__},
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "nonce": {"type": "apiKey", "in": "query", "name": "x-nonce"},
            }
        },
    }


@blueprint.get("/openapi.json")
async def openapi() -> dict[str, Any]:
    """The OpenAPI document of this API."""
    return openapi_document(current_app)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "abaco_http_requests",
            "HTTP requests answered.",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "abaco_http_request_seconds",
            "Time to answer an HTTP request.",
            ["endpoint"],
            registry=self.registry,
        )


def _metrics() -> _Metrics:
    found: _Metrics | None = current_app.config.get("abaco.metrics")
    if found is None:
        found = current_app.config["abaco.metrics"] = _Metrics()
    return found


@blueprint.before_app_request
async def _start_clock() -> None:
    g.abaco_started = time.perf_counter()


@blueprint.after_app_request
async def _count(response: Response) -> Response:
    endpoint = request.endpoint or "unknown"
    metrics = _metrics()
    metrics.requests.labels(request.method, endpoint, str(response.status_code)).inc()
    started = g.get("abaco_started")
    if started is not None:
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
    return response


@blueprint.get("/metrics")
async def metrics() -> Response:
    """Prometheus metrics of this API process."""
    return Response(generate_latest(_metrics().registry), content_type=CONTENT_TYPE_LATEST)
