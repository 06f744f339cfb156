"""The software repository's HTTP routes.

EverBEEN's routes, the bundle named by a ``Bpk-Identifier`` header holding
``{"groupId": ..., "bpkId": ..., "version": ...}``:

- ``PUT /bpk``       store the body as that bundle (409 if the version exists, unless SNAPSHOT)
- ``GET /bpk``       the archive
- ``GET /bpklist``   every stored identity
- ``GET /tdlist``    the runtime descriptors inside one bundle

and the same for people under ``/bundles``:

- ``GET /bundles``, ``PUT|GET /bundles/GROUP/ID/VERSION``
- ``GET /bundles/GROUP/ID/VERSION/manifest``

An upload may carry ``Bundle-Sha256`` (hex sha256 of the archive): a mismatch is a 400.
Archives are served with ``ETag: "<sha256>"`` and honour ``If-None-Match``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, current_app, request

from abaco.api.envelope import PayloadTooLarge, ok
from abaco.bundles.manifest import BundleId
from abaco.errors import BadRequest, BundleError

if TYPE_CHECKING:
    from abaco.bundles.repository import Repository, StoredBundle

__all__ = ["blueprint"]

blueprint = Blueprint("repository", __name__)

_CHUNK = 1 << 20


def _repository() -> Repository:
    repository: Repository = current_app.config["abaco.repository"]
    return repository


def _identity_from_header() -> BundleId:
    raw = request.headers.get("Bpk-Identifier")
    if raw is None:
        raise BadRequest("the Bpk-Identifier header is missing")
    try:
        data = json.loads(raw)
        return BundleId(data["groupId"], data["bpkId"], data["version"])
    except (ValueError, TypeError, KeyError) as exc:
        raise BadRequest(
            'Bpk-Identifier must be JSON {"groupId": ..., "bpkId": ..., "version": ...}'
        ) from exc


def _identity_json(bundle: BundleId) -> dict[str, str]:
    return {"groupId": bundle.group, "bpkId": bundle.id, "version": bundle.version}


def _describe(stored: StoredBundle) -> dict[str, Any]:
    manifest = stored.manifest
    return {
        **_identity_json(manifest.bundle_id),
        "name": manifest.name,
        "reference": str(manifest.bundle_id),
        "sha256": stored.sha256,
        "size": stored.size,
    }


async def _receive(claimed: BundleId | None) -> StoredBundle:
    repository = _repository()
    declared = request.content_length
    if declared is not None and declared > repository.max_bundle_bytes:
        raise PayloadTooLarge(
            f"the bundle is {declared} bytes; the limit is {repository.max_bundle_bytes}"
        )
    expected_sha = request.headers.get("Bundle-Sha256", "").strip().lower()
    with repository.upload() as upload:
        try:
            async for chunk in request.body:
                await trio.to_thread.run_sync(upload.write, chunk)
        except BundleError as exc:
            raise PayloadTooLarge(str(exc)) from exc
        await trio.to_thread.run_sync(upload.finish)
        if upload.size == 0:
            raise BundleError("the request body is empty; send the bundle archive")
        if expected_sha and expected_sha != upload.sha256:
            raise BundleError(
                f"sha256 mismatch: Bundle-Sha256 says {expected_sha}, "
                f"the upload's is {upload.sha256}"
            )
        return await trio.to_thread.run_sync(lambda: repository.store(upload, claimed=claimed))


async def _send(bundle: BundleId) -> Response:
    repository = _repository()
    digest = await trio.to_thread.run_sync(repository.digest, bundle)
    etag = f'"{digest}"'
    if request.headers.get("If-None-Match") == etag:
        return Response(b"", status=304, headers={"ETag": etag})
    path = repository.archive_path(bundle)

    async def chunks() -> Any:
        file = await trio.open_file(path, "rb")
        async with file:
            while chunk := await file.read(_CHUNK):
                yield chunk

    size = (await trio.Path(path).stat()).st_size
    return Response(
        chunks(),
        status=200,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "ETag": etag,
            "Content-Disposition": f'attachment; filename="{bundle.file_name}"',
        },
    )


def _bundle(group: str, bundle_id: str, version: str) -> BundleId:
    return BundleId(group, bundle_id, version)


@blueprint.put("/bpk")
async def put_bpk() -> tuple[dict[str, Any], int]:
    stored = await _receive(_identity_from_header())
    return ok(_describe(stored), "Bundle stored."), 201


@blueprint.get("/bpk")
async def get_bpk() -> Response:
    return await _send(_identity_from_header())


@blueprint.get("/bpklist")
@blueprint.get("/bundles")
async def list_bundles() -> dict[str, Any]:
    identities = await trio.to_thread.run_sync(_repository().identities)
    return ok([_identity_json(b) | {"reference": str(b)} for b in identities], "Bundles listed.")


@blueprint.get("/tdlist")
async def tdlist() -> dict[str, Any]:
    stored = await trio.to_thread.run_sync(_repository().get, _identity_from_header())
    return ok([_runtime_descriptor(stored)], "Runtime descriptors listed.")


def _runtime_descriptor(stored: StoredBundle) -> dict[str, Any]:
    manifest = stored.manifest
    return {
        "name": manifest.name,
        "version": manifest.version,
        "runtime": manifest.runtime.to_dict(),
        "parameters": dict(manifest.parameters),
        "resources": manifest.resources.to_dict(),
    }


@blueprint.put("/bundles/<group>/<bundle_id>/<version>")
async def put_bundle(group: str, bundle_id: str, version: str) -> tuple[dict[str, Any], int]:
    stored = await _receive(_bundle(group, bundle_id, version))
    return ok(_describe(stored), "Bundle stored."), 201


@blueprint.get("/bundles/<group>/<bundle_id>/<version>")
async def get_bundle(group: str, bundle_id: str, version: str) -> Response:
    return await _send(_bundle(group, bundle_id, version))


@blueprint.get("/bundles/<group>/<bundle_id>/<version>/manifest")
async def get_manifest(group: str, bundle_id: str, version: str) -> dict[str, Any]:
    bundle = _bundle(group, bundle_id, version)
    stored = await trio.to_thread.run_sync(_repository().get, bundle)
    return ok(stored.manifest.to_dict() | {"sha256": stored.sha256}, "Manifest retrieved.")
