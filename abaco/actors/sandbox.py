"""Execution isolation as data: the rlimits of an execution and the bubblewrap command line.

Everything here is a pure function of its arguments and of the running interpreter
(``sys``), except :func:`find_bwrap` (``shutil.which``) and the ``stat`` of each path to
hide (a directory is hidden under an empty tmpfs, a file under ``/dev/null``, and the
command line has to say which).

The sandbox (``bwrap_argv``), as the execution sees it::

    /usr /bin /sbin /lib /lib64 /lib32 /libx32   read-only, those that exist on the host
    /etc/<a few entries>                          read-only: users and groups, the dynamic
                                                  linker cache, locale and time zone, CA
                                                  certificates, ``alternatives``; name
                                                  service files only with network
    <Python prefixes>, <abaco's package dir>,     read-only, at their host path, or under
    <each of extra_ro>
                                                  /run/abaco/host/<host path> when that path
                                                  lies under /work, /bundle, /tmp, /proc,
                                                  /dev or /run/abaco (this repository's venv
                                                  lives in /work/main/.venv)
    /bundle                                       the unpacked bundle, read-only
    /work                                         the runner's work dir, read-write
    /tmp                                          a private tmpfs, read-write
    /proc /dev                                    the sandbox's own: its pids; null, zero,
                                                  full, random, urandom, tty, pts (/dev is
                                                  read-only)
    everything else                               absent; ``/`` itself is read-only

It runs in new user, pid, ipc, uts (hostname ``abaco``), cgroup and network namespaces
(``--share-net`` only when the actor asks for network; without it only ``lo`` exists,
and nothing listens on it), as uid/gid 65534 with every capability dropped, in a new
session, and dies with its parent (the *thread* that started bwrap: see
:mod:`abaco.actors._process`). Each path in ``hide`` that lies inside a bound tree is
covered, a directory by an empty read-only tmpfs, a file by ``/dev/null`` (which bwrap's
``nodev`` binds will not even open), so the platform's state dir and config files stay
invisible even where their parent is bound.

What an actor may be granted beyond this (:class:`Grants`, from ``abaco.actors.mounts``):

- **mounts**: host paths bound at the paths the actor names, read-only (``--ro-bind``)
  or read-write (``--bind``), after everything above, never over or under a path the
  sandbox already uses (:func:`bwrap_argv` raises ValueError);
- **privileged**: the execution runs as uid/gid 0 *of its own user namespace* with every
  capability of that namespace (``--cap-add ALL`` instead of ``--cap-drop ALL``): it may
  mount, chown, change ownership inside its binds, bind ports below 1024 in its network
  namespace. It stays in every namespace above; capabilities count only there, so it
  gains nothing on the host that its mapped user lacks. But it may remount its read-only
  binds read-write, so where the platform runs as root it can write the host's bound
  trees: allowing privileged actors (``[worker] allow_privileged``) is a decision to
  trust their owners, as Abaco's privileged (Docker's ``--privileged``) is.

Limits that bubblewrap does not give: bwrap started by root maps the sandbox's uid to
root outside, and the kernel never counts processes against RLIMIT_NPROC for root, so
``processes`` only binds when the platform runs as an ordinary user; files owned by
root in bound trees look owned by the sandbox's user (hence the short /etc list).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

__all__ = [
    "BUNDLE_DIR",
    "RESERVED_TARGETS",
    "SANDBOX_GID",
    "SANDBOX_UID",
    "WORK_DIR",
    "Bind",
    "Grants",
    "Limits",
    "PythonLayout",
    "apply_limits",
    "bwrap_argv",
    "find_bwrap",
    "python_layout",
    "sandbox_path",
    "set_rlimits",
]

SANDBOX_UID = 65534
SANDBOX_GID = 65534
BUNDLE_DIR = "/bundle"
WORK_DIR = "/work"
# Host paths that would collide with the sandbox's own mounts are shown under this one.
_HOST_ROOT = PurePosixPath("/run/abaco/host")
_RESERVED = tuple(PurePosixPath(p) for p in ("/work", "/bundle", "/tmp", "/proc", "/dev"))
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# /etc is not bound whole: root-owned secrets (shadow, ssh host keys, the platform's own
# config) would look owned by the sandbox's user. Only what programs need to start.
_ETC = (
    "passwd",
    "group",
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "locale.alias",
    "mime.types",
    "ssl",
    "ca-certificates",
    "pki",
    "hosts",
    "protocols",
    "services",
)
_ETC_NETWORK = ("resolv.conf", "host.conf", "gai.conf")

#: Paths an actor's mount may not be at, inside, or above: the sandbox's own.
RESERVED_TARGETS = tuple(
    PurePosixPath(p) for p in (*_SYSTEM_DIRS, "/etc", "/run/abaco", *map(str, _RESERVED))
)


@attrs.frozen
class Bind:
    """A host path an actor is granted: ``source`` on the host at ``target`` inside."""

    source: str
    target: str
    writable: bool = False


@attrs.frozen(kw_only=True)
class Grants:
    """What an actor's sandbox adds to the default one (module docstring)."""

    binds: tuple[Bind, ...] = ()
    privileged: bool = False


