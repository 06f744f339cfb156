"""Mounts and privileged mode: the allow-list, the grants, and what a real sandbox shows.

The tests marked ``needs_bwrap`` run real executions in bubblewrap and are skipped, with
the reason, where bwrap is not installed.
"""

from __future__ import annotations

import json
import os

import attrs
import pytest

from abaco.actors.models import Actor
from abaco.actors.mounts import check_mounts, grants_for, parse_allowed
from abaco.actors.runners import ExecutionSpec, open_python_runner
from abaco.actors.sandbox import Bind, Grants
from abaco.bundles.manifest import PythonRuntime
from abaco.config import WorkerSettings
from abaco.errors import BadRequest
from tests.actors.conftest import Collected, make_bundle, needs_bwrap
from tests.actors.test_sandbox import argv, probe
from tests.api._helpers import IMAGE, push_bundle


def mount(host, container, mode=None, **extra):
    fields = {"host_path": host, "container_path": container, **extra}
    return fields if mode is None else {**fields, "mode": mode}


def test_the_allow_list_is_host_path_and_mode_pairs():
    entries = parse_allowed(" /data:ro, /scratch/x:rw ,")
    assert [(str(e.path), e.writable) for e in entries] == [("/data", False), ("/scratch/x", True)]
    for bad in ("/data", "data:ro", "/data:rx", "/a/../b:ro", "//data:ro"):
        with pytest.raises(ValueError, match="HOST_PATH"):
            parse_allowed(bad)


def test_allowed_mounts_are_kept_in_abacos_form():
    checked = check_mounts(
        [mount("/data/set1", "/data"), mount("/scratch", "/out", format="rw")],
        "/data:ro,/scratch:rw",
    )
    assert checked == [
        {"host_path": "/data/set1", "container_path": "/data", "mode": "ro"},
        {"host_path": "/scratch", "container_path": "/out", "mode": "rw"},
    ]


@pytest.mark.parametrize(
    ("mounts", "says"),
    [
        ([mount("/etc", "/x")], "host_path /etc is not allowed on this platform"),
        ([mount("/datax", "/x")], "host_path /datax is not allowed"),  # a prefix, not a parent
        ([mount("/data/a", "/x", "rw")], "host_path /data/a may only be mounted read-only (ro)."),
        ([mount("/data/../etc", "/x")], "host_path '/data/../etc': a normal absolute path"),
        ([mount("/data", "x")], "container_path 'x': a normal absolute path"),
        ([mount("/data", "/usr/x")], "container_path /usr/x collides with /usr"),
        ([mount("/data", "/run")], "container_path /run collides with /run/abaco"),
        ([mount("/data", "/work")], "container_path /work collides with /work"),
        ([mount("/data", "/in"), mount("/scratch", "/in/out")], "/in/out collides with /in"),
        ([mount("/data", "/x", "rx")], "mode 'rx'"),
        ([mount("/data", "/x", "ro", format="rw")], "mode and format"),
        ([{"host_path": "/data", "container_path": "/x", "ro": True}], "unknown field 'ro'"),
    ],
)
def test_a_mount_outside_the_allow_list_or_on_the_sandbox_is_refused(mounts, says):
    with pytest.raises(BadRequest, match="Invalid actor description: mounts: ") as refused:
        check_mounts(mounts, "/data:ro,/scratch:rw")
    assert says in str(refused.value)


def test_with_an_empty_allow_list_no_mount_is_allowed():
    with pytest.raises(BadRequest, match="not allowed"):
        check_mounts([mount("/data", "/data")], "")
    assert check_mounts([], "") == []


def actor(**fields):
    return Actor(id="a1", name="", owner="alice", image="x/y:1", **fields)


def test_the_worker_grants_only_what_its_own_configuration_allows(tmp_path):
    data, scratch, outside = tmp_path / "data", tmp_path / "scratch", tmp_path / "secret"
    for path in (data, scratch, outside):
        path.mkdir()
    (data / "escape").symlink_to(outside)
    options = WorkerSettings(mounts_allowed=f"{data}:ro,{scratch}:rw")
    wanted = [
        mount(str(data), "/data"),
        mount(str(scratch), "/scratch", "rw"),
        mount(str(data), "/data-rw", "rw"),  # the API would refuse it; so does the worker
        mount(str(data / "escape"), "/escape"),  # a link out of the allowed tree
        mount(str(data / "missing"), "/missing"),
    ]
    grants, left_out = grants_for(actor(mounts=wanted, privileged=True), options)
    assert grants == Grants(
        binds=(Bind(str(data), "/data"), Bind(str(scratch), "/scratch", writable=True)),
        privileged=False,
    )
    assert [line.split(" left out: ")[-1] for line in left_out] == [
        "it is not allowed here ([worker] mounts_allowed)",
        "it is not allowed here ([worker] mounts_allowed)",
        "it does not exist",
        "[worker] allow_privileged is false here",
    ]
    allowed = WorkerSettings(allow_privileged=True)
    assert grants_for(actor(privileged=True), allowed) == (Grants(privileged=True), [])


def test_grants_become_binds_and_root_with_capabilities(tmp_path):
    grants = Grants(
        binds=(Bind("/srv/data", "/data"), Bind("/srv/out", "/out", writable=True)),
        privileged=True,
    )
    args = argv(tmp_path, grants=grants)
    text = " ".join(args)
    assert "--ro-bind /srv/data /data" in text
    assert "--bind /srv/out /out" in text
    assert "--uid 0 --gid 0" in text
    assert "--cap-add ALL" in text
    assert "--cap-drop" not in args
    default = " ".join(argv(tmp_path))
    assert "--uid 65534 --gid 65534" in default
    assert "--cap-drop ALL" in default


