"""The software repository on disk: bundles stored by identity, checked before they land.

Layout under the repository root (group dots become folders, as in EverBEEN)::

    GROUP/AS/FOLDERS/ID/VERSION/ID-VERSION.bpk      the archive
    GROUP/AS/FOLDERS/ID/VERSION/ID-VERSION.sha256   its sha256 (hex), for ETags and fetchers
    .uploads/                                       uploads in progress (never read by others)

An upload is written to ``.uploads`` and fsynced, inspected (:func:`inspect_archive`),
and only then renamed into place, so a reader sees a whole, valid bundle or none. A
version is immutable once stored, unless it ends in ``-SNAPSHOT``. Everything here
blocks: trio code calls it through ``trio.to_thread``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import attrs

from abaco.bundles.archive import ArchiveLimits, inspect_archive
from abaco.bundles.manifest import BUNDLE_SUFFIX, BundleId, Manifest
from abaco.errors import BundleError, Conflict, NotFound

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Repository", "StoredBundle", "Upload"]


@attrs.frozen
class StoredBundle:
    """A bundle as the repository holds it."""

    manifest: Manifest
    #: sha256 (hex) of the archive file itself.
    sha256: str
    size: int
    path: Path


class Upload:
    """An upload in progress: write chunks, then hand it to :meth:`Repository.store`."""

    def __init__(self, file: BinaryIO, path: Path, max_bytes: int) -> None:
        self._file = file
        self.path = path
        self.max_bytes = max_bytes
        self.size = 0
        self._digest = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        """Append a chunk; :class:`BundleError` once the upload passes ``max_bytes``."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise BundleError(f"the bundle is larger than the limit of {self.max_bytes} bytes")
        self._digest.update(chunk)
        self._file.write(chunk)

    @property
    def sha256(self) -> str:
        """sha256 (hex) of what was written so far."""
        return self._digest.hexdigest()

    def finish(self) -> None:
        """Flush and fsync the file, so what is renamed into place is on disk."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


class Repository:
    """Bundles on disk under ``root``."""

    def __init__(self, root: Path, *, limits: ArchiveLimits, max_bundle_bytes: int) -> None:
        self.root = root
        self.limits = limits
        self.max_bundle_bytes = max_bundle_bytes
        self._uploads = root / ".uploads"
        self._uploads.mkdir(parents=True, exist_ok=True)

    def archive_path(self, bundle: BundleId) -> Path:
        """Where ``bundle``'s archive lives (whether or not it exists)."""
        return self.root.joinpath(*bundle.path_parts())

    @contextlib.contextmanager
    def upload(self) -> Iterator[Upload]:
        """A temporary upload file; whatever is not stored is deleted when the block ends."""
        handle, name = tempfile.mkstemp(dir=self._uploads, suffix=BUNDLE_SUFFIX)
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as file:
                yield Upload(file, path, self.max_bundle_bytes)
        finally:
            path.unlink(missing_ok=True)

    def store(self, upload: Upload, *, claimed: BundleId | None = None) -> StoredBundle:
        """Check a finished upload and move it into place.

        ``claimed`` is the identity the uploader named; it must match the manifest's.
        Raises :class:`BundleError` for an invalid bundle and :class:`Conflict` when the
        version exists and is not a ``-SNAPSHOT``.
        """
        manifest = inspect_archive(upload.path, limits=self.limits)
        bundle = manifest.bundle_id
        if claimed is not None and claimed != bundle:
            raise BundleError(f"the upload names {claimed} but its manifest says {bundle}")
        target = self.archive_path(bundle)
        if target.exists() and not bundle.is_snapshot:
            raise Conflict(
                f"bundle {bundle} exists already; versions are immutable "
                "(use a version ending in -SNAPSHOT to replace it)"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        digest_path = target.with_suffix(".sha256")
        _write_atomically(digest_path, upload.sha256.encode(), self._uploads)
        os.replace(upload.path, target)
        _fsync_dir(target.parent)
        return StoredBundle(manifest, upload.sha256, upload.size, target)

    def get(self, bundle: BundleId) -> StoredBundle:
        """The stored bundle; :class:`NotFound` when there is none."""
        target = self.archive_path(bundle)
        try:
            sha256 = target.with_suffix(".sha256").read_text().strip()
            size = target.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no bundle {bundle} in the repository") from None
        manifest = inspect_archive(target, limits=self.limits)
        return StoredBundle(manifest, sha256, size, target)

    def digest(self, bundle: BundleId) -> str:
        """The archive's sha256 without reading the archive; :class:`NotFound` if absent."""
        try:
            return self.archive_path(bundle).with_suffix(".sha256").read_text().strip()
        except FileNotFoundError:
            raise NotFound(f"no bundle {bundle} in the repository") from None

    def require(self, image: str) -> BundleId:
        """The bundle an actor's ``image`` names, which must be stored here.

        Raises :class:`BundleError` (a 400) when ``image`` is not ``group/id:version`` or
        names a bundle the repository does not hold.
        """
        bundle = BundleId.parse(image)
        if not self.archive_path(bundle).is_file():
            raise BundleError(
                f"image {image!r}: no such bundle in the repository; "
                "push it first (abaco bundle push FILE)"
            )
        return bundle

    def identities(self) -> list[BundleId]:
        """Every stored bundle's identity, sorted."""
        found: list[BundleId] = []
        for archive in self.root.rglob(f"*{BUNDLE_SUFFIX}"):
            relative = archive.relative_to(self.root).parts
            if relative[0] == self._uploads.name or len(relative) < 4:
                continue
            *group, bundle_id, version, _file = relative
            with contextlib.suppress(BundleError):
                found.append(BundleId(".".join(group), bundle_id, version))
        return sorted(found, key=str)


def _write_atomically(path: Path, data: bytes, tmp_dir: Path) -> None:
    handle, name = tempfile.mkstemp(dir=tmp_dir)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
