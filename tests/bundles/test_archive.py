"""Checking and unpacking archives: good ones unpack exactly, each kind of bad one is refused
with a message that names the problem, and a refused extraction leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile

import pytest

from abaco.bundles import ArchiveLimits, BundleError, extract_archive, inspect_archive
from abaco.errors import BadRequest
from tests.bundles import manifest_bytes, raw_zip, write_zip

LIMITS = ArchiveLimits()
FILES = {
    "hello/__init__.py": b"",
    "hello/main.py": b"def handle(message):\n    return message\n",
    "data/table.csv": b"a,b\n1,2\n" * 100,
}


def _write_good(path) -> None:
    write_zip(path, list(FILES.items()))


def _symlink(path) -> None:
    info = zipfile.ZipInfo("hello/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    write_zip(path, [*FILES.items(), (info, b"/etc/passwd")])


def _fifo(path) -> None:
    info = zipfile.ZipInfo("hello/pipe")
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    write_zip(path, [(info, b"")])


def _windows_link(path) -> None:
    info = zipfile.ZipInfo("hello/link")
    info.create_system = 0
    info.external_attr = 0x400  # FILE_ATTRIBUTE_REPARSE_POINT
    write_zip(path, [(info, b"C:\\Windows")])


def _named(name: str):
    def write(path) -> None:
        write_zip(path, [*FILES.items(), (name, b"evil")])

    return write


def _nul_name(path) -> None:
    # zipfile cannot write a NUL in a name, so write a placeholder and patch both headers.
    write_zip(path, [("evilXname", b"evil")])
    data = path.read_bytes()
    assert data.count(b"evilXname") == 2
    path.write_bytes(data.replace(b"evilXname", b"evil\0name"))


def _duplicate(path) -> None:
    write_zip(path, [("hello/main.py", b"one"), ("hello/main.py", b"two")])


def _file_then_inside(path) -> None:
    write_zip(path, [("hello", b"a file"), ("hello/main.py", b"inside it")])


def _many(path) -> None:
    write_zip(path, [(f"f{index}", b"x") for index in range(10)])


def _zeros(size: int):
    def write(path) -> None:
        write_zip(path, [("zeros.bin", bytes(size))])

    return write


def _overlapping(path) -> None:
    # CVE-2024-0450: two central directory entries point at one local entry.
    manifest = manifest_bytes({"a": b"x" * 100, "b": b"x" * 100})
    data = raw_zip(
        [("Manifest.json", manifest), ("a", b"x" * 100)],
        central=[("Manifest.json", 0), ("a", 1), ("b", 1)],
    )
    path.write_bytes(data)


def _covering(path) -> None:
    # The first member's data, as its headers size it, covers the next member's header.
    manifest = manifest_bytes({"a": b"x" * 100, "b": b"y" * 100})
    files = [("Manifest.json", manifest), ("a", b"x" * 100), ("b", b"y" * 100)]
    path.write_bytes(raw_zip(files, sizes={"a": 150}))


def _past_central_directory(path) -> None:
    manifest = manifest_bytes({"a": b"x" * 100})
    path.write_bytes(raw_zip([("Manifest.json", manifest), ("a", b"x" * 100)], sizes={"a": 500}))


def _lying_sizes(path) -> None:
    # The headers claim 1000 bytes; the deflated stream holds a million.
    manifest = manifest_bytes({"a": bytes(1000)})
    data = raw_zip(
        [("Manifest.json", manifest), ("a", bytes(10**6))], sizes={"a": 1000}, deflate=True
    )
    path.write_bytes(data)


def _encrypted(path) -> None:
    manifest = manifest_bytes({"a": b"secret"})
    path.write_bytes(raw_zip([("Manifest.json", manifest), ("a", b"secret")], flags=0x1))


def _bzip2(path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Manifest.json", manifest_bytes({"a": b"x"}))
        archive.writestr("a", b"x", compress_type=zipfile.ZIP_BZIP2)


def _truncated(path) -> None:
    _write_good(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _sha_mismatch(path) -> None:
    write_zip(path, list(FILES.items()), manifest=manifest_bytes({**FILES, "extra": b""}))


def _no_manifest(path) -> None:
    write_zip(path, list(FILES.items()), manifest=b"")


def _manifest_directory(path) -> None:
    write_zip(path, [("Manifest.json/", b"")], manifest=b"")


def _manifest_not_json(path) -> None:
    write_zip(path, list(FILES.items()), manifest=b"{not json")


def _manifest_bad_field(path) -> None:
    write_zip(path, list(FILES.items()), manifest=manifest_bytes(FILES, version="latest"))


BAD_ARCHIVES = [
    pytest.param(_named("../evil"), LIMITS, r"'\.\./evil' contains '\.\.'", id="zip-slip"),
    pytest.param(_named("a/../../evil"), LIMITS, r"contains '\.\.'", id="zip-slip-inner"),
    pytest.param(_named("/etc/x"), LIMITS, r"'/etc/x' is absolute", id="absolute"),
    pytest.param(_named("a\\..\\evil"), LIMITS, "contains a backslash", id="backslash"),
    pytest.param(_named("C:/evil"), LIMITS, "drive letter", id="drive-letter"),
    pytest.param(_nul_name, LIMITS, "NUL", id="nul"),
    pytest.param(_named("a\nb"), LIMITS, "control character", id="newline"),
    pytest.param(_named("a//b"), LIMITS, "empty or '.' component", id="empty-component"),
    pytest.param(_named("./a"), LIMITS, "empty or '.' component", id="dot-component"),
    pytest.param(_named("x" * 300), LIMITS, "too long", id="long-name"),
    pytest.param(_symlink, LIMITS, "'hello/link' is a symbolic link", id="symlink"),
    pytest.param(_windows_link, LIMITS, "'hello/link' is a symbolic link", id="reparse-point"),
    pytest.param(_fifo, LIMITS, "'hello/pipe' is not a regular file", id="fifo"),
    pytest.param(_duplicate, LIMITS, "'hello/main.py' appears more than once", id="duplicate"),
    pytest.param(_file_then_inside, LIMITS, "'hello/main.py' lies inside 'hello'", id="in-file"),
    pytest.param(_many, ArchiveLimits(max_members=5), "11 members; at most 5", id="too-many"),
    pytest.param(
        _zeros(2 << 20),
        ArchiveLimits(max_total_bytes=1 << 20, max_ratio=10_000),
        "uncompressed; at most 1048576",
        id="bomb-total",
    ),
    pytest.param(
        _zeros(2 << 20),
        ArchiveLimits(max_member_bytes=1 << 20, max_ratio=10_000),
        "'zeros.bin' is 2097152 bytes uncompressed; at most 1048576",
        id="bomb-member",
    ),
    pytest.param(_zeros(8 << 20), LIMITS, "'zeros.bin' expands .* zip bomb", id="bomb-ratio"),
    pytest.param(_overlapping, LIMITS, "'a' and 'b' overlap.*CVE-2024-0450", id="overlap"),
    pytest.param(_covering, LIMITS, "'a' and 'b' overlap", id="overlap-covering"),
    pytest.param(_past_central_directory, LIMITS, "runs into the central directory", id="past-cd"),
    pytest.param(_lying_sizes, LIMITS, "'a' is corrupt", id="lying-sizes"),
    pytest.param(_encrypted, LIMITS, "'Manifest.json' is encrypted", id="encrypted"),
    pytest.param(_bzip2, LIMITS, "compression method 12", id="bzip2"),
    pytest.param(_truncated, LIMITS, "not a valid zip archive", id="truncated"),
    pytest.param(lambda path: path.write_bytes(b"hello"), LIMITS, "not a valid zip", id="not-zip"),
    pytest.param(lambda path: path.write_bytes(b""), LIMITS, "not a valid zip", id="empty-file"),
    pytest.param(_sha_mismatch, LIMITS, "content_sha256 .* but the content hashes to", id="sha"),
    pytest.param(_no_manifest, LIMITS, "no Manifest.json at its root", id="no-manifest"),
    pytest.param(_manifest_directory, LIMITS, "no Manifest.json", id="manifest-directory"),
    pytest.param(_manifest_not_json, LIMITS, "Manifest.json is not valid", id="manifest-json"),
    pytest.param(_manifest_bad_field, LIMITS, "'version' must be", id="manifest-field"),
]


@pytest.fixture
def layout(tmp_path):
    """An upload to check, and an empty directory to unpack into."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "in" / "upload.bpk", tmp_path / "out"


