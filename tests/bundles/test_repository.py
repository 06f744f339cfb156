"""The repository on disk, without HTTP: what an actor's image may name."""

from __future__ import annotations

import pytest

from abaco.bundles import ArchiveLimits, BundleError, BundleId
from abaco.bundles.repository import Repository
from tests.api.test_repository import _build


@pytest.fixture
def repository(tmp_path):
    return Repository(tmp_path / "repo", limits=ArchiveLimits(), max_bundle_bytes=1 << 20)


def test_an_image_must_name_a_stored_bundle(repository, tmp_path):
    with pytest.raises(BundleError, match="no such bundle in the repository"):
        repository.require("org.example/hello:1.0.0")
    with repository.upload() as upload:
        upload.write(_build(tmp_path))
        upload.finish()
        repository.store(upload)
    assert repository.require("org.example/hello:1.0.0") == BundleId(
        "org.example", "hello", "1.0.0"
    )


@pytest.mark.parametrize("image", ["abacosamples/py3_func:1.0", "hello", "org.example/hello", ""])
def test_an_image_that_is_not_a_bundle_reference_is_a_bad_request(repository, image):
    with pytest.raises(BundleError):
        repository.require(image)


def test_an_upload_that_is_not_stored_leaves_nothing(repository, tmp_path):
    with repository.upload() as upload:
        upload.write(b"not a zip")
        upload.finish()
        with pytest.raises(BundleError):
            repository.store(upload)
    assert [p for p in (tmp_path / "repo").rglob("*") if p.is_file()] == []
