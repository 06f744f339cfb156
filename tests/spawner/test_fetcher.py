"""The bundle fetcher against a real repository served over HTTP."""

from __future__ import annotations

import json

import pytest
import trio

from abaco.bundles import ArchiveLimits, BundleId
from abaco.channels import open_hub
from abaco.errors import BundleError, NotFound, RemoteError
from abaco.spawner.fetcher import BundleCache, serve_fetcher
from tests.api.test_repository import _build

HELLO = BundleId("org.example", "hello", "1.0.0")


async def _upload(client, archive, version="1.0.0"):
    response = await client.put(f"/bundles/org.example/hello/{version}", content=archive)
    assert response.status_code == 201, response.text
    return response.json()["result"]["sha256"]


@pytest.fixture
def cache(api_url, tmp_path):
    return BundleCache(tmp_path / "cache", api_url, max_bytes=10 << 20, limits=ArchiveLimits())


async def test_a_fetched_bundle_is_unpacked_and_verified(client, cache, tmp_path):
    sha256 = await _upload(client, _build(tmp_path))
    fetched = await cache.fetch(HELLO)
    assert fetched.sha256 == sha256
    assert (fetched.path / "hello" / "main.py").read_text().startswith("def handle")
    assert json.loads((fetched.path / "Manifest.json").read_text())["name"] == "org.example/hello"
    again = await cache.fetch(HELLO)
    assert again == fetched
    assert (cache.statistics().downloads, cache.statistics().hits) == (1, 1)


async def test_two_concurrent_fetches_share_one_download(client, cache, tmp_path):
    await _upload(client, _build(tmp_path))
    results = []

    async def fetch():
        results.append(await cache.fetch(HELLO))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        nursery.start_soon(fetch)
    assert results[0] == results[1]
    assert cache.statistics().downloads == 1


async def test_a_snapshot_is_rechecked_and_a_new_upload_fetched(client, cache, tmp_path):
    snapshot = BundleId("org.example", "hello", "2.0.0-SNAPSHOT")
    first = await _upload(client, _build(tmp_path, "2.0.0-SNAPSHOT"), "2.0.0-SNAPSHOT")
    assert (await cache.fetch(snapshot)).sha256 == first
    assert (await cache.fetch(snapshot)).sha256 == first  # 304: still current
    assert cache.statistics().downloads == 1
    changed = b"def handle(m):\n    return 2\n"
    second_archive = _build(tmp_path / "b", "2.0.0-SNAPSHOT", body=changed)
    second = await _upload(client, second_archive, "2.0.0-SNAPSHOT")
    fetched = await cache.fetch(snapshot)
    assert fetched.sha256 == second != first
    assert (fetched.path / "hello" / "main.py").read_text().endswith("return 2\n")


async def test_least_recently_used_bundles_nobody_uses_are_evicted(client, api_url, tmp_path):
    versions = ["1.0.0", "1.0.1", "1.0.2"]
    for version in versions:
        await _upload(client, _build(tmp_path / version, version), version)
    one_bundle = 100  # bytes: far below any unpacked bundle, so only the newest fits
    cache = BundleCache(tmp_path / "c", api_url, max_bytes=one_bundle, limits=ArchiveLimits())
    bundles = [BundleId("org.example", "hello", v) for v in versions]
    async with cache.using(bundles[0]) as in_use:
        await cache.fetch(bundles[1])
        newest = await cache.fetch(bundles[2])
        assert in_use.path.exists()  # in use: kept although over the bound
        assert newest.path.exists()  # just fetched: kept
        assert cache.statistics().evictions == 1  # the one nobody uses
        assert {str(e.fetched.bundle) for e in cache._entries.values()} == {
            str(bundles[0]),
            str(bundles[2]),
        }


async def test_a_digest_that_does_not_match_is_refused(client, cache, tmp_path, settings):
    await _upload(client, _build(tmp_path))
    digest_file = settings.state.path() / "repository/org/example/hello/1.0.0/hello-1.0.0.sha256"
    digest_file.write_text("0" * 64)
    with pytest.raises(BundleError, match="the download hashes to"):
        await cache.fetch(HELLO)
    assert cache.statistics().size == 0


async def test_an_unknown_bundle_is_not_found(cache):
    with pytest.raises(NotFound):
        await cache.fetch(BundleId("org.example", "nothing", "1.0.0"))


async def test_a_restart_finds_what_the_cache_holds(client, cache, api_url, tmp_path):
    await _upload(client, _build(tmp_path))
    first = await cache.fetch(HELLO)
    restarted = BundleCache(cache.root, api_url, max_bytes=10 << 20, limits=ArchiveLimits())
    await restarted.load()
    assert await restarted.fetch(HELLO) == first
    assert restarted.statistics().downloads == 0


async def test_the_fetcher_actor_answers_on_its_request_channel(client, cache, redis, tmp_path):
    await _upload(client, _build(tmp_path))
    async with open_hub(redis) as hub:
        requests = hub.open_request("fetcher")
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_fetcher, requests, cache)
            answers = []

            async def ask():
                answers.append(await requests.request({"bundle": str(HELLO)}, timeout=30))

            async with trio.open_nursery() as askers:
                askers.start_soon(ask)
                askers.start_soon(ask)
            with pytest.raises(RemoteError, match="NotFound"):
                await requests.request({"bundle": "org.example/nothing:1.0.0"}, timeout=30)
            with pytest.raises(RemoteError, match="BundleError"):
                await requests.request({"nope": 1}, timeout=30)
            nursery.cancel_scope.cancel()
    assert answers[0] == answers[1]
    assert cache.statistics().downloads == 1
