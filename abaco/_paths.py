"""Where a platform process keeps short-lived files (sockets, work dirs) on this host."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["runtime_dir"]


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/abaco-UID``, else ``/tmp/abaco-UID``.

    Short on purpose: unix socket paths are limited to about 100 bytes.
    """
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"abaco-{os.getuid()}"
