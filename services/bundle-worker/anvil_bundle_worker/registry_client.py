"""A typed client for the registry endpoints the worker uses (docs: the registry's OpenAPI).

The worker holds the instance key set, so it signs its own short-lived ``service`` tokens, each
limited to the job's organisation (and project, when the caller was limited to one) and to
the one scope the call needs. A problem+json answer becomes :class:`RegistryProblem`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypedDict
from urllib.parse import quote

import httpx

from anvil_common.jwt import TokenIssuer
from anvil_common.registry_http import (
    RegistryError,
    RegistryHTTP,
    RegistryProblem,
    RegistryUnavailable,
    decoded,
    json_object,
)
from anvil_wire.bundles import parse_plain_spliced

__all__ = [
    "SUBJECT",
    "Selection",
    "SnapshotRequest",
    "SnapshotAnswer",
    "ImportStateRequest",
    "ApplyResult",
    "RegistryError",
    "RegistryProblem",
    "RegistryUnavailable",
    "RegistryClient",
]

SUBJECT = "service:bundle-worker"
AUDIENCE = "anvil-registry"


class Selection(TypedDict):
    kind: Literal["organisation", "project", "prompt_set", "prompts"]
    project: str | None
    prompt_set: str | None
    prompts: list[str] | None


class SnapshotRequest(TypedDict):
    selection: Selection
    history: Literal["latest", "full"]
    environments: bool


class ProjectNames(TypedDict):
    prompts: list[str]
    prompt_sets: list[str]
    environments: list[str]


class ImportStateRequest(TypedDict):
    projects: dict[str, ProjectNames]


class SnapshotAnswer(NamedTuple):
    body: dict[str, Any]  # the snapshot: the manifest members and contents
    plain: bool  # parse_plain: every value in it is plain (its contents need no walk to encode)
    texts: dict[str, str]  # digest -> the JSON text of that content in the answer


@dataclass(frozen=True)
class ApplyResult:
    created: bool  # False: the registry had recorded this import_id already (a replay)
    body: dict[str, Any]


class RegistryClient(RegistryHTTP):
    """``httpx.AsyncClient`` over the registry's /v1 API, authenticated with minted tokens."""

    def __init__(
        self,
        base_url: str,
        *,
        issuer: TokenIssuer,
        token_seconds: int = 300,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, transport=transport)
        self._issuer = issuer
        self._token_seconds = token_seconds

    def service_token(self, *, organisation: str, project: str | None, scope: str) -> str:
        """A token for one call: this organisation (and project), this one scope, 5 minutes."""
        token, _ = self._issuer.issue(
            subject=SUBJECT,
            kind="service",
            audience=AUDIENCE,
            scopes=[scope],
            ttl_seconds=self._token_seconds,
            org=organisation,
            project=project,
        )
        return token

    async def read_snapshot(
        self, organisation: str, request: SnapshotRequest, *, project: str | None = None
    ) -> SnapshotAnswer:
        """B1 ``read_snapshot``: the manifest members of an export, plus every content."""
        response = await self._post(organisation, "snapshot", request, project, "bundles:export")
        texts: dict[str, str] = {}

        def parse() -> tuple[Any, bool]:
            value, plain, spliced = parse_plain_spliced(response.content, "contents")
            texts.update(spliced)
            return value, plain

        return SnapshotAnswer(*decoded(response, parse), texts)

    async def read_import_state(
        self,
        organisation: str,
        request: ImportStateRequest | Mapping[str, Any],
        *,
        project: str | None = None,
    ) -> dict[str, Any]:
        """B2 ``read_import_state``: the target's heads for the names a bundle carries."""
        return await self._post_json(organisation, "import-state", request, project, "bundles:import")

    async def apply_import(
        self, organisation: str, body: dict[str, Any], *, project: str | None = None
    ) -> ApplyResult:
        """B3 ``apply_import``: apply a plan in one registry transaction (201, or 200 replayed)."""
        response = await self._post(organisation, "imports", body, project, "bundles:import")
        return ApplyResult(created=response.status_code == 201, body=json_object(response))

    async def get_prompt_version(
        self, organisation: str, project: str, name: str, number: int, *, limit: str | None = None
    ) -> dict[str, Any]:
        """``get_prompt_version``: one version of a prompt (its ``content`` and ``content_hash``);
        ``limit`` is the project the caller's token was limited to, if any."""
        token = self.service_token(organisation=organisation, project=limit, scope="prompts:read")
        path = (
            f"/v1/orgs/{quote(organisation, safe='')}/projects/{quote(project, safe='')}"
            f"/prompts/{quote(name, safe='/')}/versions/{number}"
        )
        response = await self.send("GET", path, headers={"Authorization": f"Bearer {token}"})
        return json_object(response)

    async def get_jwks(self) -> dict[str, Any]:
        """The registry's public keys (``/.well-known/jwks.json``)."""
        response = await self.send("GET", "/.well-known/jwks.json", headers={})
        return json_object(response)

    async def _post_json(
        self, organisation: str, what: str, body: Any, project: str | None, scope: str
    ) -> dict[str, Any]:
        return json_object(await self._post(organisation, what, body, project, scope))

    async def _post(
        self, organisation: str, what: str, body: Any, project: str | None, scope: str
    ) -> httpx.Response:
        token = self.service_token(organisation=organisation, project=project, scope=scope)
        path = f"/v1/orgs/{quote(organisation, safe='')}/{what}"
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return await self.send("POST", path, headers=headers, content=content)
