"""The bundle fetcher: one per host, turning a bundle identity into an unpacked directory.

Cache layout under the cache root::

    GROUP/AS/FOLDERS/ID/VERSION/SHA256/     one unpacked bundle (SHA256 of its archive)
    .downloads/                             archives being downloaded

A bundle is downloaded once: concurrent requests for it share the download. The archive's
sha256 is checked against the repository's ETag, then the archive is inspected and
unpacked safely (:func:`~abaco.bundles.extract_archive`). A released version is immutable,
so a cached copy is used as is; a ``-SNAPSHOT`` is re-checked with ``If-None-Match`` on
each fetch. The cache stays under ``max_bytes`` by evicting the least recently used
bundles that no worker is using (:meth:`BundleCache.using`).

:func:`serve_fetcher` answers ``{"bundle": "group/id:version"}`` requests on a request
channel with ``{"path": ..., "sha256": ...}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import attrs
import httpx
import structlog
import trio

from abaco.bundles.archive import ArchiveLimits, extract_archive
from abaco.bundles.manifest import BundleId
from abaco.errors import BundleError, NotFound, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from abaco.channels import RequestChannel

__all__ = ["BundleCache", "CacheStatistics", "FetchedBundle", "serve_fetcher"]

_log = structlog.get_logger(__name__)

#: Seconds a download keeps trying while nothing listens at the repository's address.
_CONNECT_GRACE = 30.0


@attrs.frozen
class FetchedBundle:
    """An unpacked bundle on this host."""

    bundle: BundleId
    sha256: str
    path: Path


@attrs.frozen
class CacheStatistics:
    """What a cache has done since it started."""

    #: Archives downloaded from the repository.
    downloads: int
    #: Fetches answered from the cache without a download.
    hits: int
    #: Bundles evicted to stay under the size bound.
    evictions: int
    #: Bytes the unpacked bundles take now.
    size: int


@attrs.define
class _Entry:
    fetched: FetchedBundle
    size: int
    last_used: float
    users: int = 0


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class BundleCache:
    """Unpacked bundles on this host, fetched from the software repository."""

    def __init__(
        self,
        root: Path,
        repository_url: str,
        *,
        max_bytes: int,
        limits: ArchiveLimits,
        download_timeout: float = 300.0,
    ) -> None:
        self.root = root
        self.repository_url = repository_url.rstrip("/")
        self.max_bytes = max_bytes
        self.limits = limits
        self.download_timeout = download_timeout
        self._downloads_dir = root / ".downloads"
        self._entries: dict[Path, _Entry] = {}
        self._inflight: dict[BundleId, trio.Event] = {}
        self._downloads = 0
        self._hits = 0
        self._evictions = 0

    def statistics(self) -> CacheStatistics:
        """Downloads, hits, evictions and the cache's size."""
        return CacheStatistics(
            self._downloads,
            self._hits,
            self._evictions,
            sum(e.size for e in self._entries.values()),
        )

    async def load(self) -> None:
        """Take stock of what an earlier run left in the cache (a restart keeps it)."""
        await trio.to_thread.run_sync(self._load)

    def _load(self) -> None:
        shutil.rmtree(self._downloads_dir, ignore_errors=True)
        self._downloads_dir.mkdir(parents=True, exist_ok=True)
        for marker in self.root.rglob(".complete"):
            directory = marker.parent
            *group, bundle_id, version, sha256 = directory.relative_to(self.root).parts
            with contextlib.suppress(BundleError, ValueError):
                bundle = BundleId(".".join(group), bundle_id, version)
                fetched = FetchedBundle(bundle, sha256, directory)
                size = int(marker.read_text() or 0)
                self._entries[directory] = _Entry(fetched, size, marker.stat().st_mtime)

    def _cached(self, bundle: BundleId) -> _Entry | None:
        found = [e for e in self._entries.values() if e.fetched.bundle == bundle]
        return max(found, key=lambda e: e.last_used) if found else None

    async def fetch(self, bundle: BundleId) -> FetchedBundle:
        """The unpacked bundle, downloading it if needed (shared with concurrent callers)."""
        while (pending := self._inflight.get(bundle)) is not None:
            await pending.wait()
        cached = self._cached(bundle)
        if cached is not None and not bundle.is_snapshot:
            self._hits += 1
            cached.last_used = trio.current_time()
            return cached.fetched
        done = self._inflight[bundle] = trio.Event()
        try:
            return await self._download(bundle, cached)
        finally:
            del self._inflight[bundle]
            done.set()

    @contextlib.asynccontextmanager
    async def using(self, bundle: BundleId) -> AsyncIterator[FetchedBundle]:
        """Fetch a bundle and keep it from eviction for the duration of the block."""
        fetched = await self.fetch(bundle)
        entry = self._entries[fetched.path]
        entry.users += 1
        try:
            yield fetched
        finally:
            entry.users -= 1
            entry.last_used = trio.current_time()

    async def _download(self, bundle: BundleId, cached: _Entry | None) -> FetchedBundle:
        url = f"{self.repository_url}/bundles/{bundle.group}/{bundle.id}/{bundle.version}"
        headers = {"If-None-Match": f'"{cached.fetched.sha256}"'} if cached else {}
        file, archive = await trio.to_thread.run_sync(self._new_download)
        try:
            with file:
                digest, etag = await self._get_patiently(url, headers, file, bundle)
            if digest is None and cached is not None:
                self._hits += 1  # 304: the cached snapshot is current
                cached.last_used = trio.current_time()
                return cached.fetched
            if digest != etag:
                raise BundleError(
                    f"bundle {bundle}: the repository says sha256 {etag}, "
                    f"the download hashes to {digest}"
                )
            assert digest is not None
            return await self._unpack(bundle, digest, archive)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: archive.unlink(missing_ok=True))

    def _new_download(self) -> tuple[BinaryIO, Path]:
        self._downloads_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self._downloads_dir, suffix=".bpk")
        return os.fdopen(handle, "wb"), Path(name)

    async def _get_patiently(
        self, url: str, headers: dict[str, str], file: Any, bundle: BundleId
    ) -> tuple[str | None, str]:
        """:meth:`_get`, trying again for a while when the repository refuses connections.

        It is starting, most likely: ``abaco up`` starts the API (the repository) and the
        spawner at once, and workers restored from storage are asked for before either.
        Nothing was sent or written when a connection fails, so trying again is safe.
        """
        deadline = trio.current_time() + _CONNECT_GRACE
        delay = 0.1
        while True:
            try:
                return await self._get(url, headers, file, bundle)
            except StoreUnavailable as exc:
                refused = isinstance(exc.__cause__, httpx.ConnectError)
                if not refused or trio.current_time() + delay > deadline:
                    raise
            await trio.sleep(delay)
            delay = min(2 * delay, 2.0)

    async def _get(
        self, url: str, headers: dict[str, str], file: Any, bundle: BundleId
    ) -> tuple[str | None, str]:
        """Download into ``file``; returns (sha256 of the body, ETag) or (None, "") on 304."""
        digest = hashlib.sha256()
        try:
            async with (
                httpx.AsyncClient(timeout=self.download_timeout) as http,
                http.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code == 304:
                    return None, ""
                if response.status_code == 404:
                    raise NotFound(f"no bundle {bundle} in the repository at {self.repository_url}")
                if response.status_code != 200:
                    raise StoreUnavailable(
                        f"the repository answered {response.status_code} for {bundle}"
                    )
                etag = response.headers.get("ETag", "").strip('"')
                async for chunk in response.aiter_bytes(1 << 20):
                    digest.update(chunk)
                    await trio.to_thread.run_sync(file.write, chunk)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"cannot download {bundle} from {url}: {exc}") from exc
        self._downloads += 1
        _log.info("fetcher.downloaded", bundle=str(bundle), sha256=digest.hexdigest())
        return digest.hexdigest(), etag

    async def _unpack(self, bundle: BundleId, sha256: str, archive: Path) -> FetchedBundle:
        target = self.root.joinpath(*bundle.path_parts()[:-1], sha256)

        def unpack() -> int:
            if not (target / ".complete").exists():
                shutil.rmtree(target, ignore_errors=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                extract_archive(archive, target, limits=self.limits)
                (target / ".complete").write_text(str(_tree_size(target)))
            return int((target / ".complete").read_text())

        size = await trio.to_thread.run_sync(unpack)
        fetched = FetchedBundle(bundle, sha256, target)
        self._entries[target] = _Entry(fetched, size, trio.current_time())
        await self._evict(keep=target)
        return fetched

    async def _evict(self, keep: Path) -> None:
        total = sum(e.size for e in self._entries.values())
        for entry in sorted(self._entries.values(), key=lambda e: e.last_used):
            if total <= self.max_bytes:
                return
            if entry.users or entry.fetched.path == keep:
                continue
            del self._entries[entry.fetched.path]
            await trio.to_thread.run_sync(shutil.rmtree, entry.fetched.path, True)
            total -= entry.size
            self._evictions += 1
            _log.info("fetcher.evicted", bundle=str(entry.fetched.bundle), bytes=entry.size)
        if total > self.max_bytes:
            _log.warning("fetcher.over_size", bytes=total, limit=self.max_bytes)


async def serve_fetcher(
    channel: RequestChannel,
    cache: BundleCache,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer fetch requests on ``channel`` until cancelled, each in its own task."""

    async def answer(request: Any) -> None:
        try:
            message = request.message
            reference = message.get("bundle") if isinstance(message, dict) else None
            if not isinstance(reference, str):
                raise BundleError('a fetch request is {"bundle": "group/id:version"}')
            fetched = await cache.fetch(BundleId.parse(reference))
        except Exception as exc:
            await request.fail(exc)
        else:
            await request.reply({"path": str(fetched.path), "sha256": fetched.sha256})

    await cache.load()
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            request = await channel.next_request()
            nursery.start_soon(answer, request)
