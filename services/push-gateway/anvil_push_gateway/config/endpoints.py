"""The HTTP fallback (docs/push-protocol.md section 7): an environment's current signed revision
document with ``ETag``/``If-None-Match`` and long-poll, served from the gateway's memory."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Header, Query, Response

from anvil_common.http import parse_etags
from anvil_common.problems import NotFound, ValidationFailed
from anvil_common.registry_http import RegistryError

from ..auth import Principal, require
from ..channels import Channel, Revision
from ..deps import State
from ..fleet.errors import RegistryUnavailable
from ..hub import NoSuchEnvironment

if TYPE_CHECKING:
    from ..state import GatewayState

__all__ = ["router", "NoRevision"]

router = APIRouter(tags=["config"])

ENV = "/orgs/{org}/projects/{project}/environments/{environment}"


class NoRevision(NotFound):
    code, title = "no-revision", "No revision"


def _check_wait(wait: float, maximum: float) -> None:
    if wait > maximum:
        msg = f"Input should be less than or equal to {maximum:g}"
        raise ValidationFailed(
            f"query.wait: {msg}", errors=[{"loc": ["query", "wait"], "msg": msg, "type": "less_than_equal"}]
        )


async def _channel(state: GatewayState, key: tuple[str, str, str], prompt_set: str | None) -> Channel:
    """The environment (loaded on first use), and the prompt set's members when one is named."""
    try:
        channel = await state.hub.channel(key)
        if prompt_set is not None:
            try:
                await state.hub.prompt_set(channel, prompt_set)
            except NoSuchEnvironment as exc:
                raise NotFound(f"prompt set {prompt_set!r} not found in project {key[1]!r}") from exc
        return channel
    except RegistryError as exc:
        # Not loaded yet and the registry cannot be reached: what this replica has is served
        # through an outage, what it does not have cannot be.
        raise RegistryUnavailable("the environment could not be loaded from the registry") from exc


async def _wait_for_change(channel: Channel, deadline: float) -> bool:
    """Wait until the channel changes or ``deadline`` (monotonic); False on timeout."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    try:
        async with asyncio.timeout(remaining):
            await channel.changed.wait()
    except TimeoutError:
        return False
    return True


@router.get(
    ENV + "/config",
    operation_id="get_config",
    responses={304: {"description": "Not modified (the current revision is the one named)"}},
)
async def get_config(
    org: str,
    project: str,
    environment: str,
    state: State,
    principal: Annotated[Principal, Depends(require("config:read"))],
    prompt_set: Annotated[str | None, Query(description="Narrow to this prompt set's prompts.")] = None,
    wait: Annotated[
        float,
        Query(
            ge=0,
            allow_inf_nan=False,
            description="Long-poll: with If-None-Match naming the current revision (or before the "
            "first), wait up to this many seconds for a newer one.",
        ),
    ] = 0,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The environment's current signed revision document (same payload as the stream's snapshot)."""
    _check_wait(wait, state.settings.long_poll_max_seconds)
    principal.ensure_environment(org, project, environment)
    channel = await _channel(state, (org, project, environment), prompt_set)
    deadline = time.monotonic() + wait
    tags = parse_etags(if_none_match)
    while True:
        if channel.archived:
            await state.hub.channel(channel.key)  # raises environment-archived
        current = channel.current
        if current is None:
            if await _wait_for_change(channel, deadline):
                continue
            raise NoRevision(f"nothing has been published to environment {environment!r} yet")
        etag = f'"rev-{current.number}"'
        if tags is not None and (etag in tags or "*" in tags):
            if await _wait_for_change(channel, deadline):
                continue
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
        return _document(state, channel, current, prompt_set)


def _document(state: GatewayState, channel: Channel, current: Revision, prompt_set: str | None) -> Response:
    """The 200 answer: the revision document (narrowed to the prompt set) and its headers."""
    scope = None
    if prompt_set is not None:
        # The members as of now: a revision that arrived during the wait refreshed them.
        scope = (prompt_set, state.hub.sets[(channel.environment_id, prompt_set)])
    headers = {
        "ETag": f'"rev-{current.number}"',
        "Cache-Control": "no-cache",
        "Anvil-Environment-Id": channel.environment_id,
        "Anvil-Revision": str(current.number),
        "Anvil-Manifest-Digest": current.manifest_digest,
    }
    if scope is not None:
        headers["Anvil-Prompt-Set-Prompts"] = ",".join(current.served(scope))
    body = channel.document_body(current.number, scope)
    return Response(body, media_type="application/json", headers=headers)
