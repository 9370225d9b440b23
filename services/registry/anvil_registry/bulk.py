"""Many rows into one table inside the session's transaction, as fast as the database allows.

A bundle import writes a row per prompt, per version and per audit entry: tens of thousands
for an organisation restore. On Postgres they go through ``COPY`` (asyncpg's binary copy), several
times faster than INSERTs; on SQLite, which runs in-process, an executemany is already fast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Base, CanonicalJSON

__all__ = ["insert_rows"]

# Rows per INSERT (SQLite): well under the bound parameters one statement may carry.
ROWS_PER_INSERT = 2000


async def insert_rows(session: AsyncSession, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, every value given) into ``model``'s table.

    Pending ORM changes are flushed first: the rows may refer to them.
    """
    if not rows:
        return
    table = model.__table__
    assert isinstance(table, Table)
    await session.flush()
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        for start in range(0, len(rows), ROWS_PER_INSERT):
            await session.execute(insert(table), rows[start : start + ROWS_PER_INSERT])
        return
    columns = list(rows[0])
    # JSON columns as text, each as its column type writes it (CanonicalJSON: canonical JSON).
    as_json = {
        name: getattr(table.c[name].type, "serialize", json.dumps)
        for name in columns
        if isinstance(table.c[name].type, JSON | CanonicalJSON)
    }
    records = [
        tuple(as_json[name](row[name]) if name in as_json else row[name] for name in columns) for row in rows
    ]
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection  # asyncpg's connection, in this transaction
    await driver.copy_records_to_table(table.name, records=records, columns=columns)
