"""The per-host spawner daemon (``abaco-spawner``) and the bundle fetcher it uses.

:func:`run_spawner` runs one host's spawner (:mod:`abaco.spawner.daemon`); :func:`main` is
the ``abaco-spawner`` command line.
"""

from __future__ import annotations

from abaco.spawner.daemon import Spawner as Spawner
from abaco.spawner.daemon import main as main
from abaco.spawner.daemon import run_spawner as run_spawner

__all__ = ["Spawner", "main", "run_spawner"]
