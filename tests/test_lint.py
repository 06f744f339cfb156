"""Static checks run as tests, so the one test command runs them: ruff and mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["ruff", "check", "abaco", "tests", "bench"], id="ruff-check"),
        pytest.param(["ruff", "format", "--check", "abaco", "tests", "bench"], id="ruff-format"),
        pytest.param(["mypy"], id="mypy"),
    ],
)
def test_static_check_is_clean(argv):
    result = subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