def _overlaps(a: PurePosixPath, b: PurePosixPath) -> bool:
    """Whether one of ``a`` and ``b`` is the other or lies below it."""
    return a == b or a in b.parents or b in a.parents


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or value < 1):
        raise ValueError(f"{attribute.name} must be a positive integer or None, got {value!r}")


@attrs.frozen(kw_only=True)
class Limits:
    """The rlimits of one execution; applied in its process before the actor's code runs."""

    #: Address space (RLIMIT_AS), bytes; None for no limit.
    memory_bytes: int | None = attrs.field(default=None, validator=_positive)
    #: CPU time (RLIMIT_CPU), whole seconds: SIGXCPU then, a second later, SIGKILL.
    cpu_seconds: int | None = attrs.field(default=None, validator=_positive)
    #: Processes of the sandbox's user (RLIMIT_NPROC); see the module docstring.
    processes: int = attrs.field(default=256, validator=_positive)
    #: Largest file the execution may write (RLIMIT_FSIZE), bytes.
    file_bytes: int = attrs.field(default=1 << 30, validator=_positive)
    #: Open file descriptors (RLIMIT_NOFILE).
    open_files: int = attrs.field(default=1024, validator=_positive)

    def rlimits(self) -> list[tuple[int, int, int]]:
        """``(resource, soft, hard)`` triples, core dumps off included."""
        triples = [
            (resource.RLIMIT_NPROC, self.processes, self.processes),
            (resource.RLIMIT_FSIZE, self.file_bytes, self.file_bytes),
            (resource.RLIMIT_NOFILE, self.open_files, self.open_files),
            # A crashing actor must not fill its work dir with a core file.
            (resource.RLIMIT_CORE, 0, 0),
        ]
        if self.memory_bytes is not None:
            triples.append((resource.RLIMIT_AS, self.memory_bytes, self.memory_bytes))
        if self.cpu_seconds is not None:
            # The soft limit sends SIGXCPU; the hard one, a second on, kills outright.
            triples.append((resource.RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 1))
        return triples


def apply_limits(limits: Limits) -> None:
    """Set ``limits`` on this process; call it in a child after fork (or as preexec_fn)."""
    set_rlimits(limits.rlimits())


def set_rlimits(triples: Iterable[Sequence[int]]) -> None:
    """Set each ``(resource, soft, hard)`` (as from :meth:`Limits.rlimits`) on this process.

    A limit above the current hard limit is lowered to it, since only a privileged
    process may raise a hard limit.
    """
    for which, soft, hard in triples:
        current_hard = resource.getrlimit(which)[1]
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))


@attrs.frozen
class PythonLayout:
    """Where the running interpreter and abaco live on the host."""

    #: The interpreter (a venv's ``bin/python`` keeps the venv's site-packages).
    executable: str
    #: ``sys.base_prefix`` and, in a venv, ``sys.prefix``.
    prefixes: tuple[str, ...]
    #: The ``abaco`` package directory.
    package_dir: str

    @property
    def package_root(self) -> str:
        """The directory to put on ``sys.path`` so that ``import abaco`` finds the package."""
        return str(PurePosixPath(self.package_dir).parent)


def python_layout() -> PythonLayout:
    """The layout of this interpreter and of this copy of abaco (read from ``sys``)."""
    prefixes = tuple(dict.fromkeys((sys.base_prefix, sys.prefix)))
    package_dir = str(PurePosixPath(os.path.normpath(__file__)).parents[1])
    return PythonLayout(sys.executable, prefixes, package_dir)


def sandbox_path(host_path: str | os.PathLike[str]) -> str:
    """Where a host path bound by :func:`bwrap_argv` appears inside the sandbox."""
    path = PurePosixPath(os.path.normpath(host_path))
    if any(path == root or root in path.parents for root in (*_RESERVED, _HOST_ROOT.parent)):
        return str(_HOST_ROOT / path.relative_to("/"))
    return str(path)


def _inside(path: PurePosixPath, root: PurePosixPath) -> PurePosixPath | None:
    """``path`` relative to ``root`` when it is ``root`` or below it, else None."""
    return path.relative_to(root) if path == root or root in path.parents else None


