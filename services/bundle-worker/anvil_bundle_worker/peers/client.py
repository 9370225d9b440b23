"""Calls to a peer's bundle worker with the token its registry issued to us.

Errors are problems: PeerUnavailable (unreachable: retry), PeerFailed (a 5xx, a 429, an answer
that is not what the API promises: retry), PeerRefused (a 4xx, or the peer's job failed: the
peer's problem, passed on). The token goes only into the Authorization header of calls to the
peer's URL: it is never logged or put into a problem.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from anvil_common.problems import Problem

from ..bundles.endpoints import MEDIA_TYPE
from ..bundles.errors import BundleTooLarge
from .errors import PeerFailed, PeerNotConfigured, PeerRefused, PeerUnavailable
from .keys import ensure_secure

__all__ = ["PeerClient", "ensure_configured", "retryable", "FINISHED"]

FINISHED = ("succeeded", "failed")


def ensure_configured(
    name: str, url: str | None, token: str | None, *, allow_insecure: bool
) -> tuple[str, str]:
    """The peer's URL and token, which transfers need (422 without them, or for an http URL)."""
    if not url or not token:
        missing = " and no ".join(m for m, v in (("URL", url), ("token", token)) if not v)
        raise PeerNotConfigured(
            f"peer {name} has no {missing}: set it with PATCH /v1/peers/<organisation>/{name}"
        )
    ensure_secure(url, what="URL", allow_insecure=allow_insecure)
    return url, token


def retryable(problem: Problem) -> bool:
    """Whether trying the peer again later may help."""
    return isinstance(problem, (PeerUnavailable, PeerFailed))


class PeerClient:
    """One peer's bundle-worker API (``/v1``), as its ``name`` in this organisation."""

    def __init__(
        self,
        name: str,
        url: str | None,
        token: str | None,
        *,
        timeout: float,
        allow_insecure: bool,
        poll_seconds: float = 1.0,
        wait_seconds: float = 900.0,
    ) -> None:
        url, token = ensure_configured(name, url, token, allow_insecure=allow_insecure)
        self.name = name
        self.poll_seconds = poll_seconds
        self.wait_seconds = wait_seconds
        self._http = httpx.AsyncClient(
            base_url=url,
            timeout=timeout,
            follow_redirects=False,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    async def __aenter__(self) -> PeerClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.aclose()

    # -- the peer's API --------------------------------------------------------------------------

    async def create_import(
        self, data: bytes, *, organisation: str, strategy: str, overrides: dict[str, str], key: str
    ) -> dict[str, Any]:
        """``POST /v1/imports``: the peer validates and plans the bundle (a job)."""
        params = [("organisation", organisation), ("strategy", strategy)]
        params += [("override", f"{ref}={s}") for ref, s in sorted(overrides.items())]
        headers = {"Content-Type": MEDIA_TYPE, "Idempotency-Key": key}
        return await self._json("POST", "/v1/imports", params=params, content=data, headers=headers)

    async def create_export(self, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        """``POST /v1/exports``: the peer builds and seals a bundle (a job)."""
        return await self._json("POST", "/v1/exports", json=body, headers={"Idempotency-Key": key})

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/jobs/{quote(job_id, safe='')}")

    async def get_plan(self, plan_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/plans/{quote(plan_id, safe='')}")

    async def download_bundle(self, digest: str, *, max_bytes: int) -> bytes:
        """``GET /v1/bundles/{digest}``, refused (413) past ``max_bytes``."""
        body = bytearray()
        try:
            async with self._http.stream("GET", f"/v1/bundles/{quote(digest, safe=':')}") as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._problem(response)
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise BundleTooLarge(f"peer {self.name}'s bundle is larger than {max_bytes} bytes")
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return bytes(body)

    async def follow_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """Poll the peer's job until it succeeded (returned) or failed (its problem is raised)."""
        deadline = time.monotonic() + self.wait_seconds
        delay = min(0.05, self.poll_seconds)
        while job.get("status") not in FINISHED:
            if time.monotonic() >= deadline:
                raise PeerFailed(
                    f"peer {self.name}'s job {job.get('id')} is still {job.get('status')} after "
                    f"{self.wait_seconds:g} s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_seconds)
            job = await self.get_job(str(job.get("id")))
        if job["status"] == "failed":
            found = job.get("error")
            error: dict[str, Any] = found if isinstance(found, dict) else {}
            status = error.get("status")
            raise PeerRefused(self.name, status if isinstance(status, int) else 502, error)
        return job

    # -- plumbing ----------------------------------------------------------------------------------

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise self._problem(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PeerFailed(
                f"peer {self.name} answered {method} {path} with something that is not a JSON object"
            )
        return body

    def _unreachable(self, exc: httpx.HTTPError) -> PeerUnavailable:
        return PeerUnavailable(f"peer {self.name} could not be reached: {type(exc).__name__}: {exc}")

    def _problem(self, response: httpx.Response) -> Problem:
        try:
            body = response.json()
        except ValueError:
            body = None
        problem = body if isinstance(body, dict) else {"title": response.reason_phrase}
        if response.status_code >= 500 or response.status_code == 429:
            said = problem.get("detail") or problem.get("title")
            return PeerFailed(f"peer {self.name} answered {response.status_code}: {said}")
        return PeerRefused(self.name, response.status_code, problem)
