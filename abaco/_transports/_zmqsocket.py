"""pyzmq sockets driven natively by trio, in the trio thread, with no helper task.

A zmq socket's one fd (``zmq.FD``) turns readable when its events *may* have changed; the
truth is ``zmq.EVENTS``, and reading EVENTS, or any send or recv, can eat that edge. trio
lets one task wait on an fd, so the first task that must wait becomes the *watcher* and
sleeps on the fd; other waiting tasks park, and the watcher unparks them when it wakes.
Every wait re-reads EVENTS first, and a task that touches the socket while a watcher
sleeps re-reads EVENTS for it and, if a waiting task can now go on, cancels the watcher's
sleep (a *kick*): the touch may have eaten the edge it needed (the lost wakeup).

Multipart messages are atomic in libzmq, and each call into it here is non-blocking, so a
cancelled ``recv_multipart`` leaves its message queued and a cancelled ``send_multipart``
has sent all of its frames or none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypeVar, TypeVarTuple

import trio
import zmq

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

_T = TypeVar("_T")

# pyzmq's flags are enums; plain ints skip an enum construction per call on the hot path.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
_EVENTS = int(zmq.EVENTS)
_RCVMORE = int(zmq.RCVMORE)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
# pyzmq's backend calls, under its Python layer: that layer's send_multipart costs about
# 3 us for two frames here, these 0.4 (recv_multipart 2.1, these 1.8). Frames are bytes.
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_get = zmq.backend.Socket.get
_Ts = TypeVarTuple("_Ts")


class ZmqSocket:
    """A zmq socket that trio tasks use concurrently; it owns, and closes, ``socket``.

    Build it with :func:`open_zmq_socket`. Any number of tasks may send and receive at
    once. Not thread-safe: use it from the trio thread that made it.
    """

    def __init__(self, socket: zmq.Socket[bytes]) -> None:
        self._socket = socket
        self._fd = socket.fileno()  # zmq.FD
        self._watcher: trio.CancelScope | None = None  # the one task asleep on the fd
        self._lot = trio.lowlevel.ParkingLot()  # the other tasks that wait
        self._wanted: dict[int, int] = {_POLLIN: 0, _POLLOUT: 0}  # waiting tasks by event

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._socket.closed

    def bind(self, endpoint: str) -> str:
        """Bind to ``endpoint``; return the real endpoint (``tcp://127.0.0.1:*`` gets a port)."""
        self._check_open()
        self._socket.bind(endpoint)
        self._touched()
        return self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def connect(self, endpoint: str) -> None:
        """Connect to ``endpoint`` (libzmq connects, and reconnects, in the background)."""
        self._check_open()
        self._socket.connect(endpoint)
        self._touched()

    def setsockopt(self, option: int, value: int | bytes) -> None:
        """Set a socket option (``zmq.SNDHWM``, ``zmq.SUBSCRIBE``, ...)."""
        self._check_open()
        self._socket.setsockopt(option, value)
        self._touched()

    def getsockopt(self, option: int) -> int | bytes:
        """Read a socket option."""
        self._check_open()
        value = self._socket.getsockopt(option)
        self._touched()
        return value

    def send_multipart_nowait(self, frames: Sequence[bytes]) -> None:
        """Queue one message of ``frames`` at once, or raise `trio.WouldBlock`."""
        if not frames:
            raise ValueError("a zmq message has at least one frame")
        self._check_open()
        socket = self._socket
        try:
            # Only the first frame can meet the high-water mark: libzmq queues a message
            # whole or not at all, so a refused first frame leaves nothing half-sent.
            for frame in frames[:-1]:
                _send(socket, frame, _SNDMORE_NOBLOCK)
            _send(socket, frames[-1], _NOBLOCK)
        except zmq.Again:
            raise trio.WouldBlock from None
        finally:
            self._touched()

    def recv_multipart_nowait(self) -> list[bytes]:
        """Take one waiting message, or raise `trio.WouldBlock`."""
        self._check_open()
        try:
            return self._recv_message()
        except zmq.Again:
            raise trio.WouldBlock from None
        finally:
            self._touched()

    def _recv_message(self) -> list[bytes]:
        """One whole message, without waiting (zmq.Again when none is there)."""
        socket = self._socket
        frames = [_recv(socket, _NOBLOCK)]
        while _get(socket, _RCVMORE):
            frames.append(_recv(socket, _NOBLOCK))
        return frames

    async def send_multipart(self, frames: Sequence[bytes]) -> None:
        """Send one message of ``frames``, waiting while the socket is at its high-water mark.

        Cancelled, it has sent either the whole message or nothing.
        """
        await self._retry(_POLLOUT, self.send_multipart_nowait, frames)

    async def recv_multipart(self) -> list[bytes]:
        """Receive one message as its list of frames. Cancelled, it leaves the message queued."""
        return await self._retry(_POLLIN, self.recv_multipart_nowait)

    async def recv_multipart_many(self, limit: int) -> list[list[bytes]]:
        """Receive one message, waiting for it, and up to ``limit - 1`` more already queued.

        One checkpoint for the lot, and EVENTS rather than a failed receive says when
        nothing is left (a failed receive costs an exception, several times the check).
        Cancelled, it leaves every message queued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        slept = False
        while True:
            slept = await self._wait_for(_POLLIN) or slept
            self._check_open()
            messages: list[list[bytes]] = []
            socket = self._socket
            try:
                while len(messages) < limit:
                    messages.append(self._recv_message())
                    if not _get(socket, _EVENTS) & _POLLIN:  # type: ignore[operator]
                        break
            except zmq.Again:
                pass
            finally:
                self._touched()
            if messages:
                if not slept:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return messages
            # EVENTS said ready, yet nothing came: let the others run before looking again.
            await trio.lowlevel.checkpoint()
            slept = True

    def close(self, linger: int = 0) -> None:
        """Close at once (idempotent); tasks waiting on it get `trio.ClosedResourceError`.

        Unsent messages are dropped after ``linger`` milliseconds.
        """
        if self._socket.closed:
            return
        if trio.lowlevel.in_trio_run():
            trio.lowlevel.notify_closing(self._fd)
        self._socket.close(linger=linger)

    async def aclose(self) -> None:
        """Close (see :meth:`close`), then checkpoint; closes even when cancelled."""
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._socket.closed:
            raise trio.ClosedResourceError("the zmq socket is closed")

    def _touched(self) -> None:
        """After any call into libzmq: if a watcher sleeps, re-check on its behalf."""
        if self._watcher is not None and not self._socket.closed:
            self._events()

    def _events(self) -> int:
        """Read EVENTS, kicking the watcher if any waiting task can now go on."""
        events: int = _get(self._socket, _EVENTS)  # type: ignore[assignment]
        if self._watcher is not None and (
            (self._wanted[_POLLIN] and events & _POLLIN)
            or (self._wanted[_POLLOUT] and events & _POLLOUT)
        ):
            self._watcher.cancel()
        return events

    async def _retry(self, event: int, attempt: Callable[[*_Ts], _T], *args: *_Ts) -> _T:
        """Run ``attempt`` until it stops raising WouldBlock, waiting for ``event`` between.

        A checkpoint, like trio's sockets: cancellable first, and yields once, waited or not.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        slept = ready = False
        while True:
            try:
                result = attempt(*args)
            except trio.WouldBlock:
                if ready:  # EVENTS said ready, yet the attempt failed: let the others run
                    await trio.lowlevel.checkpoint()
                    slept = True
                ready = not await self._wait_for(event)
                slept = slept or not ready
            else:
                if not slept:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return result

    async def _wait_for(self, event: int) -> bool:
        """Return once EVENTS has ``event``, and whether this task slept meanwhile."""
        slept = False
        while not self._events() & event:
            slept = True
            self._wanted[event] += 1  # counted while asleep: the others' touches check for us
            try:
                if self._watcher is not None:
                    await self._lot.park()
                else:
                    with trio.CancelScope() as self._watcher:
                        try:
                            await trio.lowlevel.wait_readable(self._fd)
                        finally:
                            self._watcher = None
                            self._lot.unpark_all()
            finally:
                self._wanted[event] -= 1
            self._check_open()
        return slept


def open_zmq_socket(context: zmq.Context[Any], socket_type: int) -> ZmqSocket:
    """Make a ``socket_type`` socket (``zmq.DEALER``, ...) in ``context`` for trio, LINGER 0."""
    socket: zmq.Socket[bytes] = context.socket(socket_type)
    socket.setsockopt(zmq.LINGER, 0)
    return ZmqSocket(socket)
