"""The bundle format: ``Manifest.json`` and bundle identities.

A bundle is a zip archive with ``Manifest.json`` at its root, for example::

    {
      "spec": "abaco.bundle/v1",
      "name": "org.example/hello",
      "version": "1.0.0",
      "runtime": {"type": "python", "entry_point": "hello.main:handle"},
      "parameters": {"greeting": "hi", "times": 2},
      "resources": {"memory": "256m", "cpu": 0.5, "network": false},
      "content_sha256": "9f86d0...(64 hex digits)"
    }

``parameters`` and ``resources`` may be left out; every other field is required, and any
field not listed here is an error, so that a typo is reported rather than ignored.

**content_sha256** is the digest of everything in the bundle except ``Manifest.json``
itself. For every regular file member other than ``Manifest.json``, take its path inside
the archive (``/``-separated, no trailing ``/``) and the lowercase hex sha256 of its
uncompressed bytes; sort these pairs by path (code point order, which is also the order of
their UTF-8 bytes); the digest is the lowercase hex sha256 of the concatenation of
``path.encode("utf-8") + b"\\0" + hex_digest.encode("ascii") + b"\\n"`` for each pair.
Directory entries do not count. Member paths hold neither NUL nor newlines (see
:func:`~abaco.bundles.check_member_path`), so the encoding is unambiguous;
:func:`~abaco.bundles.compute_content_sha256` computes it. As only paths and bytes enter
it, the digest does not depend on zip timestamps, compression, member order or file modes:
the same files give the same digest however the archive was made.

Everything here is pure: no I/O.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from typing import Any, ClassVar, NoReturn

import attrs

from abaco.errors import BundleError

__all__ = [
    "BUNDLE_SUFFIX",
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "SPEC_V1",
    "BundleError",
    "BundleId",
    "CommandRuntime",
    "Manifest",
    "PythonRuntime",
    "Resources",
    "Runtime",
    "Scalar",
    "parse_manifest",
]

SPEC_V1 = "abaco.bundle/v1"
MANIFEST_NAME = "Manifest.json"
BUNDLE_SUFFIX = ".bpk"
# A manifest is a few hundred bytes; the bound keeps a hostile one from costing memory.
MAX_MANIFEST_BYTES = 1 << 20

Scalar = str | int | float | bool | None


# Each group segment and the id must be usable as a directory name as is: they start with
# a letter or digit, so "." and ".." cannot be spelled.
_SEGMENT = r"[a-z0-9][a-z0-9_-]{0,63}"
_GROUP_RE = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT}){{0,15}}")
_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# Semver-ish: numeric parts, then an optional qualifier such as -rc.1 or -SNAPSHOT; at most
# 64 characters in all.
_VERSION_RE = re.compile(
    r"(?=.{1,64}\Z)[0-9]{1,9}(?:\.[0-9]{1,9}){0,3}(?:-[0-9A-Za-z]+(?:[.-][0-9A-Za-z]+)*)?"
)
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MEMORY_RE = re.compile(r"([1-9][0-9]{0,15})([kmgKMG])")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NAME_HELP = "'group/id' with a lowercase dotted group and a lowercase id, e.g. 'org.example/hello'"
_VERSION_HELP = "a version such as '1.0.0', '2.1' or '1.0.0-SNAPSHOT' (64 characters at most)"


def _fail(message: str) -> NoReturn:
    raise BundleError(message)


@attrs.frozen
class BundleId:
    """A bundle's identity: ``group/id:version``, as an actor's ``image`` names it."""

    group: str
    id: str
    version: str

    def __attrs_post_init__(self) -> None:
        if not _GROUP_RE.fullmatch(self.group):
            _fail(f"bad bundle group {self.group!r}: expected lowercase segments joined by dots")
        if not _ID_RE.fullmatch(self.id):
            _fail(f"bad bundle id {self.id!r}: expected [a-z0-9][a-z0-9._-]*")
        if not _VERSION_RE.fullmatch(self.version):
            _fail(f"bad bundle version {self.version!r}: expected {_VERSION_HELP}")

    @classmethod
    def parse(cls, reference: str) -> BundleId:
        """Read ``group/id:version``; raises :class:`BundleError` on any other form."""
        name, colon, version = reference.partition(":")
        group, slash, bundle_id = name.partition("/")
        if not (colon and slash):
            _fail(
                f"bad bundle reference {reference!r}: expected 'group/id:version', "
                "e.g. 'org.example/hello:1.0.0'"
            )
        return cls(group, bundle_id, version)

    def __str__(self) -> str:
        return f"{self.group}/{self.id}:{self.version}"

    @property
    def name(self) -> str:
        """``group/id``, the manifest's ``name``."""
        return f"{self.group}/{self.id}"

    @property
    def is_snapshot(self) -> bool:
        """Whether the version ends in ``-SNAPSHOT`` and so may be uploaded again."""
        return self.version.endswith("-SNAPSHOT")

    @property
    def file_name(self) -> str:
        """The archive's file name, ``ID-VERSION.bpk``."""
        return f"{self.id}-{self.version}{BUNDLE_SUFFIX}"

    def path_parts(self) -> tuple[str, ...]:
        """Where the archive lives in a repository: ``(*GROUP.split("."), ID, VERSION, file)``.

        Every part is a plain directory or file name (never empty, ``.`` or ``..``), so
        ``Path(root, *bundle_id.path_parts())`` stays under ``root``.
        """
        return (*self.group.split("."), self.id, self.version, self.file_name)


