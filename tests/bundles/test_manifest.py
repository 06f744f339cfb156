"""Manifest.json validation, bundle identities, member paths and the content digest."""

from __future__ import annotations

import hashlib
import json
import posixpath

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import abaco.bundles
from abaco.bundles import (
    SPEC_V1,
    BundleError,
    BundleId,
    CommandRuntime,
    Manifest,
    PythonRuntime,
    Resources,
    archive,
    build,
    check_member_path,
    compute_content_sha256,
    manifest,
    parse_manifest,
)
from tests.bundles import manifest_dict

DIGEST = "ab" * 32


def _parse(**overrides) -> Manifest:
    return parse_manifest(
        json.dumps({**manifest_dict(content_sha256=DIGEST), **overrides}).encode()
    )


def test_package_reexports_every_public_name():
    for module in (manifest, archive, build):
        for name in module.__all__:
            assert getattr(abaco.bundles, name) is getattr(module, name), name


def test_minimal_manifest_gets_defaults():
    parsed = _parse()
    assert parsed == Manifest(
        spec=SPEC_V1,
        name="org.example/hello",
        version="1.0.0",
        runtime=PythonRuntime("hello.main:handle"),
        content_sha256=DIGEST,
    )
    assert parsed.parameters == {}
    assert parsed.resources == Resources(memory=None, cpu=None, network=False)
    assert isinstance(parsed.runtime, PythonRuntime)
    assert parsed.runtime.module == "hello.main"
    assert parsed.runtime.function == "handle"
    assert parsed.bundle_id == BundleId("org.example", "hello", "1.0.0")


def test_full_manifest_round_trips_through_json():
    parsed = _parse(
        version="2.1-SNAPSHOT",
        runtime={"type": "command", "argv": ["sh", "run.sh", "--fast"]},
        parameters={"greeting": "hi", "times": 2, "ratio": 0.5, "loud": False, "extra": None},
        resources={"memory": "1g", "cpu": 2, "network": True},
    )
    assert parsed.runtime == CommandRuntime(("sh", "run.sh", "--fast"))
    assert parsed.resources.memory_bytes == 1 << 30
    assert parsed.bundle_id.is_snapshot
    assert parse_manifest(parsed.to_json()) == parsed
    assert parsed.to_json() == parse_manifest(parsed.to_json()).to_json()
    assert json.loads(parsed.to_json()) == parsed.to_dict()


@pytest.mark.parametrize(
    ("memory", "expected"), [("512k", 512 << 10), ("256m", 256 << 20), ("3G", 3 << 30)]
)
def test_memory_sizes(memory, expected):
    assert _parse(resources={"memory": memory}).resources.memory_bytes == expected


def test_given_digest_replaces_a_missing_or_stale_one():
    without = json.dumps(manifest_dict()).encode()
    assert parse_manifest(without, content_sha256=DIGEST).content_sha256 == DIGEST
    stale = json.dumps(manifest_dict(content_sha256="not a digest")).encode()
    assert parse_manifest(stale, content_sha256=DIGEST).content_sha256 == DIGEST
    with pytest.raises(BundleError, match="missing required field 'content_sha256'"):
        parse_manifest(without)


