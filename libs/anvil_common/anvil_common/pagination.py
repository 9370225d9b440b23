"""Cursor pagination shared by every list endpoint: ``page_size``, ``page_token``, ``next_page_token``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from .http import decode_page_token, encode_page_token
from .problems import BadRequest

__all__ = ["Page", "PageParams", "PageSize", "PageToken", "page_params", "paginate"]

T = TypeVar("T")
MAX_PAGE_SIZE = 500
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page (1-500).")]
PageToken = Annotated[str | None, Query(description="The next_page_token of the previous page.")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_page_token: str | None = None


class PageParams:
    def __init__(self, page_size: PageSize = 50, page_token: PageToken = None) -> None:
        self.page_size = page_size
        self.page_token = page_token


async def page_params(page_size: PageSize = 50, page_token: PageToken = None) -> PageParams:
    """The dependency (async: FastAPI would run a class or a plain function in a thread)."""
    return PageParams(page_size, page_token)


def _fits(value: Any, key: InstrumentedAttribute[Any]) -> bool:
    """A cursor value of the key column's own type (a forged token must not reach the database)."""
    if key.type.python_type is int:
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    return isinstance(value, str) and len(value) <= 500 and "\x00" not in value


async def paginate(
    session: AsyncSession,
    stmt: Select[Any],
    key: InstrumentedAttribute[Any],
    params: PageParams,
    *,
    descending: bool = False,
) -> tuple[Sequence[Any], str | None]:
    """Keyset pagination on one unique, sortable column; returns (rows, next_page_token)."""
    position = decode_page_token(params.page_token)
    if position is not None:
        after = position.get("after") if set(position) == {"after"} else None
        if not _fits(after, key):
            raise BadRequest("page_token is not valid; pass back a next_page_token unchanged")
        stmt = stmt.where(key < after if descending else key > after)
    stmt = stmt.order_by(key.desc() if descending else key.asc()).limit(params.page_size + 1)
    rows = (await session.scalars(stmt)).unique().all()
    if len(rows) <= params.page_size:
        return rows, None
    rows = rows[: params.page_size]
    last = getattr(rows[-1], key.key)
    return rows, encode_page_token({"after": last if isinstance(last, int) else str(last)})
