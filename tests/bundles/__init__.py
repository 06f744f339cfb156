"""Helpers that make bundle archives by hand, well formed or not, for the bundle tests."""

from __future__ import annotations

import hashlib
import json
import struct
import warnings
import zipfile
import zlib
from typing import Any

from abaco.bundles import compute_content_sha256


def manifest_dict(**overrides) -> dict[str, Any]:
    """A valid manifest document (without content_sha256), with ``overrides`` applied."""
    document = {
        "spec": "abaco.bundle/v1",
        "name": "org.example/hello",
        "version": "1.0.0",
        "runtime": {"type": "python", "entry_point": "hello.main:handle"},
    }
    document.update(overrides)
    return document


def manifest_bytes(files: dict[str, bytes], **overrides) -> bytes:
    """``Manifest.json`` bytes whose content_sha256 matches ``files`` (unless overridden)."""
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    document = {"content_sha256": compute_content_sha256(digests), **manifest_dict()}
    document.update(overrides)
    return json.dumps(document).encode()


def write_zip(path, members, *, manifest: bytes | None = None) -> None:
    """Write ``members`` ((name or ZipInfo, bytes) pairs) with zipfile, after a manifest.

    The manifest's digest covers every file member given (``manifest`` replaces it; pass b""
    to leave Manifest.json out). Duplicate names are written as given.
    """
    if manifest is None:
        names = [(getattr(name, "filename", name), data) for name, data in members]
        files = {name: data for name, data in names if not name.endswith("/")}
        manifest = manifest_bytes(files)
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        if manifest:
            archive.writestr("Manifest.json", manifest)
        for name, data in members:
            archive.writestr(name, data)


def raw_zip(files, *, central=None, sizes=None, flags=0, deflate=False) -> bytes:
    """A zip written byte by byte, so that its headers can say anything.

    ``files`` is a list of (name, data) local entries. ``central`` lists (name, index of a
    local entry) central directory entries, one per local entry by default. ``sizes`` maps a
    central name to the uncompressed size its headers claim; ``flags`` sets general purpose
    bits on every entry.
    """
    sizes = sizes or {}
    out = bytearray()
    locals_ = []
    for name, data in files:
        body = data
        if deflate:
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            body = compressor.compress(data) + compressor.flush()
        encoded = name.encode()
        size = sizes.get(name, len(data))
        csize = len(body) if deflate else sizes.get(name, len(body))
        fields = (len(out), zlib.crc32(data), csize, size)
        out += struct.pack(
            "<4s5H3L2H",
            b"PK\x03\x04",
            20,
            flags,
            8 if deflate else 0,
            0,
            0x21,
            zlib.crc32(data),
            csize,
            size,
            len(encoded),
            0,
        )
        out += encoded + body
        locals_.append(fields)
    start = len(out)
    entries = central if central is not None else [(name, i) for i, (name, _) in enumerate(files)]
    for name, index in entries:
        offset, crc, csize, size = locals_[index]
        encoded = name.encode()
        out += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            0x031E,
            20,
            flags,
            8 if deflate else 0,
            0,
            0x21,
            crc,
            csize,
            sizes.get(name, size),
            len(encoded),
            0,
            0,
            0,
            0,
            0o100644 << 16,
            offset,
        )
        out += encoded
    count = len(entries)
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(out) - start, start, 0)
    return bytes(out)
