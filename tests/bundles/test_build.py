"""Building bundles: what goes in, deterministic bytes, the round trip, and clear refusals."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile

import pytest

from abaco.bundles import (
    ArchiveLimits,
    BundleError,
    build_bundle,
    compute_content_sha256,
    extract_archive,
    inspect_archive,
)
from tests.bundles import manifest_dict

LIMITS = ArchiveLimits()
SOURCE_FILES = {
    "hello/__init__.py": b"",
    "hello/main.py": b"def handle(message):\n    return message\n",
    "hello/data/words.txt": b"one\ntwo\n",
    "README.md": b"# hello\n",
}


@pytest.fixture
def source(tmp_path):
    """A source directory with a manifest, code, and the clutter a build leaves out."""
    root = tmp_path / "src"
    for path, data in SOURCE_FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (root / "Manifest.json").write_text(json.dumps(manifest_dict()))
    (root / "hello" / "__pycache__").mkdir()
    (root / "hello" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0bytecode")
    (root / "hello" / "stale.pyc").write_bytes(b"\0bytecode")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "hello-0.9.0.bpk").write_bytes(b"an earlier build")
    (root / "empty").mkdir()
    return root


@pytest.fixture
def output(tmp_path):
    directory = tmp_path / "dist"
    directory.mkdir()
    return directory


def test_build_writes_sorted_members_with_fixed_metadata(source, output):
    built = build_bundle(source, output)
    assert built == output / "hello-1.0.0.bpk"
    assert [path.name for path in output.iterdir()] == ["hello-1.0.0.bpk"]
    assert stat.S_IMODE(built.stat().st_mode) == 0o644
    with zipfile.ZipFile(built) as archive:
        infos = archive.infolist()
        assert [info.filename for info in infos] == ["Manifest.json", *sorted(SOURCE_FILES)]
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.external_attr >> 16 == stat.S_IFREG | 0o644
        document = json.loads(archive.read("Manifest.json"))
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in SOURCE_FILES.items()}
    assert document["content_sha256"] == compute_content_sha256(digests)


def test_round_trip_build_inspect_extract(source, output, tmp_path):
    built = build_bundle(source, output)
    manifest = inspect_archive(built, limits=LIMITS)
    dest = tmp_path / "unpacked"
    assert extract_archive(built, dest, limits=LIMITS) == manifest
    unpacked = {
        path.relative_to(dest).as_posix(): path.read_bytes()
        for path in dest.rglob("*")
        if path.is_file()
    }
    assert unpacked.pop("Manifest.json") == manifest.to_json()
    assert unpacked == SOURCE_FILES


def test_building_twice_gives_identical_bytes(source, tmp_path):
    first = build_bundle(source, tmp_path).read_bytes()
    # Times and modes on disk must not reach the archive.
    for path in source.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    (source / "hello" / "main.py").chmod(0o755)
    second = build_bundle(source, tmp_path).read_bytes()
    assert first == second


def test_stale_digest_in_source_is_replaced(source, output):
    fresh = inspect_archive(build_bundle(source, output), limits=LIMITS)
    (source / "Manifest.json").write_text(json.dumps(manifest_dict(content_sha256="0" * 64)))
    assert inspect_archive(build_bundle(source, output), limits=LIMITS) == fresh


def test_output_defaults_to_the_current_directory(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert build_bundle(source).resolve() == (tmp_path / "hello-1.0.0.bpk").resolve()


def test_package_entry_point_and_command_runtime(source, output):
    (source / "Manifest.json").write_text(
        json.dumps(manifest_dict(runtime={"type": "python", "entry_point": "hello:handle"}))
    )
    build_bundle(source, output)
    (source / "Manifest.json").write_text(
        json.dumps(manifest_dict(runtime={"type": "command", "argv": ["sh", "nothing.sh"]}))
    )
    build_bundle(source, output)


def _refused(source, output, match):
    with pytest.raises(BundleError, match=match):
        build_bundle(source, output)
    assert list(output.iterdir()) == []


def test_missing_manifest(source, output):
    (source / "Manifest.json").unlink()
    _refused(source, output, "no Manifest.json in .*src")


def test_invalid_manifest(source, output):
    (source / "Manifest.json").write_text(json.dumps(manifest_dict(name="hello")))
    _refused(source, output, "'name' must be 'group/id'")
    (source / "Manifest.json").write_text("{")
    _refused(source, output, "not valid UTF-8 JSON")


def test_manifest_that_is_a_link(source, output):
    (source / "real.json").write_text(json.dumps(manifest_dict()))
    (source / "Manifest.json").unlink()
    (source / "Manifest.json").symlink_to("real.json")
    _refused(source, output, "Manifest.json is not a regular file")


def test_entry_point_module_must_exist(source, output):
    (source / "Manifest.json").write_text(
        json.dumps(manifest_dict(runtime={"type": "python", "entry_point": "hello.missing:f"}))
    )
    _refused(source, output, r"module 'hello.missing' is not in .*hello/missing\.py")


def test_symlinked_file_is_refused(source, output):
    (source / "hello" / "link.py").symlink_to("main.py")
    _refused(source, output, "link.py is a symbolic link")


def test_symlinked_directory_is_refused(source, output):
    (source / "shared").symlink_to(source / "hello")
    _refused(source, output, "shared is a symbolic link")


def test_fifo_is_refused(source, output):
    os.mkfifo(source / "pipe")
    _refused(source, output, "pipe is not a regular file")


def test_unsafe_file_name_is_refused(source, output):
    (source / "back\\slash.txt").write_text("x")
    _refused(source, output, "contains a backslash")


def test_build_checks_the_archive_against_the_limits(source, output):
    with pytest.raises(BundleError, match="at most 3 are allowed"):
        build_bundle(source, output, limits=ArchiveLimits(max_members=3))
    assert list(output.iterdir()) == []


def test_source_must_be_a_directory(tmp_path, output):
    _refused(tmp_path / "nowhere", output, "is not a directory")
