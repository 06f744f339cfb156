"""A small synchronous client of abaco's REST API, for the ``abaco`` command line.

Every answer of the API is Abaco's envelope ``{"status", "message", "result",
"version"}``. :class:`ApiClient` has one method per route the command line uses and
returns the envelope's ``result`` (or, where the result is empty, its ``message``).
Errors are mapped here, at the edge, so callers never see an httpx exception:

- an error envelope (or an answer that is not an envelope) raises :class:`ApiError`,
  carrying the HTTP status and the API's message;
- a server that cannot be reached, or does not answer in time, raises
  :class:`ApiUnavailable`, with the httpx error chained.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import httpx

from abaco.errors import AbacoError, BadRequest

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import TracebackType

__all__ = ["TERMINAL_STATUSES", "ApiClient", "ApiError", "ApiUnavailable"]

#: The statuses an execution ends in (nothing follows them).
TERMINAL_STATUSES = frozenset({"COMPLETE", "ERROR", "ABORTED"})


class ApiError(AbacoError):
    """The API answered with an error: ``status`` is the HTTP status, ``message`` its words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})"


class ApiUnavailable(AbacoError):
    """The API server cannot be reached or did not answer in time; the cause is chained."""


class ApiClient:
    """A client of the API at ``base_url`` that sends ``token`` as its bearer token.

    Use it as a context manager, or call :meth:`close` when done.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        url = httpx.URL(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise BadRequest(f"the API URL must be http(s)://HOST[:PORT], not {base_url!r}")
        self.base_url = str(url)
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            # Loading the CA bundle costs a CLI command a fifth of a second: only https needs it.
            verify=url.scheme == "https",
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- actors -------------------------------------------------------------------------

    def list_actors(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The actors the caller may read (``GET /actors``)."""
        return self._list("GET", "/actors", params={"limit": limit, "offset": offset})

    def get_actor(self, actor_id: str) -> dict[str, Any]:
        """One actor (``GET /actors/ID``)."""
        return self._result("GET", f"/actors/{_segment(actor_id)}")

    def create_actor(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Register an actor (``POST /actors``); returns its record."""
        return self._result("POST", "/actors", json=dict(fields))

    def update_actor(self, actor_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Change the fields named in ``fields`` (``PUT /actors/ID``); returns the record."""
        return self._result("PUT", f"/actors/{_segment(actor_id)}", json=dict(fields))

    def delete_actor(self, actor_id: str) -> str:
        """Delete an actor (``DELETE /actors/ID``); returns the API's message."""
        return self._message("DELETE", f"/actors/{_segment(actor_id)}")

    # -- messages -----------------------------------------------------------------------

    def send_message(
        self, actor_id: str, message: str, *, environment: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Send a string message (``{"message": MSG}``); returns ``execution_id`` and more.

        ``environment`` becomes environment variables of that execution.
        """
        return self.send_json(actor_id, {"message": message}, environment=environment)

    def send_json(
        self, actor_id: str, body: Any, *, environment: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Send ``body`` as the JSON body of a message (``POST /actors/ID/messages``)."""
        return self._result(
            "POST",
            f"/actors/{_segment(actor_id)}/messages",
            json=body,
            params=dict(environment or {}),
        )

    # -- executions ---------------------------------------------------------------------

    def list_executions(
        self, actor_id: str, *, limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        """Abaco's summary of an actor's executions, with one page of them."""
        return self._result(
            "GET",
            f"/actors/{_segment(actor_id)}/executions",
            params={"limit": limit, "offset": offset},
        )

    def get_execution(self, actor_id: str, execution_id: str) -> dict[str, Any]:
        """One execution (``GET /actors/ID/executions/EID``)."""
        return self._result("GET", _execution_path(actor_id, execution_id))

    def get_logs(self, actor_id: str, execution_id: str) -> str:
        """An execution's logs as kept now."""
        result = self._result("GET", f"{_execution_path(actor_id, execution_id)}/logs")
        return str(result["logs"])

    def follow_logs(self, actor_id: str, execution_id: str, *, quiet: float = 5.0) -> Iterator[str]:
        """The logs of an execution as they come, until they end (``?follow=true``).

        The API ends the stream when the worker finishes the log. A log nobody will
        finish (an execution aborted before it ran, a worker that died) would keep the
        stream open for ever, so when no chunk came for a while (half a second at first,
        twice as long each time after, up to ``quiet`` seconds) this looks at the
        execution: once it has ended, the rest of its log is read and iteration stops;
        otherwise the stream is opened again where it was. Each such look yields ``""``,
        so that a caller may give up in between.
        """
        path = f"{_execution_path(actor_id, execution_id)}/logs"
        # Following starts from the beginning of the log: skip what was yielded already.
        seen = 0
        wait = min(0.5, quiet)
        while True:
            skip = seen
            with self._mapped():
                try:
                    with self._http.stream(
                        "GET",
                        path,
                        params={"follow": "true"},
                        timeout=httpx.Timeout(self.timeout, read=wait),
                    ) as response:
                        if response.status_code >= 400:
                            response.read()
                            _envelope(response)
                        for text in response.iter_text():
                            fresh = text[skip:]
                            skip = max(skip - len(text), 0)
                            if fresh:
                                seen += len(fresh)
                                yield fresh
                    return
                except httpx.ReadTimeout:
                    pass
            wait = min(wait * 2, quiet)
            yield ""
            execution = self.get_execution(actor_id, execution_id)
            if execution["status"] in TERMINAL_STATUSES:
                rest = self.get_logs(actor_id, execution_id)[seen:]
                if rest:
                    yield rest
                return

    def get_result(self, actor_id: str, execution_id: str) -> bytes:
        """The execution's next result not read yet (``b""`` when there is none)."""
        path = f"{_execution_path(actor_id, execution_id)}/results"
        with self._mapped():
            response = self._http.get(path)
        if response.status_code >= 400:
            _envelope(response)
        return response.content

    # -- workers ------------------------------------------------------------------------

    def list_workers(
        self, actor_id: str, *, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """An actor's workers (``GET /actors/ID/workers``)."""
        return self._list(
            "GET",
            f"/actors/{_segment(actor_id)}/workers",
            params={"limit": limit, "offset": offset},
        )

    def ensure_workers(self, actor_id: str, num: int) -> str:
        """Make sure the actor has ``num`` workers; returns the API's message."""
        return self._message("POST", f"/actors/{_segment(actor_id)}/workers", json={"num": num})

    def delete_worker(self, actor_id: str, worker_id: str) -> str:
        """Stop a worker after its current execution; returns the API's message."""
        return self._message(
            "DELETE", f"/actors/{_segment(actor_id)}/workers/{_segment(worker_id)}"
        )

    # -- tokens -------------------------------------------------------------------------

    def issue_token(self, user: str, tenant: str | None, role: str | None) -> dict[str, Any]:
        """Issue a token for ``user`` (admins only); the result holds ``token``."""
        body = {"user": user, "tenant": tenant, "role": role}
        return self._result("POST", "/tokens", json={k: v for k, v in body.items() if v})

    def revoke_token(self, token: str) -> str:
        """Revoke an issued token (admins only); returns the API's message."""
        return self._message("POST", "/tokens/revoke", json={"token": token})

    # -- bundles ------------------------------------------------------------------------

    def list_bundles(self) -> list[dict[str, Any]]:
        """The repository's bundles (``GET /bundles``)."""
        return self._list("GET", "/bundles")

    def push_bundle(
        self, group: str, bundle: str, version: str, data: bytes, sha256: str
    ) -> dict[str, Any]:
        """Upload a bundle archive (``PUT /bundles/GROUP/ID/VERSION``); returns its record."""
        return self._result(
            "PUT",
            f"/bundles/{_segment(group)}/{_segment(bundle)}/{_segment(version)}",
            content=data,
            headers={"Bundle-Sha256": sha256},
            timeout=max(self.timeout, 300.0),
        )

    # -- plumbing -----------------------------------------------------------------------

    def _result(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        result = self._call(method, path, **options)["result"]
        if not isinstance(result, dict):
            raise ApiError(200, f"expected an object from {method} {path}, not {result!r:.80}")
        return result

    def _list(self, method: str, path: str, **options: Any) -> list[dict[str, Any]]:
        result = self._call(method, path, **options)["result"]
        if not isinstance(result, list):
            raise ApiError(200, f"expected a list from {method} {path}, not {result!r:.80}")
        return result

    def _message(self, method: str, path: str, **options: Any) -> str:
        return str(self._call(method, path, **options)["message"])

    def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        with self._mapped():
            response = self._http.request(method, path, **options)
        return _envelope(response)

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """Turn httpx's transport errors into :class:`ApiUnavailable`."""
        started = time.monotonic()
        try:
            yield
        except httpx.TimeoutException as exc:
            waited = time.monotonic() - started
            raise ApiUnavailable(
                f"the API at {self.base_url} did not answer in {waited:.0f} s ({exc!r})"
            ) from exc
        except httpx.TransportError as exc:
            raise ApiUnavailable(f"cannot reach the API at {self.base_url}: {exc}") from exc


def _segment(value: str) -> str:
    """``value`` as one path segment: an id with a slash must not reach another route."""
    if not value or "/" in value or value in (".", ".."):
        raise BadRequest(f"not a valid id: {value!r}")
    return urllib.parse.quote(value, safe="")


def _execution_path(actor_id: str, execution_id: str) -> str:
    return f"/actors/{_segment(actor_id)}/executions/{_segment(execution_id)}"


def _envelope(response: httpx.Response) -> dict[str, Any]:
    """The envelope of an answer; :class:`ApiError` for an error or a foreign answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        text = response.text.strip()[:200] or "an empty body"
        raise ApiError(response.status_code, f"not an abaco API answer: {text}")
    if body["status"] != "success" or response.status_code >= 400:
        raise ApiError(response.status_code, str(body.get("message") or "no message"))
    return body
