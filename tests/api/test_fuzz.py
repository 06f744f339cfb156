"""Schema-driven fuzzing: schemathesis over ``/openapi.json`` finds no server error.

Runs the schemathesis CLI against the real API (served in this test's trio loop) with
the admin's token and a bundle in the repository, so that generated actors can be
created. Every generated request, valid or not, must get an answer below 500. (No
actor is seeded: with no worker running, a synchronous message to it or a followed log
would rightly wait for a run that never comes.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from tests.api._helpers import push_bundle


async def test_schemathesis_finds_no_server_error(client, api_url, admin_token, tmp_path):
    await push_bundle(client, tmp_path)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    argv = [
        str(schemathesis),
        "run",
        f"{api_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--header",
        f"Authorization: Bearer {admin_token}",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "15",
        "--workers",
        "1",
        "--seed",
        "1",
        "--generation-database",
        "none",
        "--no-color",
        # Big uploads to the bundle repository are tested on their own.
        "--exclude-path-regex",
        "^/(bpk|bundles)",
    ]
    result = await trio.run_process(
        argv, capture_stdout=True, check=False, env={**os.environ, "NO_COLOR": "1"}
    )
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output[-6000:]
