"""The software repository and the fetcher: MB/s for a 50 MB bundle, and cached fetch latency.

One run, on a real API (hypercorn on 127.0.0.1) in a temp state dir:

- upload:        ``PUT /bundles/...`` of the archive (streamed, sha256, fsync, inspected)
- raw download:  ``GET`` of the same archive, body discarded (the HTTP floor)
- fetch:         the fetcher's first fetch: download, verify sha256, inspect, unpack
- cached fetch:  later fetches of the same (released) version: p50/p99 in microseconds
- raw copy:      ``shutil.copyfile`` of the archive (the disk floor)

Run: ``.venv/bin/python bench/repository.py [--mb 50]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import trio

from abaco.api import create_app, serve_api
from abaco.bundles import ArchiveLimits, BundleId, build_bundle
from abaco.config import load_settings
from abaco.spawner.fetcher import BundleCache
from bench._machine import machine


def _make_bundle(root: Path, megabytes: int) -> Path:
    source = root / "src"
    (source / "payload").mkdir(parents=True)
    (source / "app.py").write_text("def handle(message):\n    return message\n")
    for index in range(megabytes):
        # Random bytes do not compress: the archive is as big as its content.
        (source / "payload" / f"part{index:03}.bin").write_bytes(os.urandom(1 << 20))
    manifest = {
        "spec": "abaco.bundle/v1",
        "name": "org.bench/big",
        "version": "1.0.0",
        "runtime": {"type": "python", "entry_point": "app:handle"},
    }
    (source / "Manifest.json").write_text(json.dumps(manifest))
    out = root / "dist"
    out.mkdir()
    return build_bundle(source, out)


async def _run(root: Path, archive: Path, fetches: int) -> list[tuple[str, str]]:
    settings = load_settings(environ={"ABACO__STATE__DIR": str(root / "state")})
    data = await trio.Path(archive).read_bytes()
    size_mb = len(data) / 1e6
    bundle = BundleId("org.bench", "big", "1.0.0")
    rows: list[tuple[str, str]] = []
    async with (
        serve_api(create_app(settings), "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, timeout=300) as http,
    ):
        path = f"/bundles/{bundle.group}/{bundle.id}/{bundle.version}"
        start = time.perf_counter()
        response = await http.put(path, content=data)
        took = time.perf_counter() - start
        assert response.status_code == 201, response.text
        rows.append(("upload", f"{size_mb / took:8.1f} MB/s  ({took * 1000:.0f} ms)"))

        start = time.perf_counter()
        async with http.stream("GET", path) as streamed:
            async for _ in streamed.aiter_bytes(1 << 20):
                pass
        took = time.perf_counter() - start
        rows.append(("raw download", f"{size_mb / took:8.1f} MB/s  ({took * 1000:.0f} ms)"))

        cache = BundleCache(root / "cache", url, max_bytes=10 << 30, limits=ArchiveLimits())
        start = time.perf_counter()
        await cache.fetch(bundle)
        took = time.perf_counter() - start
        rows.append(("fetch (first)", f"{size_mb / took:8.1f} MB/s  ({took * 1000:.0f} ms)"))

        latencies = []
        for _ in range(fetches):
            start = time.perf_counter()
            await cache.fetch(bundle)
            latencies.append((time.perf_counter() - start) * 1e6)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        rows.append(("cached fetch", f"p50 {p50:6.1f} us  p99 {p99:6.1f} us  ({fetches} fetches)"))

    start = time.perf_counter()
    shutil.copyfile(archive, root / "copy.bpk")
    took = time.perf_counter() - start
    rows.append(("raw copy", f"{size_mb / took:8.1f} MB/s  ({took * 1000:.0f} ms)"))
    return rows


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="bundle size in MB")
    parser.add_argument("--fetches", type=int, default=2000, help="cached fetches to time")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = _make_bundle(root, args.mb)
        print(f"bundle:  {archive.stat().st_size / 1e6:.1f} MB, {args.mb + 2} files")
        for name, figure in trio.run(_run, root, archive, args.fetches):
            print(f"{name:14} {figure}")


if __name__ == "__main__":
    main()
