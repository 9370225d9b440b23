from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path
from fastapi.responses import Response

from anvil_common.http import parse_etags

from ..auth import Exporter
from ..deps import Session, State
from . import service

__all__ = ["router", "MEDIA_TYPE"]

router = APIRouter(tags=["bundles"])
# docs/bundle-format.md; the same constant as anvil_wire.bundles.MEDIA_TYPE.
MEDIA_TYPE = "application/vnd.anvil.bundle"
Digest = Annotated[str, Path(pattern=r"^sha256:[0-9a-f]{64}$", description="The bundle digest.")]


@router.get(
    "/bundles/{digest}",
    operation_id="download_bundle",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "The bundle file."}, 304: {}},
)
async def download_bundle(
    digest: Digest,
    session: Session,
    state: State,
    principal: Exporter,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Download a bundle by its digest (ETag: the digest; 304 to a matching If-None-Match)."""
    bundle = await service.get_bundle(session, principal, state=state, digest=digest)
    etag = f'"{bundle.digest}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    tags = parse_etags(if_none_match)
    if tags is not None and (etag in tags or "*" in tags):
        return Response(status_code=304, headers=headers)
    hex_digest = bundle.digest.removeprefix("sha256:")
    headers["Content-Disposition"] = f'attachment; filename="{hex_digest}.anvil"'
    return Response(bundle.data, media_type=MEDIA_TYPE, headers=headers)
