"""Examples shipped with abaco: the ``hello`` bundle source and the demo that runs it.

``hello/`` is a bundle source directory (``Manifest.json`` and a Python module), built
with :func:`abaco.bundles.build_bundle`; :mod:`abaco.examples.demo` is what
``abaco up --demo`` does with it over the REST API.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HELLO"]

HELLO = Path(__file__).parent / "hello"
"""The source directory of the sample actor bundle."""
