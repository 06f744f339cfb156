"""Actor bundles: the archive format, checking untrusted archives, and building them.

``manifest`` (the format: ``Manifest.json`` and bundle identities) depends only on
``abaco.errors``; ``archive`` (what an archive may hold, its content digest, checking and
unpacking) builds on it; ``build`` makes archives and checks them with ``archive``. All
of it is synchronous and blocking: callers under trio run it in
``trio.to_thread.run_sync``. This module re-exports the public names.
"""

from .archive import ArchiveLimits as ArchiveLimits
from .archive import check_member_path as check_member_path
from .archive import compute_content_sha256 as compute_content_sha256
from .archive import extract_archive as extract_archive
from .archive import inspect_archive as inspect_archive
from .build import build_bundle as build_bundle
from .manifest import BUNDLE_SUFFIX as BUNDLE_SUFFIX
from .manifest import MANIFEST_NAME as MANIFEST_NAME
from .manifest import MAX_MANIFEST_BYTES as MAX_MANIFEST_BYTES
from .manifest import SPEC_V1 as SPEC_V1
from .manifest import BundleError as BundleError
from .manifest import BundleId as BundleId
from .manifest import CommandRuntime as CommandRuntime
from .manifest import Manifest as Manifest
from .manifest import PythonRuntime as PythonRuntime
from .manifest import Resources as Resources
from .manifest import Runtime as Runtime
from .manifest import Scalar as Scalar
from .manifest import parse_manifest as parse_manifest
