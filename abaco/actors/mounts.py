"""Actors' mounts and privileged mode: what ``abaco.conf`` allows, and the sandbox grants.

An actor's ``mounts`` is a list of ``{"host_path", "container_path", "mode"}`` (Abaco's
keys; ``format``, which Abaco's worker read, is taken for ``mode``), ``mode`` being
``"ro"`` (the default) or ``"rw"``. Unlike Abaco, where mounts come from the platform's
configuration alone, an actor names its own, and ``[worker] mounts_allowed`` says which
host paths it may name::

    mounts_allowed = "/data:ro,/scratch:rw"

a comma-separated list of ``HOST_PATH:MODE``: an actor may mount that path or anything
below it, read-write only under an ``rw`` entry. The API checks an actor's mounts when it
is created or updated (:func:`check_mounts`, 400 naming the path); the worker checks them
again against its own configuration and the host's real paths (symbolic links resolved)
before binding them (:func:`grants_for`), and leaves out, with a warning, what is no
longer allowed or does not exist. ``privileged`` works the same way with
``[worker] allow_privileged``; what it means in the sandbox is in
:mod:`abaco.actors.sandbox`.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import attrs

from abaco.actors.sandbox import RESERVED_TARGETS, Bind, Grants, python_layout, sandbox_path
from abaco.errors import BadRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from abaco.actors.models import Actor
    from abaco.config import WorkerSettings

__all__ = [
    "MODES",
    "AllowedMount",
    "check_mounts",
    "check_privileged_allowed",
    "grants_for",
    "parse_allowed",
]

#: A mount's modes: read-only and read-write.
MODES = ("ro", "rw")

_KEYS = {"host_path", "container_path", "mode", "format"}


@attrs.frozen
class AllowedMount:
    """One entry of ``[worker] mounts_allowed``: a host path, and whether rw is allowed."""

    path: PurePosixPath
    writable: bool

    def covers(self, path: PurePosixPath) -> bool:
        """Whether ``path`` is this entry's path or lies below it."""
        return path == self.path or self.path in path.parents


def _normal_absolute(path: str) -> bool:
    # normpath keeps a leading "//" (POSIX leaves its meaning open): refused too.
    return path.startswith("/") and not path.startswith("//") and os.path.normpath(path) == path


def parse_allowed(text: str) -> tuple[AllowedMount, ...]:
    """The entries of a ``mounts_allowed`` value; ValueError naming a bad one."""
    entries = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        path, _, mode = entry.rpartition(":")
        if mode not in MODES or not _normal_absolute(path):
            raise ValueError(f"{entry!r} is not HOST_PATH:ro or HOST_PATH:rw (an absolute path)")
        entries.append(AllowedMount(PurePosixPath(path), mode == "rw"))
    return tuple(entries)


def _overlap(a: PurePosixPath, b: PurePosixPath) -> bool:
    return a == b or a in b.parents or b in a.parents


def _invalid(text: str) -> BadRequest:
    return BadRequest(f"Invalid actor description: mounts: {text}")


def _one_mount(mount: Mapping[str, object]) -> dict[str, str]:
    """A mount's fields checked for form alone, with ``format`` read as ``mode``."""
    unknown = set(mount) - _KEYS
    if unknown:
        raise _invalid(f"unknown field {sorted(unknown)[0]!r}; a mount has {sorted(_KEYS)}.")
    if "mode" in mount and "format" in mount and mount["mode"] != mount["format"]:
        raise _invalid("mode and format (the same thing) differ.")
    mode = mount.get("mode", mount.get("format", "ro"))
    if mode not in MODES:
        raise _invalid(f"mode {mode!r}: one of {list(MODES)}.")
    checked = {"mode": str(mode)}
    for key in ("host_path", "container_path"):
        value = mount.get(key)
        if not isinstance(value, str) or not _normal_absolute(value):
            raise _invalid(f"{key} {value!r}: a normal absolute path is required.")
        checked[key] = value
    return checked


