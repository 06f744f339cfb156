"""A real local HTTP server that receives webhooks, for the events tests.

``async with open_receiver("ok") as receiver`` serves on 127.0.0.1 and a free port and
records each POST's JSON body. It answers 200 (``"ok"``), 503 (``"fail"``), 404
(``"reject"``), or holds the connection open without answering until the block ends
(``"hang"``). Tests wait on it with :meth:`Receiver.wait_until`, never with sleeps.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
from typing import TYPE_CHECKING, Any

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

_ANSWERS = {"ok": b"200 OK", "fail": b"503 Service Unavailable", "reject": b"404 Not Found"}


@attrs.define
class Receiver:
    """What the server has seen."""

    url: str
    mode: str
    #: Each request's JSON body, in arrival order.
    bodies: list[Any] = attrs.Factory(list)
    #: Each request's headers (lower-case names).
    headers: list[dict[str, str]] = attrs.Factory(list)
    #: Connections open now (a "hang" receiver keeps each one open).
    open_connections: int = 0
    _changed: trio.Event = attrs.Factory(trio.Event)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, condition: Callable[[Receiver], bool], timeout: float = 60) -> None:
        """Return once ``condition(self)`` holds; fail after ``timeout`` seconds."""
        with trio.fail_after(timeout):
            while not condition(self):
                await self._changed.wait()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        """The bodies received for one event type."""
        return [body for body in self.bodies if body.get("event_type") == event_type]

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one connection: one request, then the answer of this receiver's mode."""
        self.open_connections += 1
        self._notify()
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines)
            }
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                body += chunk
            self.headers.append(headers)
            self.bodies.append(json.loads(body))
            self._notify()
            if self.mode == "hang":
                await trio.sleep_forever()
            status = _ANSWERS[self.mode]
            await stream.send_all(
                b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        finally:
            self.open_connections -= 1
            self._notify()
            with trio.CancelScope(shield=True):
                await stream.aclose()


@contextlib.asynccontextmanager
async def open_receiver(mode: str = "ok") -> AsyncIterator[Receiver]:
    """Serve a receiver in ``mode`` for the duration of the block."""
    async with trio.open_nursery() as nursery:
        receiver = Receiver(url="", mode=mode)
        serve = functools.partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        port = listeners[0].socket.getsockname()[1]
        receiver.url = f"http://127.0.0.1:{port}/hook"
        try:
            yield receiver
        finally:
            nursery.cancel_scope.cancel()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a receiver that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