@attrs.frozen
class PythonRuntime:
    """Run ``function`` from ``module`` (``module:function``), imported from the bundle root."""

    type: ClassVar[str] = "python"
    entry_point: str

    @property
    def module(self) -> str:
        """The dotted module name before the colon."""
        return self.entry_point.partition(":")[0]

    @property
    def function(self) -> str:
        """The function name after the colon."""
        return self.entry_point.partition(":")[2]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as in ``Manifest.json``."""
        return {"type": self.type, "entry_point": self.entry_point}


@attrs.frozen
class CommandRuntime:
    """Run ``argv`` as a process in the unpacked bundle's directory.

    Files are unpacked with mode 0644, whatever the archive says, so ``argv[0]`` should be
    an interpreter or an installed program (``["sh", "run.sh"]``), not a file of the bundle.
    """

    type: ClassVar[str] = "command"
    argv: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as in ``Manifest.json``."""
        return {"type": self.type, "argv": list(self.argv)}


Runtime = PythonRuntime | CommandRuntime


@attrs.frozen
class Resources:
    """What an actor asks of its host: a memory cap, CPUs, and whether it needs network."""

    memory: str | None = None
    cpu: float | None = None
    network: bool = False

    @property
    def memory_bytes(self) -> int | None:
        """``memory`` in bytes (``k``, ``m`` and ``g`` are powers of 1024), or None."""
        if self.memory is None:
            return None
        match = _MEMORY_RE.fullmatch(self.memory)
        assert match is not None, "validated by parse_manifest"
        return int(match[1]) << (10 * "kmg".index(match[2].lower()) + 10)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as in ``Manifest.json``."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class Manifest:
    """A validated ``Manifest.json``; make one with :func:`parse_manifest`.

    ``parameters`` is a plain dict so that it maps one to one onto JSON; do not mutate it.
    """

    spec: str
    name: str
    version: str
    runtime: Runtime
    parameters: dict[str, Scalar] = attrs.field(factory=dict)
    resources: Resources = attrs.field(factory=Resources)
    content_sha256: str

    @property
    def bundle_id(self) -> BundleId:
        """The bundle's identity, from ``name`` and ``version``."""
        group, _, bundle_id = self.name.partition("/")
        return BundleId(group, bundle_id, self.version)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; :func:`parse_manifest` of its JSON gives back an equal manifest."""
        return {
            **attrs.asdict(self, recurse=False),
            "runtime": self.runtime.to_dict(),
            "parameters": dict(self.parameters),
            "resources": self.resources.to_dict(),
        }

    def to_json(self) -> bytes:
        """Canonical ``Manifest.json`` bytes: sorted keys, ASCII, two-space indent."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        return (text + "\n").encode("ascii")


# -- parsing ------------------------------------------------------------------------------


