"""Peers: register, change, remove, refresh their keys, and queue transfers (push and pull).

Fetching a peer's JWKS is a network call: it happens before the transaction that writes the
peer, never inside one (a SQLite write transaction holds the whole database's write lock).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.pagination import PageParams, paginate
from anvil_wire import KeyError_, digest_of

from .. import queue
from ..auth import Principal
from ..models import Job, Peer
from ..state import WorkerState
from ..trust import normal_issuer
from .client import ensure_configured
from .errors import PeerExists, PeerJwksInvalid, PeerNotFound
from .keys import check_jwks, ensure_secure, fetch_jwks
from .schemas import PeerCreate, PeerTransfer, PeerUpdate

__all__ = [
    "create_peer",
    "list_peers",
    "get_peer",
    "update_peer",
    "delete_peer",
    "refresh_peer_keys",
    "create_transfer",
]


def _ensure_admin_of(principal: Principal, organisation: str) -> None:
    """Peers belong to a whole organisation: another one is 404, a project-limited token 403."""
    principal.ensure_org(organisation)
    principal.ensure_project(None, what="manage the organisation's peers")


def _given_jwks(jwks: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_jwks(jwks)
    except KeyError_ as exc:
        raise PeerJwksInvalid(f"jwks: {exc}") from None


async def _keys(
    state: WorkerState, issuer: str, given: dict[str, Any] | None
) -> tuple[dict[str, Any], datetime | None]:
    """(jwks, keys_fetched_at): the given keys, or the issuer's JWKS fetched now."""
    if given is not None:
        return _given_jwks(given), None
    settings = state.settings
    jwks = await fetch_jwks(
        issuer, timeout=settings.peer_timeout_seconds, allow_insecure=settings.allow_insecure_peers
    )
    return jwks, utcnow()


async def _ensure_free(session: AsyncSession, organisation: str, name: str, issuer: str) -> None:
    taken = await session.scalar(
        select(Peer).where(Peer.organisation == organisation, (Peer.name == name) | (Peer.issuer == issuer))
    )
    if taken is None:
        return
    if taken.name == name:
        raise PeerExists(f"organisation {organisation!r} already has a peer named {name!r}")
    raise PeerExists(
        f"peer {taken.name!r} of organisation {organisation!r} already has issuer {issuer}: "
        "an organisation trusts each issuer through one peer",
        peer=taken.name,
    )


async def create_peer(state: WorkerState, principal: Principal, data: PeerCreate) -> Peer:
    """Register a peer: its keys are the given JWKS or fetched from its issuer."""
    _ensure_admin_of(principal, data.organisation)
    allow = state.settings.allow_insecure_peers
    ensure_secure(data.issuer, what="issuer", allow_insecure=allow)
    if data.url is not None:
        ensure_secure(data.url, what="URL", allow_insecure=allow)
    issuer = normal_issuer(data.issuer)
    async with state.db.session(write=False) as session:
        await _ensure_free(session, data.organisation, data.name, issuer)
    jwks, fetched_at = await _keys(state, issuer, data.jwks)
    now = utcnow()
    row = Peer(
        id=uuid.uuid4(),
        organisation=data.organisation,
        name=data.name,
        issuer=issuer,
        url=data.url,
        remote_organisation=data.remote_organisation or data.organisation,
        jwks=jwks,
        keys_fetched_at=fetched_at,
        token=data.token.get_secret_value() if data.token is not None else None,
        auto_apply=data.auto_apply,
        created_at=now,
        created_by=principal.actor,
        updated_at=now,
    )
    try:
        async with state.db.session() as session:
            await _ensure_free(session, data.organisation, data.name, issuer)
            session.add(row)
    except IntegrityError:  # registered by a concurrent request meanwhile
        raise PeerExists(f"organisation {data.organisation!r} already has peer {data.name!r}") from None
    return row


async def list_peers(
    session: AsyncSession, principal: Principal, organisation: str, page: PageParams
) -> tuple[Sequence[Peer], str | None]:
    """An organisation's peers by name."""
    _ensure_admin_of(principal, organisation)
    stmt = select(Peer).where(Peer.organisation == organisation)
    return await paginate(session, stmt, Peer.name, page)


async def get_peer(
    session: AsyncSession, principal: Principal, organisation: str, name: str, *, lock: bool = False
) -> Peer:
    """One peer of an organisation the caller administers."""
    _ensure_admin_of(principal, organisation)
    stmt = select(Peer).where(Peer.organisation == organisation, Peer.name == name)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise PeerNotFound(f"organisation {organisation!r} has no peer {name!r}")
    return row


async def update_peer(
    session: AsyncSession,
    principal: Principal,
    *,
    state: WorkerState,
    organisation: str,
    name: str,
    data: PeerUpdate,
) -> Peer:
    """Change what was sent: URL, remote organisation, token, auto-apply, keys."""
    row = await get_peer(session, principal, organisation, name, lock=True)
    sent = data.model_fields_set
    if "url" in sent:
        if data.url is not None:
            ensure_secure(data.url, what="URL", allow_insecure=state.settings.allow_insecure_peers)
        row.url = data.url
    if "token" in sent:
        row.token = data.token.get_secret_value() if data.token is not None else None
    if data.remote_organisation is not None:
        row.remote_organisation = data.remote_organisation
    if data.auto_apply is not None:
        row.auto_apply = data.auto_apply
    if data.jwks is not None:
        row.jwks, row.keys_fetched_at = _given_jwks(data.jwks), None
    row.updated_at = utcnow()
    await session.flush()
    return row


async def delete_peer(session: AsyncSession, principal: Principal, organisation: str, name: str) -> None:
    """Remove a peer: its bundles are no longer trusted here, its token is forgotten."""
    row = await get_peer(session, principal, organisation, name, lock=True)
    await session.delete(row)
    await session.flush()


async def refresh_peer_keys(state: WorkerState, principal: Principal, organisation: str, name: str) -> Peer:
    """Fetch the peer's JWKS from its issuer now (after it rotated its keys) and store it."""
    async with state.db.session(write=False) as session:
        row = await get_peer(session, principal, organisation, name)
        peer_id, issuer = row.id, row.issuer
    jwks, fetched_at = await _keys(state, issuer, None)
    async with state.db.session() as session:
        found = await session.get(Peer, peer_id)
        if found is None:  # removed meanwhile
            raise PeerNotFound(f"organisation {organisation!r} has no peer {name!r}")
        found.jwks, found.keys_fetched_at, found.updated_at = jwks, fetched_at, utcnow()
        await session.flush()
        return found


async def create_transfer(
    session: AsyncSession,
    principal: Principal,
    *,
    state: WorkerState,
    kind: str,
    organisation: str,
    name: str,
    data: PeerTransfer,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Queue a push or a pull with a peer; the same Idempotency-Key and body give the same job."""
    row = await get_peer(session, principal, organisation, name)
    # Checked now, so a transfer that cannot work is refused before it is queued.
    ensure_configured(row.name, row.url, row.token, allow_insecure=state.settings.allow_insecure_peers)
    body = data.model_dump(mode="json")
    payload = {**body, "peer": str(row.id), "peer_name": row.name}
    return await queue.enqueue(
        session,
        kind=kind,
        organisation=organisation,
        project=None,
        payload=payload,
        created_by=principal.actor,
        max_attempts=state.settings.max_attempts,
        idempotency_key=idempotency_key,
        request_hash=digest_of({"kind": kind, "organisation": organisation, "peer": name, **body}),
    )