BAD_FIELDS = [
    pytest.param({"spec": "abaco.bundle/v9"}, r"'spec' must be 'abaco.bundle/v1'", id="spec"),
    pytest.param({"spec": 1}, r"'spec' must be 'abaco.bundle/v1', got 1", id="spec-type"),
    pytest.param({"colour": "red"}, r"unknown field 'colour' \(allowed: ", id="unknown"),
    pytest.param({"name": "hello"}, r"'name' must be 'group/id'.*got \"hello\"", id="no-group"),
    pytest.param({"name": "Org.Example/hello"}, "'name' must be", id="uppercase-group"),
    pytest.param({"name": "org..example/hello"}, "'name' must be", id="empty-segment"),
    pytest.param({"name": "org.example/-hello"}, "'name' must be", id="id-dash"),
    pytest.param({"name": "org/a/b"}, "'name' must be", id="two-slashes"),
    pytest.param({"name": ["org", "x"]}, "'name' must be .* got an array", id="name-type"),
    pytest.param({"version": 1}, "'version' must be .* got 1", id="version-type"),
    pytest.param({"version": "latest"}, "'version' must be", id="version-word"),
    pytest.param({"version": "v1.0"}, "'version' must be", id="version-v"),
    pytest.param({"version": "1.0+build"}, "'version' must be", id="version-plus"),
    pytest.param({"version": "1." + "0." * 40 + "0"}, "'version' must be", id="version-long"),
    pytest.param({"runtime": "python"}, "'runtime' must be an object", id="runtime-type"),
    pytest.param({"runtime": {"type": "docker"}}, "'runtime.type' must be", id="runtime-kind"),
    pytest.param(
        {"runtime": {"type": "python"}},
        "missing required field 'runtime.entry_point'",
        id="no-entry-point",
    ),
    pytest.param(
        {"runtime": {"type": "python", "entry_point": "a:b", "argv": []}},
        "unknown field 'runtime.argv'",
        id="runtime-extra",
    ),
    pytest.param(
        {"runtime": {"type": "python", "entry_point": "main"}},
        "'runtime.entry_point' must be 'module:function'",
        id="entry-no-colon",
    ),
    pytest.param(
        {"runtime": {"type": "python", "entry_point": "main:"}}, "entry_point", id="no-function"
    ),
    pytest.param(
        {"runtime": {"type": "python", "entry_point": ":f"}}, "entry_point", id="no-module"
    ),
    pytest.param(
        {"runtime": {"type": "python", "entry_point": "my-mod:f"}}, "entry_point", id="dash"
    ),
    pytest.param(
        {"runtime": {"type": "python", "entry_point": "class.x:f"}}, "entry_point", id="keyword"
    ),
    pytest.param(
        {"runtime": {"type": "python", "entry_point": "a..b:f"}}, "entry_point", id="empty-part"
    ),
    pytest.param(
        {"runtime": {"type": "python", "entry_point": 3}}, "'runtime.entry_point'", id="ep-type"
    ),
    pytest.param(
        {"runtime": {"type": "command", "argv": []}}, "'runtime.argv' must be", id="argv-empty"
    ),
    pytest.param(
        {"runtime": {"type": "command", "argv": "run.sh"}}, "'runtime.argv'", id="argv-string"
    ),
    pytest.param(
        {"runtime": {"type": "command", "argv": ["sh", 1]}}, r"'runtime.argv\[1\]'", id="arg-int"
    ),
    pytest.param(
        {"runtime": {"type": "command", "argv": ["sh", ""]}}, r"'runtime.argv\[1\]'", id="arg-empty"
    ),
    pytest.param({"parameters": []}, "'parameters' must be an object", id="parameters-type"),
    pytest.param({"parameters": {"a-b": 1}}, "bad parameter name 'a-b'", id="parameter-name"),
    pytest.param({"parameters": {"a": [1]}}, "'parameters.a' must be a string", id="nested"),
    pytest.param({"resources": {"disk": "1g"}}, "unknown field 'resources.disk'", id="res-extra"),
    pytest.param({"resources": []}, "'resources' must be an object", id="resources-type"),
    pytest.param({"resources": {"memory": "256"}}, "'resources.memory' must be", id="no-unit"),
    pytest.param({"resources": {"memory": "0m"}}, "'resources.memory' must be", id="zero-mem"),
    pytest.param({"resources": {"memory": "1gb"}}, "'resources.memory' must be", id="mem-gb"),
    pytest.param({"resources": {"cpu": True}}, "'resources.cpu' must be", id="cpu-bool"),
    pytest.param({"resources": {"cpu": 0}}, "'resources.cpu' must be", id="cpu-zero"),
    pytest.param({"resources": {"cpu": "2"}}, "'resources.cpu' must be", id="cpu-string"),
    pytest.param({"resources": {"network": "yes"}}, "'resources.network' must be", id="network"),
    pytest.param({"content_sha256": "AB" * 32}, "'content_sha256' must be 64", id="digest-case"),
    pytest.param({"content_sha256": "ab"}, "'content_sha256' must be 64", id="digest-short"),
]


@pytest.mark.parametrize(("overrides", "match"), BAD_FIELDS)
def test_bad_field_is_named(overrides, match):
    with pytest.raises(BundleError, match=match) as caught:
        _parse(**overrides)
    assert str(caught.value).startswith("Manifest.json")


def test_infinite_parameter_is_refused():
    document = json.dumps(manifest_dict(content_sha256=DIGEST, parameters={"a": 1.5}))
    with pytest.raises(BundleError, match=r"'parameters\.a' must be a string, finite number"):
        parse_manifest(document.replace("1.5", "1e999").encode())