def check_mounts(mounts: Iterable[Mapping[str, object]], allowed: str) -> list[dict[str, str]]:
    """An actor's mounts, checked against ``allowed`` (``[worker] mounts_allowed``).

    Returns them in their stored form (``host_path``, ``container_path``, ``mode``);
    BadRequest naming the path when one is not allowed, is read-write where only
    read-only is, or would sit on the sandbox's own paths or on another mount.
    """
    entries = parse_allowed(allowed)
    result: list[dict[str, str]] = []
    targets: list[PurePosixPath] = []
    for mount in mounts:
        checked = _one_mount(mount)
        host, target = checked["host_path"], PurePosixPath(checked["container_path"])
        covering = [e for e in entries if e.covers(PurePosixPath(host))]
        if not covering:
            raise _invalid(
                f"host_path {host} is not allowed on this platform "
                f"(allowed: {[f'{e.path}:{MODES[e.writable]}' for e in entries]})."
            )
        if checked["mode"] == "rw" and not any(e.writable for e in covering):
            raise _invalid(f"host_path {host} may only be mounted read-only (ro).")
        clash = next((t for t in (*RESERVED_TARGETS, *targets) if _overlap(target, t)), None)
        if clash is not None:
            raise _invalid(f"container_path {target} collides with {clash}.")
        targets.append(target)
        result.append(checked)
    return result


def check_privileged_allowed(settings: WorkerSettings) -> None:
    """BadRequest unless ``[worker] allow_privileged`` lets actors be privileged."""
    if not settings.allow_privileged:
        raise BadRequest(
            "Invalid actor description: privileged actors are not allowed on this platform "
            "([worker] allow_privileged is false)."
        )


def grants_for(
    actor: Actor,
    settings: WorkerSettings,
    *,
    realpath: Callable[[str], str] = os.path.realpath,
) -> tuple[Grants, list[str]]:
    """What the sandbox of ``actor``'s executions is granted here, and what was left out.

    Each mount is checked again against this host's configuration with symbolic links
    resolved (a link inside an allowed tree must not lead out of it); one that is not
    allowed, does not exist or collides with the sandbox's own paths is left out, and the
    second value says why, one line each, for the worker to log.
    """
    problems: list[str] = []
    try:
        entries = parse_allowed(settings.mounts_allowed)
    except ValueError as exc:  # the loader checks it; a hand-made Settings may not be
        entries, problems = (), [f"[worker] mounts_allowed: {exc}"]
    real_entries = [AllowedMount(PurePosixPath(realpath(str(e.path))), e.writable) for e in entries]
    layout = python_layout()
    taken = [PurePosixPath(sandbox_path(p)) for p in (*layout.prefixes, layout.package_dir)]
    binds: list[Bind] = []
    for mount in actor.mounts:
        try:
            checked = _one_mount(mount)
        except BadRequest as exc:
            problems.append(str(exc))
            continue
        host = PurePosixPath(realpath(checked["host_path"]))
        target = PurePosixPath(checked["container_path"])
        writable = checked["mode"] == "rw"
        covering = [e for e in real_entries if e.covers(host)]
        why = None
        if not covering or (writable and not any(e.writable for e in covering)):
            why = "is not allowed here ([worker] mounts_allowed)"
        elif not os.path.exists(host):
            why = "does not exist"
        elif any(_overlap(target, t) for t in (*taken, *RESERVED_TARGETS)):
            why = "collides with the sandbox's own paths"
        if why is not None:
            problems.append(f"mount {checked['host_path']} -> {target} left out: it {why}")
            continue
        taken.append(target)
        binds.append(Bind(str(host), str(target), writable))
    privileged = actor.privileged and settings.allow_privileged
    if actor.privileged and not privileged:
        problems.append("privileged left out: [worker] allow_privileged is false here")
    return Grants(binds=tuple(binds), privileged=privileged), problems
