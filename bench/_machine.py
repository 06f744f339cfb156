"""The machine line every benchmark prints first."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def machine() -> str:
    """Platform, CPU model, CPU count and Python version, on one line."""
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = sys.version.split()[0]
    return f"{platform.platform()} | {cpu} | {os.cpu_count()} cpus | Python {python}"
