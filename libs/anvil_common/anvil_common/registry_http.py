"""What every service's client of the registry's HTTP API shares: errors and the one request path.

A service (the bundle worker, the push gateway) calls the registry with ``httpx``; an answer of
400 or above becomes :class:`RegistryProblem` (with the problem+json body when there is one), a
transport failure or an unreadable answer :class:`RegistryUnavailable`. ``retryable`` says
whether trying again later may help.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

__all__ = [
    "RegistryError",
    "RegistryProblem",
    "RegistryUnavailable",
    "RegistryHTTP",
    "decoded",
    "json_object",
]


class RegistryError(Exception):
    """A registry call that did not give an answer the caller can use."""

    retryable = False


class RegistryProblem(RegistryError):
    """The registry answered with an error (problem+json when it could)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"registry answered {status}: {problem.get('detail') or problem.get('title')}")
        # 5xx and 429 are the registry's trouble, not the request's.
        self.retryable = status >= 500 or status == 429

    @property
    def code(self) -> str:
        return str(self.problem.get("type", "")).removeprefix("urn:anvil:problem:")


class RegistryUnavailable(RegistryError):
    """The registry could not be reached (connection refused, timeout, broken answer)."""

    retryable = True


class RegistryHTTP:
    """``httpx.AsyncClient`` over the registry's base URL, with :meth:`send` mapping failures."""

    def __init__(
        self, base_url: str, *, timeout: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One request; an error status raises RegistryProblem, no answer RegistryUnavailable."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = await self._http.request(
                method, path, headers=headers, content=content, params=params, **extra
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"registry unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise RegistryProblem(response.status_code, _problem(response))
        return response


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"type": "about:blank", "title": response.reason_phrase, "status": response.status_code}


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's body, which must be a JSON object (else RegistryUnavailable)."""
    return decoded(response, lambda: (response.json(), False))[0]


def decoded(response: httpx.Response, parse: Callable[[], tuple[Any, bool]]) -> tuple[dict[str, Any], bool]:
    """The JSON object ``parse`` makes of the response's body, and the flag it gives with it."""
    try:
        body, flag = parse()
    except ValueError as exc:
        raise RegistryUnavailable(
            f"registry answered {response.status_code} with a body that is not JSON"
        ) from exc
    if not isinstance(body, dict):
        raise RegistryUnavailable(f"registry answered {response.status_code} with JSON that is not an object")
    return body, flag