@pytest.mark.parametrize("field", ["spec", "name", "version", "runtime", "content_sha256"])
def test_missing_field_is_named(field):
    document = manifest_dict(content_sha256=DIGEST)
    del document[field]
    with pytest.raises(BundleError, match=f"missing required field '{field}'"):
        parse_manifest(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"{", "not valid UTF-8 JSON", id="truncated"),
        pytest.param(b"\xff\xfe", "not valid UTF-8 JSON", id="not-utf8"),
        pytest.param(b"[]", "^Manifest.json must be an object, got an array$", id="array"),
        pytest.param(b'{"spec": 1, "spec": 2}', "field 'spec' appears twice", id="duplicate"),
        pytest.param(b'{"cpu": NaN}', "NaN is not valid JSON", id="nan"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "not valid UTF-8 JSON", id="deep"),
        pytest.param(b'{"a": ' + b"9" * 5000 + b"}", "not valid UTF-8 JSON", id="huge-int"),
        pytest.param(b" " * (2 << 20), "at most 1048576", id="too-big"),
    ],
)
def test_bad_documents(data, match):
    with pytest.raises(BundleError, match=match):
        parse_manifest(data)


# -- bundle identities --------------------------------------------------------------------


def test_bundle_id_parse_and_paths():
    bundle_id = BundleId.parse("org.example.tools/hello-world:1.2.3-SNAPSHOT")
    assert bundle_id == BundleId("org.example.tools", "hello-world", "1.2.3-SNAPSHOT")
    assert str(bundle_id) == "org.example.tools/hello-world:1.2.3-SNAPSHOT"
    assert bundle_id.name == "org.example.tools/hello-world"
    assert bundle_id.is_snapshot
    assert bundle_id.file_name == "hello-world-1.2.3-SNAPSHOT.bpk"
    assert bundle_id.path_parts() == (
        "org",
        "example",
        "tools",
        "hello-world",
        "1.2.3-SNAPSHOT",
        "hello-world-1.2.3-SNAPSHOT.bpk",
    )
    assert not BundleId.parse("org/x:1.0").is_snapshot


@pytest.mark.parametrize(
    ("reference", "match"),
    [
        ("org.example/hello", "expected 'group/id:version'"),
        ("hello:1.0", "expected 'group/id:version'"),
        ("org/Hello:1.0", "bad bundle id 'Hello'"),
        ("org/../x:1.0", "bad bundle id"),
        ("Org/x:1.0", "bad bundle group 'Org'"),
        ("org./x:1.0", "bad bundle group"),
        ("org/x:1.0:2", "bad bundle version '1.0:2'"),
        ("org/x:", "bad bundle version ''"),
        ("org/x:../1", "bad bundle version"),
    ],
)
def test_bad_bundle_references(reference, match):
    with pytest.raises(BundleError, match=match):
        BundleId.parse(reference)


_segment = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
bundle_ids = st.builds(
    BundleId,
    group=st.lists(_segment, min_size=1, max_size=4).map(".".join),
    id=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True),
    version=st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4}){0,3}(-SNAPSHOT|-rc\.[0-9])?", fullmatch=True),
)


@given(bundle_ids)
def test_bundle_id_round_trips_and_its_path_stays_put(bundle_id):
    assert BundleId.parse(str(bundle_id)) == bundle_id
    parts = bundle_id.path_parts()
    assert all(part not in ("", ".", "..") and "/" not in part for part in parts)
    assert parts[-1] == bundle_id.file_name
    assert attrs.evolve(bundle_id) == bundle_id


# -- member paths and the content digest --------------------------------------------------


@pytest.mark.parametrize("path", ["a", "Manifest.json", "pkg/sub/mod.py", "é/ü.txt", "a..b/.c"])
def test_safe_member_paths(path):
    check_member_path(path)


@given(st.text(alphabet=st.sampled_from(["a", ".", "/", "\\", ":", "\0", "C", "\n", "é"])))
def test_accepted_member_paths_stay_inside(path):
    try:
        check_member_path(path)
    except BundleError:
        return
    joined = posixpath.normpath(posixpath.join("/root", path))
    assert joined.startswith("/root/")
    assert joined == "/root/" + path


def test_content_digest_definition():
    digests = {"b/y": hashlib.sha256(b"Y").hexdigest(), "a": hashlib.sha256(b"A").hexdigest()}
    expected = hashlib.sha256(
        b"a\0" + digests["a"].encode() + b"\n" + b"b/y\0" + digests["b/y"].encode() + b"\n"
    ).hexdigest()
    assert compute_content_sha256(digests) == expected
    assert compute_content_sha256({}) == hashlib.sha256(b"").hexdigest()
