"""The per-host spawner daemon (``abaco-spawner``).

It is built by the control-plane issue; until then the command only describes itself.
"""

from __future__ import annotations

import argparse

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run the ``abaco-spawner`` command line."""
    parser = argparse.ArgumentParser(
        prog="abaco-spawner",
        description=(
            "The per-host spawner: registers this host, publishes its load, and starts and "
            "stops worker processes on command. Not built yet: it arrives with the control plane."
        ),
    )
    parser.add_argument("--config", help="path of abaco.conf")
    parser.add_argument("--queue", default="default", help="the spawner pool this host serves")
    parser.parse_args(argv)
    parser.exit(2, "abaco-spawner: not built yet; see `abaco-spawner --help`\n")
