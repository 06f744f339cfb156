"""Building a bundle archive from a source directory, the same bytes every time.

The archive is deterministic: ``Manifest.json`` first, then the files sorted by path, each
stamped 1980-01-01 00:00:00 with mode 0644, deflated. Building the same files twice gives
byte-identical archives (with the same zlib), whatever their mtimes or modes on disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import IO

from abaco.bundles.archive import (
    ArchiveLimits,
    check_member_path,
    compute_content_sha256,
    inspect_archive,
)
from abaco.bundles.manifest import (
    BUNDLE_SUFFIX,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    BundleError,
    Manifest,
    PythonRuntime,
    parse_manifest,
)

__all__ = ["build_bundle"]

_CHUNK = 1 << 16
# The earliest time a zip header can hold; any fixed time would do.
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
# Caches and version control state, never part of an actor's code.
_SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
# Bytecode is rebuilt on import; earlier builds may sit in the source directory itself.
_SKIPPED_SUFFIXES = (".pyc", BUNDLE_SUFFIX)
_DEFAULT_LIMITS = ArchiveLimits()
_UNIX = 3


def build_bundle(
    source_dir: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    limits: ArchiveLimits = _DEFAULT_LIMITS,
) -> Path:
    """Build ``ID-VERSION.bpk`` from ``source_dir`` into the directory ``output``.

    ``source_dir/Manifest.json`` holds the manifest without ``content_sha256`` (a stale
    one is replaced). Every regular file under ``source_dir`` goes in, except
    ``__pycache__`` and ``.git`` directories and ``*.pyc`` and ``*.bpk`` files; empty
    directories are left out. ``output`` defaults to the current directory, and an
    existing archive of the same name is replaced. The archive is checked with
    :func:`~abaco.bundles.inspect_archive` under ``limits`` before it takes its name.

    Raises :class:`~abaco.bundles.BundleError` for a missing or invalid manifest, a
    symbolic link or other non-regular file in the source, or a Python entry point whose
    module is not in the source.
    """
    source = Path(source_dir)
    if not source.is_dir():
        raise BundleError(f"{source} is not a directory")
    manifest_data = _read_source_manifest(source)
    files = _collect_files(source)
    digests = {path: _sha256_file(file) for path, file in files.items()}
    manifest = parse_manifest(manifest_data, content_sha256=compute_content_sha256(digests))
    if isinstance(manifest.runtime, PythonRuntime):
        _check_entry_module(manifest.runtime, files, source)
    directory = Path.cwd() if output is None else Path(output)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / manifest.bundle_id.file_name
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=directory
    )
    try:
        with open(descriptor, "wb") as out:
            _write_zip(out, manifest, files)
            out.flush()
            os.fsync(out.fileno())
        inspect_archive(temporary, limits=limits)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return target


def _read_source_manifest(source: Path) -> bytes:
    path = source / MANIFEST_NAME
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise BundleError(
            f"no {MANIFEST_NAME} in {source}: a bundle's source directory needs one at its "
            'root, with at least "spec", "name", "version" and "runtime"'
        ) from None
    if not stat.S_ISREG(mode):
        raise BundleError(f"{path} is not a regular file")
    with path.open("rb") as file:
        data = file.read(MAX_MANIFEST_BYTES + 1)
    return data


def _collect_files(source: Path) -> dict[str, Path]:
    """Member path -> file, for every file that goes into the bundle, sorted by path."""
    files: dict[str, Path] = {}
    for directory, dirnames, filenames in os.walk(source, onerror=_raise):
        here = Path(directory)
        for name in list(dirnames):
            if name in _SKIPPED_DIRS:
                dirnames.remove(name)
            elif (here / name).is_symlink():
                # os.walk lists a link to a directory here and does not follow it.
                _refuse_link(here / name)
        for name in filenames:
            file = here / name
            relative = file.relative_to(source).as_posix()
            if relative == MANIFEST_NAME or name.endswith(_SKIPPED_SUFFIXES):
                continue
            mode = file.lstat().st_mode
            if stat.S_ISLNK(mode):
                _refuse_link(file)
            if not stat.S_ISREG(mode):
                raise BundleError(f"{file} is not a regular file; bundles hold regular files only")
            check_member_path(relative)
            files[relative] = file
    return dict(sorted(files.items()))


def _raise(error: OSError) -> None:
    # os.walk skips unreadable directories silently; a bundle missing files is worse.
    raise error


def _refuse_link(path: Path) -> None:
    raise BundleError(
        f"{path} is a symbolic link; bundles hold regular files only, so copy in its target"
    )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_entry_module(runtime: PythonRuntime, files: dict[str, Path], source: Path) -> None:
    base = runtime.module.replace(".", "/")
    candidates = (f"{base}.py", f"{base}/__init__.py")
    if not any(candidate in files for candidate in candidates):
        raise BundleError(
            f"runtime.entry_point {runtime.entry_point!r}: module {runtime.module!r} is not in "
            f"{source} (expected {candidates[0]} or {candidates[1]})"
        )


def _zip_info(path: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=_TIMESTAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = _UNIX
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    # zipfile decides on zip64 headers from the size it is told in advance.
    info.file_size = size
    return info


def _write_zip(out: IO[bytes], manifest: Manifest, files: dict[str, Path]) -> None:
    manifest_bytes = manifest.to_json()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(_zip_info(MANIFEST_NAME, len(manifest_bytes)), manifest_bytes)
        for path, file in files.items():
            with file.open("rb") as source:
                info = _zip_info(path, os.fstat(source.fileno()).st_size)
                with archive.open(info, "w") as target:
                    shutil.copyfileobj(source, target, _CHUNK)
