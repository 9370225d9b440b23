"""Fleet rules: what a token may see (docs/api.md 3.5), keyset pages, and the HTTP client's report."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.http import decode_page_token, encode_page_token
from anvil_common.pagination import Page, PageParams
from anvil_common.problems import BadRequest, Forbidden, NotFound, ValidationFailed
from anvil_common.registry_http import RegistryError

from ..auth import Principal
from . import repository
from .errors import EnvironmentMismatch, RegistryUnavailable, UnknownRevision
from .recorder import FleetWriter
from .repository import Cursor, FleetFilter
from .schemas import AckReport, EnvironmentSummary, FleetClientPublic, FleetSummary

if TYPE_CHECKING:
    from ..state import GatewayState

__all__ = ["scoped", "list_fleet", "fleet_summary", "report_ack"]

_BAD_PAGE_TOKEN = "page_token is not valid; pass back a next_page_token unchanged"  # noqa: S105


def scoped(principal: Principal, f: FleetFilter) -> FleetFilter:
    """``f`` within the token's limits: another organisation or project is absent (404), another
    environment forbidden (403); a limited token sees only its project and environment."""
    claims = principal.claims
    if f.organisation is None:
        if claims.org is not None:
            msg = "Field required (this token is limited to an organisation)"
            raise ValidationFailed(
                f"query.organisation: {msg}",
                errors=[{"loc": ["query", "organisation"], "msg": msg, "type": "missing"}],
            )
    else:
        principal.ensure_org(f.organisation)
    project, environment = f.project, f.environment
    if claims.project is not None:
        if project is not None and project != claims.project:
            raise NotFound(f"project {project!r} not found")
        project = claims.project
    if claims.environment is not None:
        if environment is not None and environment != claims.environment:
            raise Forbidden(f"this token is limited to environment {claims.environment!r}")
        environment = claims.environment
    return FleetFilter(f.organisation, project, environment, f.revision, f.status)


def _cursor(token: str | None) -> Cursor | None:
    position = decode_page_token(token)
    if position is None:
        return None
    after = position.get("after") if set(position) == {"after"} else None
    if (
        not isinstance(after, list)
        or len(after) != 5
        or not all(isinstance(v, str) and len(v) <= 200 and "\x00" not in v for v in after)
    ):
        raise BadRequest(_BAD_PAGE_TOKEN)
    try:
        return (after[0], after[1], after[2], uuid.UUID(after[3]), uuid.UUID(after[4]))
    except ValueError:
        raise BadRequest(_BAD_PAGE_TOKEN) from None


async def list_fleet(
    session: AsyncSession, fleet: FleetWriter, principal: Principal, f: FleetFilter, page: PageParams
) -> Page[FleetClientPublic]:
    """One page of the clients the token may see, by organisation, project, environment, client."""
    f = scoped(principal, f)
    after = _cursor(page.page_token)
    cutoff = fleet.clock() - fleet.fresh_for
    rows = list(
        await repository.list_clients(session, f, cutoff=cutoff, after=after, limit=page.page_size + 1)
    )
    token = None
    if len(rows) > page.page_size:
        rows = rows[: page.page_size]
        last = rows[-1]
        position = [last.organisation, last.project, last.environment, str(last.environment_id)]
        token = encode_page_token({"after": [*position, str(last.client_id)]})
    return Page(items=[FleetClientPublic.of(row, cutoff) for row in rows], next_page_token=token)


async def fleet_summary(
    session: AsyncSession, fleet: FleetWriter, principal: Principal, f: FleetFilter
) -> FleetSummary:
    """Per environment the token may see: clients by status, and who holds or refused each revision."""
    f = scoped(principal, f)
    tallies = await repository.summarize(session, f, cutoff=fleet.clock() - fleet.fresh_for)
    return FleetSummary(environments=[EnvironmentSummary.of(t) for t in tallies])


async def report_ack(state: GatewayState, principal: Principal, report: AckReport) -> None:
    """Record an HTTP client's ack or nack (written with the fleet writer's next batch)."""
    hello, message = report.messages()
    sub = hello.subscription
    principal.ensure_environment(sub.organisation, sub.project, sub.environment)
    try:
        channel = await state.hub.channel((sub.organisation, sub.project, sub.environment))
        if sub.prompt_set is not None:
            await state.hub.prompt_set(channel, sub.prompt_set)
    except RegistryError as exc:
        raise RegistryUnavailable("the environment could not be loaded from the registry") from exc
    if message.environment_id != channel.environment_id:
        raise EnvironmentMismatch(
            f"environment_id {message.environment_id} is not the id of environment "
            f"{sub.organisation}/{sub.project}/{sub.environment}"
        )
    # A revision this replica has not loaded yet (it may trail another replica by a moment) is
    # taken as reported; one it has must carry its manifest digest.
    known = channel.revisions.get(message.revision)
    if known is not None and known.manifest_digest != message.manifest_digest:
        raise UnknownRevision(
            f"revision {message.revision} of environment {sub.environment!r} has another manifest digest"
        )
    state.fleet.reported(hello, message)
