"""FastAPI dependencies: the gateway's state, one transaction per request where one is needed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from .state import GatewayState

__all__ = ["get_state", "state_of", "get_session", "State", "Session"]

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.push_gateway
    return state


async def get_state(request: Request) -> GatewayState:
    """The dependency (async: FastAPI would run a plain function in a worker thread)."""
    return state_of(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    state = state_of(request)
    async with state.db.session(write=request.method not in _READ_METHODS) as session:
        yield session


State = Annotated["GatewayState", Depends(get_state)]
Session = Annotated[AsyncSession, Depends(get_session)]
