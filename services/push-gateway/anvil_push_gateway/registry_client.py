"""The registry endpoints the gateway follows and reads (docs/api.md sections 5 and 6).

The gateway holds no signing key: it calls the registry with one configured ``service`` token
(settings ``registry_token`` or ``registry_token_file``, read again when the file changes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from anvil_common.registry_http import (
    RegistryError,
    RegistryHTTP,
    RegistryProblem,
    RegistryUnavailable,
    json_object,
)
from anvil_common.revocations import parse_revocations

__all__ = [
    "RegistryClient",
    "RegistryError",
    "RegistryProblem",
    "RegistryUnavailable",
    "FeedReset",
    "EventPage",
    "TokenSource",
    "RolledBack",
]


class FeedReset(RegistryError):
    """The cursor cannot be followed (410 events-expired, 400 cursor-ahead): resync from ``head``."""

    def __init__(self, code: str, head: int) -> None:
        super().__init__(f"event feed answered {code}; resyncing from event {head}")
        self.code = code
        self.head = head


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]
    next_after: int
    head: int


@dataclass(frozen=True)
class RolledBack:
    """The registry's answer to a rollback: the revision it made (or made earlier, replayed)."""

    revision: int
    rollback_of: int
    replayed: bool  # Idempotent-Replayed: the same key was answered before


class TokenSource:
    """The gateway's registry token: fixed, or a file read again whenever it changes."""

    def __init__(self, token: str | None = None, path: Path | None = None) -> None:
        if token is None and path is None:
            raise ValueError("the gateway needs a registry token: set registry_token or registry_token_file")
        self._token = token
        self._path = path
        self._stamp: tuple[int, int] | None = None

    def __call__(self) -> str:
        if self._path is None:
            assert self._token is not None
            return self._token
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._token, self._stamp = self._path.read_text().strip(), stamp
        assert self._token is not None
        return self._token


def _env_path(org: str, project: str, environment: str) -> str:
    return (
        f"/v1/orgs/{quote(org, safe='')}/projects/{quote(project, safe='')}"
        f"/environments/{quote(environment, safe='')}"
    )


class RegistryClient(RegistryHTTP):
    """A typed client over the registry's API, authenticated with the gateway's token."""

    def __init__(
        self,
        base_url: str,
        *,
        token: TokenSource,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, transport=transport)
        self._token = token
        self._timeout = timeout

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token()}"}

    async def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.send("GET", path, headers=self._headers(), **kwargs)

    async def jwks(self) -> dict[str, Any]:
        """The registry's public keys (``/.well-known/jwks.json``)."""
        return json_object(await self.send("GET", "/.well-known/jwks.json", headers={}))

    async def events(self, after: int, *, wait: float, limit: int = 1000) -> EventPage:
        """``list_events`` after a cursor, long-polling up to ``wait`` seconds."""
        params = {"after": after, "wait": wait, "limit": limit}
        try:
            response = await self._get("/v1/events", params=params, timeout=wait + self._timeout)
        except RegistryProblem as exc:
            if exc.code in ("events-expired", "cursor-ahead") and isinstance(exc.problem.get("head"), int):
                raise FeedReset(exc.code, exc.problem["head"]) from exc
            raise
        body = json_object(response)
        events, next_after, head = body.get("events"), body.get("next_after"), body.get("head")
        if not isinstance(events, list) or not isinstance(next_after, int) or not isinstance(head, int):
            raise RegistryUnavailable("registry answered an event page without events, next_after and head")
        return EventPage(events=events, next_after=next_after, head=head)

    async def revocations(self) -> dict[str, float]:
        """Every revoked, unexpired token: jti → its expiry (Unix seconds)."""
        body = json_object(await self._get("/v1/revocations"))
        try:
            return parse_revocations(body)
        except ValueError as exc:
            raise RegistryUnavailable(f"registry answered an unusable revocation list: {exc}") from exc

    async def environment(self, org: str, project: str, environment: str) -> dict[str, Any]:
        """``get_environment``: its id, name, current revision and whether it is archived."""
        return json_object(await self._get(_env_path(org, project, environment)))

    async def revision_document(self, org: str, project: str, environment: str, number: int) -> bytes:
        """``get_revision_document``: the signed revision document's bytes."""
        return (
            await self._get(f"{_env_path(org, project, environment)}/revisions/{number}/document")
        ).content

    async def prompt_set(self, org: str, project: str, name: str) -> list[str]:
        """``get_prompt_set``: the names of its prompts (404 when there is no such set)."""
        path = f"/v1/orgs/{quote(org, safe='')}/projects/{quote(project, safe='')}/prompt-sets/{quote(name)}"
        body = json_object(await self._get(path))
        prompts = body.get("prompts")
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise RegistryUnavailable("registry answered a prompt set without a list of prompt names")
        if body.get("archived_at") is not None:
            raise RegistryProblem(
                404, {"type": "urn:anvil:problem:not-found", "detail": "prompt set archived"}
            )
        return sorted(prompts)

    async def roll_back(
        self,
        org: str,
        project: str,
        environment: str,
        *,
        to_revision: int,
        if_match: str,
        idempotency_key: str,
        message: str = "",
    ) -> RolledBack:
        """``roll_back``: a new revision serving ``to_revision``'s content (api.md section 5),
        conditional on ``If-Match`` and replayed for a known ``Idempotency-Key``."""
        headers = {
            **self._headers(),
            "Content-Type": "application/json",
            "If-Match": if_match,
            "Idempotency-Key": idempotency_key,
        }
        body = json.dumps({"to_revision": to_revision, "message": message}).encode()
        response = await self.send(
            "POST", f"{_env_path(org, project, environment)}/rollbacks", headers=headers, content=body
        )
        answer = json_object(response)
        number, rollback_of = answer.get("number"), answer.get("rollback_of")
        if not isinstance(number, int) or not isinstance(rollback_of, int):
            raise RegistryUnavailable("registry answered a rollback without its number and rollback_of")
        replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        return RolledBack(revision=number, rollback_of=rollback_of, replayed=replayed)
