"""The software repository over real HTTP: store, fetch, list, refuse what is bad."""

from __future__ import annotations

import hashlib
import json

import pytest

from abaco.bundles import build_bundle
from tests.bundles import manifest_dict
from tests.bundles.test_archive import BAD_ARCHIVES, LIMITS

IDENTITY = {"groupId": "org.example", "bpkId": "hello", "version": "1.0.0"}


def _header(identity=None) -> dict[str, str]:
    return {"Bpk-Identifier": json.dumps(identity or IDENTITY)}


def _build(tmp_path, version="1.0.0", body=b"def handle(message):\n    return message\n"):
    source = tmp_path / f"src-{version}"
    (source / "hello").mkdir(parents=True)
    (source / "hello" / "__init__.py").write_bytes(b"")
    (source / "hello" / "main.py").write_bytes(body)
    (source / "Manifest.json").write_text(json.dumps(manifest_dict(version=version)))
    out = tmp_path / f"dist-{version}"
    out.mkdir()
    return build_bundle(source, out).read_bytes()


def _repository_files(settings):
    root = settings.state.path() / "repository"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_upload_then_download_list_and_describe(client, tmp_path, settings):
    archive = _build(tmp_path)
    stored = await client.put("/bpk", content=archive, headers=_header())
    assert stored.status_code == 201, stored.text
    result = stored.json()["result"]
    assert result["reference"] == "org.example/hello:1.0.0"
    assert result["sha256"] == hashlib.sha256(archive).hexdigest()

    fetched = await client.get("/bpk", headers=_header())
    assert fetched.status_code == 200
    assert fetched.content == archive
    assert fetched.headers["etag"] == f'"{result["sha256"]}"'
    same = await client.get("/bundles/org.example/hello/1.0.0")
    assert same.content == archive
    unchanged = await client.get(
        "/bundles/org.example/hello/1.0.0", headers={"If-None-Match": fetched.headers["etag"]}
    )
    assert unchanged.status_code == 304

    listed = (await client.get("/bpklist")).json()["result"]
    assert listed == [{**IDENTITY, "reference": "org.example/hello:1.0.0"}]
    assert (await client.get("/bundles")).json()["result"] == listed
    descriptors = (await client.get("/tdlist", headers=_header())).json()["result"]
    assert descriptors[0]["runtime"] == {"type": "python", "entry_point": "hello.main:handle"}
    manifest = (await client.get("/bundles/org.example/hello/1.0.0/manifest")).json()["result"]
    assert manifest["name"] == "org.example/hello"
    assert _repository_files(settings) == [
        "org/example/hello/1.0.0/hello-1.0.0.bpk",
        "org/example/hello/1.0.0/hello-1.0.0.sha256",
    ]


async def test_a_version_is_immutable(client, tmp_path):
    first = _build(tmp_path)
    assert (await client.put("/bpk", content=first, headers=_header())).status_code == 201
    second = _build(tmp_path / "again", body=b"def handle(message):\n    return 2\n")
    refused = await client.put("/bpk", content=second, headers=_header())
    assert refused.status_code == 409
    assert "immutable" in refused.json()["message"]
    assert (await client.get("/bpk", headers=_header())).content == first


async def test_a_snapshot_version_can_be_uploaded_again(client, tmp_path):
    snapshot = {**IDENTITY, "version": "1.1.0-SNAPSHOT"}
    first = _build(tmp_path, "1.1.0-SNAPSHOT")
    second = _build(tmp_path / "again", "1.1.0-SNAPSHOT", body=b"def handle(m):\n    return 2\n")
    assert (await client.put("/bpk", content=first, headers=_header(snapshot))).status_code == 201
    assert (await client.put("/bpk", content=second, headers=_header(snapshot))).status_code == 201
    assert (await client.get("/bpk", headers=_header(snapshot))).content == second


async def test_the_named_identity_must_match_the_manifest(client, tmp_path, settings):
    archive = _build(tmp_path)
    response = await client.put("/bundles/org.example/other/1.0.0", content=archive)
    assert response.status_code == 400
    assert "manifest says org.example/hello:1.0.0" in response.json()["message"]
    assert _repository_files(settings) == []


async def test_a_sha256_mismatch_is_refused(client, tmp_path, settings):
    archive = _build(tmp_path)
    response = await client.put(
        "/bpk", content=archive, headers={**_header(), "Bundle-Sha256": "0" * 64}
    )
    assert response.status_code == 400
    assert "sha256 mismatch" in response.json()["message"]
    assert _repository_files(settings) == []


@pytest.mark.parametrize(
    ("write", "match"),
    [
        pytest.param(p.values[0], p.values[2], id=p.id)
        for p in BAD_ARCHIVES
        if p.values[1] is LIMITS
    ],
)
async def test_a_malicious_or_broken_archive_is_refused_and_nothing_is_kept(
    client, tmp_path, settings, write, match
):
    path = tmp_path / "upload.bpk"
    write(path)
    response = await client.put("/bpk", content=path.read_bytes(), headers=_header())
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["message"]
    assert _repository_files(settings) == []


@pytest.mark.parametrize(
    "header",
    ["not json", json.dumps({"groupId": "org.example"}), json.dumps({**IDENTITY, "bpkId": "../x"})],
)
async def test_a_bad_identity_header_is_a_400(client, tmp_path, header):
    response = await client.put(
        "/bpk", content=_build(tmp_path), headers={"Bpk-Identifier": header}
    )
    assert response.status_code == 400
    assert response.json()["status"] == "error"


async def test_a_missing_identity_header_is_a_400(client):
    response = await client.get("/bpk")
    assert response.status_code == 400
    assert "Bpk-Identifier" in response.json()["message"]


async def test_an_unknown_bundle_is_a_404(client):
    response = await client.get("/bundles/org.example/nothing/1.0.0")
    assert response.status_code == 404
    assert response.json()["status"] == "error"


async def test_an_empty_upload_is_a_400(client):
    response = await client.put("/bpk", content=b"", headers=_header())
    assert response.status_code == 400


async def test_an_upload_over_the_limit_is_a_413_and_nothing_is_kept(
    settings, tmp_path, admin_token
):
    import attrs
    import httpx

    from abaco.api import create_app, serve_api

    small = attrs.evolve(
        settings, repository=attrs.evolve(settings.repository, max_bundle_bytes=500)
    )
    archive = _build(tmp_path)
    assert len(archive) > 500

    async def chunked():
        for start in range(0, len(archive), 100):
            yield archive[start : start + 100]

    async with (
        serve_api(create_app(small), "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}) as http,
    ):
        declared = await http.put("/bpk", content=archive, headers=_header())
        streamed = await http.put("/bpk", content=chunked(), headers=_header())
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert "limit" in response.json()["message"]
    assert _repository_files(settings) == []