@pytest.mark.parametrize("target", ["/usr/local/data", "/", "/work", "/run", "relative"])
def test_a_grant_on_the_sandboxs_own_paths_is_refused(tmp_path, target):
    with pytest.raises(ValueError, match="mount target"):
        argv(tmp_path, grants=Grants(binds=(Bind("/srv/data", target),)))


@needs_bwrap
async def test_an_execution_reads_allowed_mounts_and_writes_only_rw_ones(tmp_path, work_root):
    data, scratch = tmp_path / "host-data", tmp_path / "host-scratch"
    data.mkdir()
    scratch.mkdir()
    (data / "input.txt").write_text("from the host")
    options = WorkerSettings(mounts_allowed=f"{data}:ro,{scratch}:rw")
    wanted = check_mounts(
        [mount(str(data), "/data"), mount(str(scratch), "/scratch", "rw")],
        options.mounts_allowed,
    )
    grants, left_out = grants_for(actor(mounts=wanted), options)
    assert left_out == []
    reads = json.dumps(["/data/input.txt"])
    writes = json.dumps(["/data/new.txt", "/data/input.txt", "/scratch/out.txt"])
    [seen, written] = await probe(
        tmp_path / "probe", work_root, f"reads {reads}", f"writes {writes}", grants=grants
    )
    assert seen == {"/data/input.txt": "from the host"}
    assert written == {
        "/data/new.txt": "OSError",  # EROFS: a read-only bind
        "/data/input.txt": "OSError",
        "/scratch/out.txt": "written",
    }
    assert (scratch / "out.txt").read_text() == "x"
    assert sorted(os.listdir(data)) == ["input.txt"]
    assert (data / "input.txt").read_text() == "from the host"


@needs_bwrap
async def test_without_a_grant_the_host_path_is_not_there(tmp_path, work_root):
    data = tmp_path / "host-data"
    data.mkdir()
    [seen] = await probe(tmp_path / "probe", work_root, f"reads {json.dumps(['/data'])}")
    assert seen == {"/data": "FileNotFoundError"}


PRIVILEGED_PROBE = """
    import ctypes, json, os

    def probe(message):
        status = dict(
            line.split(":", 1) for line in open("/proc/self/status").read().splitlines()
        )
        libc = ctypes.CDLL(None, use_errno=True)
        # mount(2) of a tmpfs over /tmp: needs CAP_SYS_ADMIN in the sandbox's namespaces.
        mounted = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == 0
        print(json.dumps({
            "uid": os.getuid(),
            "CapEff": status["CapEff"].strip(),
            "mount": "mounted" if mounted else os.strerror(ctypes.get_errno()),
            "userns": os.readlink("/proc/self/ns/user"),
        }))
"""


@needs_bwrap
async def test_a_privileged_execution_is_root_with_capabilities_in_its_own_namespace(
    tmp_path, work_root
):
    bundle = make_bundle(tmp_path, {"priv.py": PRIVILEGED_PROBE})
    seen = {}
    for privileged in (False, True):
        output = Collected()
        async with open_python_runner(
            bundle,
            PythonRuntime("priv:probe"),
            work_root=work_root / str(privileged),
            grants=Grants(privileged=privileged),
        ) as runner:
            outcome = await runner.run(ExecutionSpec(execution_id="p1"), output)
        assert outcome.status == "COMPLETE", output.text
        seen[privileged] = json.loads(output.text)
    plain, privileged = seen[False], seen[True]
    assert (plain["uid"], plain["CapEff"]) == (65534, "0000000000000000")
    assert plain["mount"] == "Operation not permitted"
    assert privileged["uid"] == 0
    assert int(privileged["CapEff"], 16) != 0
    assert privileged["mount"] == "mounted"
    # Both in a user namespace of their own, never the host's.
    host = os.readlink("/proc/self/ns/user")
    assert host not in (plain["userns"], privileged["userns"])


@pytest.fixture
def settings(settings):
    """The API allows /srv/data read-only and /srv/scratch read-write."""
    worker = attrs.evolve(settings.worker, mounts_allowed="/srv/data:ro,/srv/scratch:rw")
    return attrs.evolve(settings, worker=worker)


async def test_the_api_checks_mounts_at_create_and_update(client, tmp_path):
    await push_bundle(client, tmp_path)
    wanted = [mount("/srv/data/set1", "/data"), mount("/srv/scratch", "/scratch", format="rw")]
    created = await client.post("/actors", json={"image": IMAGE, "mounts": wanted})
    assert created.status_code == 200, created.text
    actor = created.json()["result"]
    assert actor["mounts"] == [
        {"host_path": "/srv/data/set1", "container_path": "/data", "mode": "ro"},
        {"host_path": "/srv/scratch", "container_path": "/scratch", "mode": "rw"},
    ]
    outside = await client.post(
        "/actors", json={"image": IMAGE, "mounts": [mount("/etc", "/etc2")]}
    )
    assert outside.status_code == 400
    assert outside.json()["message"].startswith(
        "Invalid actor description: mounts: host_path /etc is not allowed on this platform"
    )
    rw = await client.put(
        f"/actors/{actor['id']}", json={"mounts": [mount("/srv/data", "/data", "rw")]}
    )
    assert (rw.status_code, rw.json()["message"]) == (
        400,
        "Invalid actor description: mounts: host_path /srv/data may only be mounted "
        "read-only (ro).",
    )
    kept = (await client.get(f"/actors/{actor['id']}")).json()["result"]
    assert kept["mounts"] == actor["mounts"]
    wrong_type = await client.post(
        "/actors", json={"image": IMAGE, "mounts": [{"host_path": 1, "container_path": "/x"}]}
    )
    assert wrong_type.status_code == 400
