"""Finding the live child processes of this process (Linux /proc), for the leak check."""

from __future__ import annotations

import os
from pathlib import Path


def child_pids(parent: int | None = None) -> set[int]:
    """Pids of the live (not zombie) children of ``parent`` (this process by default)."""
    parent = os.getpid() if parent is None else parent
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended while we looked
        # The command name is in parentheses and may contain spaces; fields follow it.
        state, ppid = text.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z":
            found.add(int(stat.parent.name))
    return found