@pytest.mark.parametrize(("write", "limits", "match"), BAD_ARCHIVES)
def test_inspect_refuses(layout, write, limits, match):
    upload, _ = layout
    write(upload)
    with pytest.raises(BundleError, match=match):
        inspect_archive(upload, limits=limits)


@pytest.mark.parametrize(("write", "limits", "match"), BAD_ARCHIVES)
def test_extract_refuses_and_leaves_nothing(layout, write, limits, match):
    upload, out = layout
    write(upload)
    with pytest.raises(BundleError, match=match):
        extract_archive(upload, out / "bundle", limits=limits)
    assert list(out.iterdir()) == []
    assert list(upload.parent.iterdir()) == [upload]


def test_bundle_error_is_a_bad_request():
    assert issubclass(BundleError, BadRequest)


def test_inspect_returns_the_manifest(layout):
    upload, _ = layout
    _write_good(upload)
    manifest = inspect_archive(upload, limits=LIMITS)
    assert str(manifest.bundle_id) == "org.example/hello:1.0.0"


def test_digest_ignores_timestamps_compression_and_order(layout):
    upload, _ = layout
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_STORED) as archive:
        for path, data in reversed(FILES.items()):
            archive.writestr(zipfile.ZipInfo(path, date_time=(2001, 2, 3, 4, 5, 6)), data)
        archive.writestr("Manifest.json", manifest_bytes(FILES))
    inspect_archive(upload, limits=LIMITS)