def _hide(path: str, binds: Iterable[tuple[str, str]]) -> list[str]:
    """Arguments covering ``path`` wherever a bind makes it visible."""
    host = PurePosixPath(os.path.normpath(path))
    arguments: list[str] = []
    for source, target in binds:
        rest = _inside(host, PurePosixPath(source))
        if rest is None or not os.path.lexists(host):
            continue
        where = str(PurePosixPath(target) / rest)
        if os.path.isdir(host):
            # An empty tmpfs, read-only: hidden, and not a writable spot either.
            arguments += ["--tmpfs", where, "--remount-ro", where]
        else:
            arguments += ["--ro-bind", "/dev/null", where]
    return arguments


def bwrap_argv(
    *,
    bundle_dir: str | Path,
    work_dir: str | Path,
    network: bool,
    extra_ro: Sequence[str | Path] = (),
    hide: Sequence[str | Path] = (),
    chdir: str = WORK_DIR,
    bwrap: str = "bwrap",
    layout: PythonLayout | None = None,
    grants: Grants = Grants(),
) -> list[str]:
    """The bubblewrap command line, ending in ``--``: append the command to run inside.

    ``bundle_dir`` appears read-only at ``/bundle``, ``work_dir`` read-write at ``/work``,
    each of ``extra_ro`` read-only at :func:`sandbox_path` of it. ``layout`` defaults to
    this interpreter's (:func:`python_layout`). ``grants``: the actor's mounts and
    privileged mode; ValueError when a mount's target collides with the sandbox's own
    paths. See the module docstring for the rest.
    """
    layout = python_layout() if layout is None else layout
    uid, gid = (0, 0) if grants.privileged else (SANDBOX_UID, SANDBOX_GID)
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        str(uid),
        "--gid",
        str(gid),
        "--hostname",
        "abaco",
        "--cap-add" if grants.privileged else "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    if network:
        argv.append("--share-net")
    etc = _ETC + (_ETC_NETWORK if network else ())
    for system in (*_SYSTEM_DIRS, *(f"/etc/{name}" for name in etc)):
        # -try: a missing source is skipped, so no existence check is needed here.
        argv += ["--ro-bind-try", system, system]
    binds: list[tuple[str, str]] = [(p, p) for p in _SYSTEM_DIRS]
    for wanted in (*layout.prefixes, layout.package_dir, *extra_ro):
        source = os.path.normpath(wanted)
        target = sandbox_path(source)
        if any(_inside(PurePosixPath(source), PurePosixPath(s)) is not None for s, _ in binds):
            continue  # already visible, e.g. a system Python under /usr
        binds.append((source, target))
        argv += ["--ro-bind", source, target]
    binds += [(os.path.normpath(bundle_dir), BUNDLE_DIR), (os.path.normpath(work_dir), WORK_DIR)]
    argv += ["--ro-bind", str(bundle_dir), BUNDLE_DIR, "--bind", str(work_dir), WORK_DIR]
    argv += _grant_binds(grants.binds, binds)
    for hidden in hide:
        argv += _hide(str(hidden), binds)
    # Last: bwrap's own root is a writable tmpfs until told otherwise.
    argv += ["--remount-ro", "/", "--chdir", chdir, "--"]
    return argv


def _grant_binds(grants: Sequence[Bind], binds: list[tuple[str, str]]) -> list[str]:
    """Arguments binding each granted mount; each is added to ``binds`` (for ``hide``)."""
    arguments: list[str] = []
    taken = [PurePosixPath(target) for _, target in binds] + list(RESERVED_TARGETS)
    for grant in grants:
        target = PurePosixPath(grant.target)
        if not target.is_absolute() or str(target) != os.path.normpath(grant.target):
            raise ValueError(f"mount target {grant.target!r} is not a normal absolute path")
        clash = next((t for t in taken if _overlaps(target, t)), None)
        if clash is not None:
            raise ValueError(f"mount target {grant.target} collides with the sandbox's {clash}")
        taken.append(target)
        source = os.path.normpath(grant.source)
        binds.append((source, str(target)))
        arguments += ["--bind" if grant.writable else "--ro-bind", source, str(target)]
    return arguments


_warned_missing = False


def find_bwrap() -> str | None:
    """The path of ``bwrap``, or None; the first miss in a process logs one clear warning."""
    global _warned_missing  # a once-per-process flag is the point
    path = shutil.which("bwrap")
    if path is None and not _warned_missing:
        _warned_missing = True
        import structlog  # here: the zygote imports this module and never needs it

        structlog.get_logger(__name__).warning(
            "bubblewrap (bwrap) is not installed: executions run WITHOUT a sandbox, "
            "with rlimits only (no namespaces, the host's files and network are visible); "
            "install the bubblewrap package to isolate them"
        )
    return path
