"""What a bundle archive may hold, and checking and unpacking archives from someone else.

:func:`check_member_path` and :func:`compute_content_sha256` (the digest defined in
:mod:`abaco.bundles.manifest`) serve building too. :func:`inspect_archive` checks an
archive's structure before a single member is extracted, then reads every member (bounded
by :class:`ArchiveLimits`) to check the manifest's ``content_sha256``.
:func:`extract_archive` does the same checks and writes the members itself.

Why not trust :mod:`zipfile` to do this: ``ZipFile.extract`` silently rewrites ``../x`` to
``x``, so extraction must never be the safety check; and this Python's zipfile predates
the fix for overlapping entries (CVE-2024-0450), where many central directory entries
point at one compressed stream to multiply its size. Member sizes in the headers are
checked first, but headers can lie, so bytes are counted again as they are read.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from itertools import pairwise
from pathlib import Path
from typing import IO, TYPE_CHECKING
from zipfile import BadZipFile

import attrs

from abaco.bundles.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, BundleError, parse_manifest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from abaco.bundles.manifest import Manifest

__all__ = [
    "ArchiveLimits",
    "check_member_path",
    "compute_content_sha256",
    "extract_archive",
    "inspect_archive",
]

_CHUNK = 1 << 16
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
# Windows marks symbolic links and junctions as reparse points in the MS-DOS attributes.
_DOS_REPARSE_POINT = 0x400
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# What zipfile raises for a malformed archive (bad UTF-8 names are a ValueError); OSError
# stays out, as it is about our own disk.
_ZIP_ERRORS = (BadZipFile, NotImplementedError, EOFError, struct.error, zlib.error, ValueError)


_positive = attrs.validators.gt(0)


@attrs.frozen(kw_only=True)
class ArchiveLimits:
    """Bounds on what an archive may hold; anything past them is refused as a zip bomb."""

    #: Entries in the archive, directories included.
    max_members: int = attrs.field(default=10_000, validator=_positive)
    #: Uncompressed bytes of all members together.
    max_total_bytes: int = attrs.field(default=1 << 30, validator=_positive)
    #: Uncompressed bytes of any one member.
    max_member_bytes: int = attrs.field(default=256 << 20, validator=_positive)
    #: Uncompressed size over compressed size of any one member (deflate tops out at ~1030).
    max_ratio: float = attrs.field(default=200, validator=_positive)
    #: Members smaller than this skip the ratio check: a small run of spaces compresses
    #: hundreds of times over and harms no one.
    ratio_min_bytes: int = attrs.field(default=1 << 20, validator=_positive)


@attrs.frozen
class _Member:
    info: zipfile.ZipInfo
    # The member's path without a directory entry's trailing "/".
    path: str
    is_dir: bool


def inspect_archive(path: str | os.PathLike[str], *, limits: ArchiveLimits) -> Manifest:
    """Check an uploaded archive without extracting it and return its manifest.

    Raises :class:`~abaco.bundles.BundleError` saying what is wrong: not a zip, an unsafe or
    duplicate member path, a link or other non-regular member, too many or too large
    members, an absurd compression ratio, overlapping entries, a missing or invalid
    ``Manifest.json``, or a ``content_sha256`` that does not match the content.
    """
    with open(path, "rb") as file, _open_zip(file) as archive:
        members = _check_structure(file, archive, limits)
        reader = _Reader(archive, limits)
        manifest, _ = _read_manifest(reader, members)
        digests = {
            member.path: reader.read(member, None)
            for member in members
            if not member.is_dir and member.path != MANIFEST_NAME
        }
        _check_digest(manifest, digests)
        return manifest


def extract_archive(
    path: str | os.PathLike[str], dest: str | os.PathLike[str], *, limits: ArchiveLimits
) -> Manifest:
    """Check an archive as :func:`inspect_archive` does and unpack it into a new ``dest``.

    ``dest`` must not exist; its parent must. Members are written into a temporary sibling
    directory (the content digest is checked as they are written), which is renamed to
    ``dest`` only once everything checked out, so on any error nothing is left beside it.
    Files get mode 0644 and directories 0755, whatever the archive says. Raises
    :class:`FileExistsError` if ``dest`` exists.
    """
    dest = Path(dest)
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest} exists already")
    with open(path, "rb") as file, _open_zip(file) as archive:
        members = _check_structure(file, archive, limits)
        reader = _Reader(archive, limits)
        manifest, manifest_bytes = _read_manifest(reader, members)
        temporary = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            _unpack(reader, members, manifest, manifest_bytes, temporary)
            os.chmod(temporary, 0o755)
            # rename() would replace an empty directory made meanwhile; refuse that too.
            if os.path.lexists(dest):
                raise FileExistsError(f"{dest} exists already")
            os.rename(temporary, dest)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return manifest


# -- member paths and the content digest --------------------------------------------------

_MAX_PATH_BYTES = 1024
_MAX_COMPONENT_BYTES = 255


def check_member_path(path: str) -> None:
    """Raise :class:`~abaco.bundles.BundleError` unless ``path`` is a safe member path.

    Safe: relative, ``/``-separated, no component empty, ``.`` or ``..``; no drive letter,
    backslash, NUL, other control character or lone surrogate; at most 255 UTF-8 bytes per
    component and 1024 in all. Joined to a directory, such a path names a file inside it.
    Strip a directory entry's trailing ``/`` first.
    """
    parts = path.split("/")
    problems = (
        (not path, "is empty"),
        (path.startswith("/"), "is absolute"),
        (path[1:2] == ":" and path[:1].isascii() and path[:1].isalpha(), "has a drive letter"),
        ("\\" in path, "contains a backslash"),
        ("\0" in path, "contains a NUL byte"),
        (any(ord(c) < 0x20 or ord(c) == 0x7F for c in path), "contains a control character"),
        (any(0xD800 <= ord(c) <= 0xDFFF for c in path), "is not valid Unicode"),
        (".." in parts, "contains '..'"),
        ("" in parts or "." in parts, "has an empty or '.' component"),
    )
    for bad, problem in problems:
        if bad:
            raise BundleError(f"member path {path!r} {problem}")
    too_long = max(len(part.encode()) for part in parts) > _MAX_COMPONENT_BYTES
    if too_long or len(path.encode()) > _MAX_PATH_BYTES:
        raise BundleError(
            f"member path {path[:60]!r}... is too long (at most {_MAX_COMPONENT_BYTES} bytes "
            f"a component, {_MAX_PATH_BYTES} in all)"
        )


def compute_content_sha256(file_digests: Mapping[str, str]) -> str:
    """A manifest's ``content_sha256`` from member path -> hex sha256 of the member's bytes.

    Pass every regular file member except ``Manifest.json``. The encoding is defined in
    :mod:`abaco.bundles.manifest`.
    """
    digest = hashlib.sha256()
    for path in sorted(file_digests):
        digest.update(path.encode() + b"\0" + file_digests[path].encode("ascii") + b"\n")
    return digest.hexdigest()


# -- structure ----------------------------------------------------------------------------


def _open_zip(file: IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(file)
    except _ZIP_ERRORS as exc:
        raise BundleError(f"the upload is not a valid zip archive: {exc}") from exc


def _check_structure(
    file: IO[bytes], archive: zipfile.ZipFile, limits: ArchiveLimits
) -> list[_Member]:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise BundleError(
            f"the archive has {len(infos)} members; at most {limits.max_members} are allowed"
        )
    members = [_check_member(info, limits) for info in infos]
    _check_names(members)
    total = sum(member.info.file_size for member in members)
    if total > limits.max_total_bytes:
        raise BundleError(
            f"the archive holds {total} bytes uncompressed; at most {limits.max_total_bytes} "
            "are allowed"
        )
    _check_layout(file, archive, members)
    return members


def _check_member(info: zipfile.ZipInfo, limits: ArchiveLimits) -> _Member:
    # orig_filename is the name as stored; ZipInfo.filename has been cut at any NUL.
    raw = info.orig_filename
    is_dir = raw.endswith("/")
    path = raw[:-1] if is_dir else raw
    check_member_path(path)
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode) or info.external_attr & _DOS_REPARSE_POINT:
        raise BundleError(f"member {raw!r} is a symbolic link; bundles hold regular files only")
    # With no file type at all (zipfile's writestr sets none), the trailing "/" decides.
    if kind and kind != (stat.S_IFDIR if is_dir else stat.S_IFREG):
        raise BundleError(
            f"member {raw!r} is not a regular file (file type {kind:#o}); "
            "bundles hold regular files and directories only"
        )
    if info.flag_bits & 0x1:
        raise BundleError(f"member {raw!r} is encrypted; bundles cannot be")
    if info.compress_type not in _METHODS:
        raise BundleError(
            f"member {raw!r} uses compression method {info.compress_type}; "
            "only stored and deflated are accepted"
        )
    if is_dir and info.file_size:
        raise BundleError(f"directory member {raw!r} claims {info.file_size} bytes of content")
    if info.file_size > limits.max_member_bytes:
        raise BundleError(
            f"member {raw!r} is {info.file_size} bytes uncompressed; "
            f"at most {limits.max_member_bytes} are allowed"
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise BundleError(f"member {raw!r} is stored, yet its two sizes in the header differ")
    if (
        info.file_size >= limits.ratio_min_bytes
        and info.file_size > info.compress_size * limits.max_ratio
    ):
        ratio = info.file_size / max(info.compress_size, 1)
        raise BundleError(
            f"member {raw!r} expands {ratio:.0f} times ({info.compress_size} bytes to "
            f"{info.file_size}); more than {limits.max_ratio:g} looks like a zip bomb"
        )
    return _Member(info, path, is_dir)


def _check_names(members: list[_Member]) -> None:
    kinds: dict[str, bool] = {}
    for member in members:
        if member.path in kinds:
            raise BundleError(f"member name {member.path!r} appears more than once")
        kinds[member.path] = member.is_dir
    for member in members:
        parts = member.path.split("/")
        for end in range(1, len(parts)):
            parent = "/".join(parts[:end])
            if kinds.get(parent) is False:
                raise BundleError(f"member {member.path!r} lies inside {parent!r}, a file")


def _check_layout(file: IO[bytes], archive: zipfile.ZipFile, members: list[_Member]) -> None:
    """Each member's local header and data must lie apart from the others and end before
    the central directory (the CVE-2024-0450 check zipfile lacks here)."""
    spans: list[tuple[int, int, str]] = []
    for member in members:
        offset = member.info.header_offset
        file.seek(max(offset, 0))
        header = file.read(_LOCAL_HEADER.size)
        if offset < 0 or len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise BundleError(
                f"member {member.info.orig_filename!r} has no local header at offset {offset}; "
                "the archive is truncated or corrupt"
            )
        fields = _LOCAL_HEADER.unpack(header)
        name_length, extra_length = fields[-2], fields[-1]
        end = offset + _LOCAL_HEADER.size + name_length + extra_length + member.info.compress_size
        spans.append((offset, end, member.info.orig_filename))
    spans.sort()
    for (_, end, name), (start, _, other) in pairwise(spans):
        if end > start:
            raise BundleError(
                f"members {name!r} and {other!r} overlap in the archive "
                "(an overlapping-entries zip bomb, CVE-2024-0450)"
            )
    if spans and spans[-1][1] > archive.start_dir:
        raise BundleError(
            f"the data of member {spans[-1][2]!r} runs into the central directory; "
            "the archive is truncated or corrupt"
        )


# -- content ------------------------------------------------------------------------------


class _Reader:
    """Reads members in chunks, counting bytes against the limits as they come."""

    def __init__(self, archive: zipfile.ZipFile, limits: ArchiveLimits) -> None:
        self.archive = archive
        self.limits = limits
        self.total = 0

    def read(self, member: _Member, out: Callable[[bytes], object] | None) -> str:
        """Hand every chunk of ``member`` to ``out``; return the sha256 of its bytes."""
        info, digest, size = member.info, hashlib.sha256(), 0
        try:
            with self.archive.open(info) as source:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    self.total += len(chunk)
                    # The headers were checked against the limits, so going past a header
                    # is also the first step past a limit.
                    if size > info.file_size or self.total > self.limits.max_total_bytes:
                        raise BundleError(f"member {member.path!r} holds more than its header says")
                    digest.update(chunk)
                    if out is not None:
                        out(chunk)
        except _ZIP_ERRORS as exc:
            raise BundleError(f"member {member.path!r} is corrupt: {exc}") from exc
        if size != info.file_size:
            raise BundleError(f"member {member.path!r} holds fewer bytes than its header says")
        return digest.hexdigest()


def _read_manifest(reader: _Reader, members: list[_Member]) -> tuple[Manifest, bytes]:
    member = next((m for m in members if m.path == MANIFEST_NAME and not m.is_dir), None)
    if member is None:
        raise BundleError(f"the archive has no {MANIFEST_NAME} at its root")
    if member.info.file_size > MAX_MANIFEST_BYTES:
        raise BundleError(
            f"{MANIFEST_NAME} is {member.info.file_size} bytes; "
            f"at most {MAX_MANIFEST_BYTES} are allowed"
        )
    buffer = io.BytesIO()
    reader.read(member, buffer.write)
    return parse_manifest(buffer.getvalue()), buffer.getvalue()


def _check_digest(manifest: Manifest, digests: dict[str, str]) -> None:
    actual = compute_content_sha256(digests)
    if actual != manifest.content_sha256:
        raise BundleError(
            f"content_sha256 in {MANIFEST_NAME} is {manifest.content_sha256} but the "
            f"content hashes to {actual}; the archive was altered or built wrongly "
            "(rebuild it with `abaco bundle build`)"
        )


def _unpack(
    reader: _Reader, members: list[_Member], manifest: Manifest, manifest_bytes: bytes, root: Path
) -> None:
    real_root = os.path.realpath(root)
    digests: dict[str, str] = {}
    for member in members:
        target = os.path.join(real_root, *member.path.split("/"))
        parent = target if member.is_dir else os.path.dirname(target)
        _make_dirs(real_root, parent)
        # Names were checked already; this guards against a link made under our feet.
        if os.path.commonpath([real_root, os.path.realpath(parent)]) != real_root:
            raise BundleError(f"member {member.path!r} would be written outside the bundle")
        if member.is_dir:
            continue
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(target, flags, 0o644)
        with open(descriptor, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            if member.path == MANIFEST_NAME:
                out.write(manifest_bytes)
            else:
                digests[member.path] = reader.read(member, out.write)
    _check_digest(manifest, digests)


def _make_dirs(root: str, directory: str) -> None:
    """Make ``directory`` and its missing parents below ``root``, each with mode 0755."""
    missing = []
    while directory != root and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for path in reversed(missing):
        os.mkdir(path)
        # mkdir's mode passes through the umask; the bundle's modes should not.
        os.chmod(path, 0o755)
