"""A blocking facade over a hub, for code that is not async: the zygote and actor code.

The hub runs in a trio loop on a thread of its own; each call hands work to that loop
and waits for it. Channels received through the facade are bound to its inner hub, so
pass them back to the facade's methods to use them.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

import trio

from abaco._hub import open_hub
from abaco.errors import ChannelClosed
from abaco.redis_client import open_redis

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from abaco._channel_values import Channel, QueueChannel, RequestChannel, TopicChannel
    from abaco._hub import Hub

__all__ = ["BlockingHub", "open_blocking_hub"]


class BlockingHub:
    """Blocking ``put``/``get``/``request`` on channels. Make one with :func:`open_blocking_hub`."""

    def __init__(self, url: str, namespace: str, visibility: float, lease: float) -> None:
        self._url = url
        self._namespace = namespace
        self._visibility = visibility
        self._lease = lease
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._hub: Hub | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="abaco-hub", daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._failure = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with (
            open_redis(self._url) as redis,
            open_hub(
                redis, namespace=self._namespace, visibility=self._visibility, lease=self._lease
            ) as hub,
        ):
            self._hub = hub
            self._ready.set()
            await self._stop.wait()

    def _start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if self._hub is None or self._token is None or not self._thread.is_alive():
            raise ChannelClosed("the blocking hub is closed")
        try:
            return trio.from_thread.run(fn, *args, trio_token=self._token)
        except trio.RunFinishedError as exc:
            raise ChannelClosed("the blocking hub is closed") from exc

    @property
    def hub(self) -> Hub:
        """The inner hub (its methods must run on its own thread)."""
        if self._hub is None:
            raise ChannelClosed("the blocking hub is closed")
        return self._hub

    def put(self, channel: QueueChannel | RequestChannel, message: Any) -> None:
        """Put a message on a queue."""
        self._call(self.hub.queue_put, channel, message)

    def get(self, channel: QueueChannel, *, timeout: float | None = None) -> Any:
        """Take the next message of a queue and acknowledge it.

        Raises :class:`~abaco.errors.ChannelTimeout` when none arrives in time.
        """

        async def take() -> Any:
            delivery = await self.hub.bind(channel).get(timeout=timeout)
            await delivery.ack()
            return delivery.message

        return self._call(take)

    def publish(self, channel: TopicChannel, topic: str, message: Any) -> None:
        """Publish a message on a topic channel."""
        self._call(self.hub.topic_publish, channel, topic, message)

    def request(self, channel: RequestChannel, message: Any, *, timeout: float) -> Any:
        """Send a request and wait for its answer (``ChannelTimeout``, ``RemoteError``)."""
        return self._call(self.hub.request, channel, message, timeout)

    def bind(self, channel: Channel) -> Any:
        """The channel bound to the inner hub."""
        return self.hub.bind(channel)

    def close(self) -> None:
        """Close the hub and stop its thread."""
        if self._stop is not None and self._token is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()
        self._hub = None


@contextlib.contextmanager
def open_blocking_hub(
    url: str, *, namespace: str = "abaco", visibility: float = 30.0, lease: float = 10.0
) -> Iterator[BlockingHub]:
    """A :class:`BlockingHub` on the Redis at ``url`` for the duration of the block."""
    hub = BlockingHub(url, namespace, visibility, lease)
    hub._start()
    try:
        yield hub
    finally:
        hub.close()
