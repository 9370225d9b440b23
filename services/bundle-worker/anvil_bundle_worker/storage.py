"""Where bundle files live: one small interface, with the database as the default store.

An object store (S3 and the like) can implement :class:`BundleStore` later: it would keep the
bytes outside and the row (metadata, expiry) in the same session, so a job's result and its
bundle still commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from .bundles.errors import BundleTooLarge
from .models import StoredBundle

__all__ = ["NewBundle", "BundleFile", "BundleStore", "DatabaseBundleStore"]


@dataclass(frozen=True)
class NewBundle:
    digest: str
    data: bytes
    kind: str  # "export" (keyed by bundle digest) or "upload" (keyed by the SHA-256 of the bytes)
    organisation: str
    project: str | None
    created_by: str
    expires_at: datetime
    manifest: dict[str, Any] | None = None


@dataclass(frozen=True)
class BundleFile:
    digest: str
    kind: str
    organisation: str
    project: str | None
    size: int
    data: bytes
    manifest: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime


class BundleStore(Protocol):
    """Bundle files by digest, each at most ``max_bytes``; writes join the caller's session."""

    max_bytes: int

    async def put(self, session: AsyncSession, bundle: NewBundle) -> None:
        """Store ``bundle``; the same digest again keeps the bytes and extends the expiry."""

    async def get(self, session: AsyncSession, digest: str) -> BundleFile | None: ...

    async def exists(self, session: AsyncSession, digest: str) -> bool: ...

    async def delete(self, session: AsyncSession, digest: str) -> bool: ...

    async def delete_expired(self, session: AsyncSession, *, now: datetime) -> int: ...


class DatabaseBundleStore:
    """Bundle bytes in the ``bundles`` table (a BLOB on SQLite, BYTEA on Postgres)."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    async def put(self, session: AsyncSession, bundle: NewBundle) -> None:
        """Store ``bundle``; the same digest again keeps the bytes and extends the expiry."""
        if len(bundle.data) > self.max_bytes:
            raise BundleTooLarge(f"bundle is {len(bundle.data)} bytes; the limit is {self.max_bytes} bytes")
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = insert(StoredBundle).values(
            digest=bundle.digest,
            kind=bundle.kind,
            organisation=bundle.organisation,
            project=bundle.project,
            size=len(bundle.data),
            data=bundle.data,
            manifest=bundle.manifest,
            created_by=bundle.created_by,
            expires_at=bundle.expires_at,
        )
        # Same digest, same content (it is a hash of it): two exports of one selection, even
        # concurrent ones, share a row; only the later expiry is kept.
        stmt = stmt.on_conflict_do_update(
            index_elements=[StoredBundle.digest],
            set_={"expires_at": stmt.excluded.expires_at},
            where=StoredBundle.expires_at < stmt.excluded.expires_at,
        )
        await session.execute(stmt)

    async def get(self, session: AsyncSession, digest: str) -> BundleFile | None:
        row = await session.scalar(select(StoredBundle).where(StoredBundle.digest == digest))
        if row is None:
            return None
        return BundleFile(
            digest=row.digest,
            kind=row.kind,
            organisation=row.organisation,
            project=row.project,
            size=row.size,
            data=row.data,
            manifest=row.manifest,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def exists(self, session: AsyncSession, digest: str) -> bool:
        found = await session.scalar(select(StoredBundle.digest).where(StoredBundle.digest == digest))
        return found is not None

    async def delete(self, session: AsyncSession, digest: str) -> bool:
        gone = await session.scalar(
            delete(StoredBundle).where(StoredBundle.digest == digest).returning(StoredBundle.digest)
        )
        return gone is not None

    async def delete_expired(self, session: AsyncSession, *, now: datetime) -> int:
        gone = await session.scalars(
            delete(StoredBundle).where(StoredBundle.expires_at < now).returning(StoredBundle.digest)
        )
        return len(gone.all())
