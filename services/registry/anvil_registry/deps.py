"""FastAPI dependencies: the state, one transaction per request, the caller's identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from .state import RegistryState

__all__ = ["get_state", "get_session", "State", "Session"]

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_state(request: Request) -> RegistryState:
    state: RegistryState = request.app.state.registry
    return state


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    state = get_state(request)
    async with state.db.session(write=request.method not in _READ_METHODS) as session:
        yield session


State = Annotated[RegistryState, Depends(get_state)]
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