def _bad(field: str, expected: str, value: object) -> NoReturn:
    if value is None or isinstance(value, str | int | float):
        shown = json.dumps(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
    else:
        shown = "an array" if isinstance(value, list) else "an object"
    where = f"Manifest.json: {field!r}" if field else "Manifest.json"
    _fail(f"{where} must be {expected}, got {shown}")


def _object(value: object, field: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        _bad(field, "an object", value)
    prefix = f"{field}." if field else ""
    unknown = sorted(set(value) - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional))
        _fail(f"Manifest.json: unknown field {prefix + unknown[0]!r} (allowed: {allowed})")
    missing = sorted(required - set(value))
    if missing:
        _fail(f"Manifest.json: missing required field {prefix + missing[0]!r}")
    return value


def _string(value: object, field: str, pattern: re.Pattern[str] | None, expected: str) -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        _bad(field, expected, value)
    return value


def _runtime(value: object) -> Runtime:
    if isinstance(value, dict) and value.get("type") == "python":
        fields = _object(value, "runtime", {"type", "entry_point"}, set())
        entry_point = _string(fields["entry_point"], "runtime.entry_point", None, "a string")
        module, colon, function = entry_point.partition(":")
        names = [*module.split("."), function]
        if not colon or not all(
            _IDENTIFIER_RE.fullmatch(name) and not keyword.iskeyword(name) for name in names
        ):
            _bad("runtime.entry_point", "'module:function', e.g. 'hello.main:handle'", entry_point)
        return PythonRuntime(entry_point)
    if isinstance(value, dict) and value.get("type") == "command":
        fields = _object(value, "runtime", {"type", "argv"}, set())
        argv = fields["argv"]
        if not isinstance(argv, list) or not argv:
            _bad("runtime.argv", "a non-empty array of strings", argv)
        for index, arg in enumerate(argv):
            if not isinstance(arg, str) or not arg or "\0" in arg:
                _bad(f"runtime.argv[{index}]", "a non-empty string without NUL", arg)
        return CommandRuntime(tuple(argv))
    if isinstance(value, dict):
        _bad("runtime.type", "'python' or 'command'", value.get("type"))
    _bad("runtime", "an object such as {'type': 'python', 'entry_point': 'mod:func'}", value)


def _parameters(value: object) -> dict[str, Scalar]:
    if not isinstance(value, dict):
        _bad("parameters", "an object of name -> default value", value)
    for name, default in value.items():
        if not _IDENTIFIER_RE.fullmatch(name) or len(name) > 64:
            _fail(f"Manifest.json: bad parameter name {name!r}: expected [A-Za-z_][A-Za-z0-9_]*")
        if isinstance(default, list | dict) or (
            isinstance(default, float) and not math.isfinite(default)
        ):
            _bad(f"parameters.{name}", "a string, finite number, boolean or null", default)
    return dict(value)


def _resources(value: object) -> Resources:
    fields = _object(value, "resources", set(), {"memory", "cpu", "network"})
    memory = fields.get("memory")
    if memory is not None:
        _string(memory, "resources.memory", _MEMORY_RE, "a size such as '256m' or '1g', or null")
    cpu = fields.get("cpu")
    if cpu is not None and (
        isinstance(cpu, bool) or not isinstance(cpu, int | float) or not 0 < cpu <= 1024
    ):
        _bad("resources.cpu", "a number of CPUs above 0 (at most 1024), or null", cpu)
    network = fields.get("network", False)
    if not isinstance(network, bool):
        _bad("resources.network", "true or false", network)
    return Resources(memory=memory, cpu=cpu, network=network)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # json.loads would keep the last one silently; two readers could disagree.
            _fail(f"Manifest.json: field {key!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    _fail(f"Manifest.json: {name} is not valid JSON")


def parse_manifest(data: bytes, *, content_sha256: str | None = None) -> Manifest:
    """Validate ``Manifest.json`` bytes and return the manifest they describe.

    Raises :class:`BundleError` naming the first wrong field and what it should be. When
    ``content_sha256`` is given (as a bundle build does), it is used instead of the
    document's own, which may then be missing, stale or malformed.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        _fail(f"Manifest.json is {len(data)} bytes; at most {MAX_MANIFEST_BYTES} are allowed")
    try:
        document = json.loads(
            data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as exc:
        # Besides bad UTF-8 and bad JSON: integers of thousands of digits, or arrays nested
        # thousands deep.
        raise BundleError(f"Manifest.json is not valid UTF-8 JSON: {exc}") from exc
    required = {"spec", "name", "version", "runtime", "content_sha256"}
    if content_sha256 is not None:
        if isinstance(document, dict):
            document = {**document, "content_sha256": content_sha256}
        required.discard("content_sha256")
    fields = _object(document, "", required, {"parameters", "resources", "content_sha256"})
    spec = _string(fields["spec"], "spec", None, repr(SPEC_V1))
    if spec != SPEC_V1:
        _bad("spec", repr(SPEC_V1), spec)
    name = fields["name"]
    group, slash, bundle_id = name.partition("/") if isinstance(name, str) else ("", "", "")
    if not (slash and _GROUP_RE.fullmatch(group) and _ID_RE.fullmatch(bundle_id)):
        _bad("name", _NAME_HELP, name)
    version = _string(fields["version"], "version", _VERSION_RE, _VERSION_HELP)
    digest = _string(
        fields["content_sha256"], "content_sha256", _SHA256_RE, "64 lowercase hex digits"
    )
    return Manifest(
        spec=spec,
        name=name,
        version=version,
        runtime=_runtime(fields["runtime"]),
        parameters=_parameters(fields.get("parameters", {})),
        resources=_resources(fields.get("resources", {})),
        content_sha256=digest,
    )