def test_small_repetitive_members_pass_the_ratio_check(layout):
    upload, _ = layout
    write_zip(upload, [("spaces.txt", b" " * 100_000)])
    inspect_archive(upload, limits=LIMITS)


def test_extract_writes_exactly_the_members(layout):
    upload, out = layout
    write_zip(upload, [("hello/", b""), *FILES.items(), ("empty/dir/", b"")])
    dest = out / "bundle"
    previous = os.umask(0o077)  # modes must not depend on the umask
    try:
        manifest = extract_archive(upload, dest, limits=LIMITS)
    finally:
        os.umask(previous)
    written = {
        path.relative_to(dest).as_posix(): path.read_bytes()
        for path in dest.rglob("*")
        if path.is_file()
    }
    assert written == {**FILES, "Manifest.json": manifest_bytes(FILES)}
    assert json.loads(written["Manifest.json"])["content_sha256"] == manifest.content_sha256
    assert (dest / "empty" / "dir").is_dir()
    for path in [dest, *dest.rglob("*")]:
        expected = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.lstat().st_mode) == expected, path
    assert [path.name for path in out.iterdir()] == ["bundle"]


def test_extract_refuses_an_existing_destination(layout):
    upload, out = layout
    _write_good(upload)
    (out / "bundle").mkdir()
    with pytest.raises(FileExistsError):
        extract_archive(upload, out / "bundle", limits=LIMITS)
    assert [path.name for path in out.iterdir()] == ["bundle"]
    assert list((out / "bundle").iterdir()) == []


def test_extract_checks_content_while_writing(layout):
    upload, out = layout
    files = {"big.bin": hashlib.sha256(b"seed").digest() * 1000}
    write_zip(upload, list(files.items()), manifest=manifest_bytes({"big.bin": b"other"}))
    with pytest.raises(BundleError, match="content_sha256"):
        extract_archive(upload, out / "bundle", limits=LIMITS)
    assert list(out.iterdir()) == []


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_members"):
        ArchiveLimits(max_members=0)
