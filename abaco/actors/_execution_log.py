"""One execution's log as its worker writes it: into the log store, and kept in memory."""

from __future__ import annotations

import attrs

from abaco.stores import LogStore

__all__ = ["ExecutionLog"]


@attrs.define
class ExecutionLog:
    """The log of one execution: each chunk goes to the store and is kept here as well.

    The copy lets the worker hand the whole log to durable storage without reading it
    back. It is bounded like the store's (the tail of ``max_bytes`` is kept).
    """

    store: LogStore
    execution_id: str
    #: Seconds the log is kept in the store (the actor's ``log_ex`` within its limit).
    expiry: int
    _kept: bytearray = attrs.field(factory=bytearray)
    #: Bytes cut off the head of the log to keep it within ``max_bytes``.
    dropped_bytes: int = 0

    @property
    def text(self) -> str:
        """The log as kept."""
        return self._kept.decode(errors="replace")

    async def append(self, text: str) -> None:
        """Add text to the log."""
        self._kept += text.encode()
        excess = len(self._kept) - self.store.max_bytes
        if excess > 0:
            del self._kept[:excess]
            self.dropped_bytes += excess
        await self.store.append(self.execution_id, text, expiry=self.expiry)

    async def finish(self) -> None:
        """Mark the log complete, so that followers stop."""
        await self.store.finish(self.execution_id, expiry=self.expiry)
