"""Idempotency-Key: the same key and body replay the first response; another body is a 422."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import JSONResponse

from anvil_common.problems import BadRequest
from anvil_wire import digest_of

from .auth import Principal
from .models import IdempotencyRecord
from .revisions.errors import IdempotencyKeyReused

__all__ = ["Idempotency"]

MAX_KEY_LENGTH = 200


class Idempotency:
    """One request's idempotency context; inert when the request carries no key."""

    def __init__(self, request: Request, principal: Principal, body: Any) -> None:
        key = request.headers.get("idempotency-key")
        if key is not None and (not key.strip() or len(key) > MAX_KEY_LENGTH):
            raise BadRequest(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")
        self.key = key
        self.actor = principal.actor
        self.scope = f"{request.method} {request.url.path}"
        self.request_hash = digest_of(jsonable_encoder(body))

    async def replay(self, session: AsyncSession) -> JSONResponse | None:
        """The stored response for this key, or None; 422 if the key came with another body."""
        if self.key is None:
            return None
        record = await session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.actor == self.actor,
                IdempotencyRecord.scope == self.scope,
                IdempotencyRecord.key == self.key,
            )
        )
        if record is None:
            return None
        if record.request_hash != self.request_hash:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different request body")
        headers = {**record.headers, "Idempotent-Replayed": "true"}
        return JSONResponse(record.response, status_code=record.status_code, headers=headers)

    def remember(
        self, session: AsyncSession, *, status_code: int, body: Any, headers: dict[str, str]
    ) -> None:
        if self.key is None:
            return
        session.add(
            IdempotencyRecord(
                actor=self.actor,
                scope=self.scope,
                key=self.key,
                request_hash=self.request_hash,
                status_code=status_code,
                response=jsonable_encoder(body),
                headers=headers,
            )
        )
