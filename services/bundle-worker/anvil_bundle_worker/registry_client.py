"""A typed client for the registry endpoints the worker uses (docs: the registry's OpenAPI).

The worker holds the instance key set, so it signs its own short-lived ``service`` tokens, each
limited to the job's organisation (and project, when the caller was limited to one) and to
the one scope the call needs. A problem+json answer becomes :class:`RegistryProblem`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypedDict
from urllib.parse import quote

import httpx

from anvil_common.jwt import TokenIssuer
from anvil_wire.bundles import parse_plain

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


@dataclass(frozen=True)
class ApplyResult:
    created: bool  # False: the registry had recorded this import_id already (a replay)
    body: dict[str, Any]


class RegistryError(Exception):
    """The registry call failed; ``retryable`` says whether trying again may help."""

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


class RegistryClient:
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
        self._issuer = issuer
        self._token_seconds = token_seconds
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._http.aclose()

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
        return SnapshotAnswer(*_decoded(response, lambda: parse_plain(response.content)))

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
        return ApplyResult(created=response.status_code == 201, body=_json_object(response))

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
        response = await self._send("GET", path, headers={"Authorization": f"Bearer {token}"})
        return _json_object(response)

    async def get_jwks(self) -> dict[str, Any]:
        """The registry's public keys (``/.well-known/jwks.json``)."""
        response = await self._send("GET", "/.well-known/jwks.json", headers={})
        return _json_object(response)

    async def _post_json(
        self, organisation: str, what: str, body: Any, project: str | None, scope: str
    ) -> dict[str, Any]:
        return _json_object(await self._post(organisation, what, body, project, scope))

    async def _post(
        self, organisation: str, what: str, body: Any, project: str | None, scope: str
    ) -> httpx.Response:
        token = self.service_token(organisation=organisation, project=project, scope=scope)
        path = f"/v1/orgs/{quote(organisation, safe='')}/{what}"
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return await self._send("POST", path, headers=headers, content=content)

    async def _send(
        self, method: str, path: str, *, headers: dict[str, str], content: bytes | None = None
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, headers=headers, content=content)
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


def _json_object(response: httpx.Response) -> dict[str, Any]:
    return _decoded(response, lambda: (response.json(), False))[0]


def _decoded(response: httpx.Response, parse: Callable[[], tuple[Any, bool]]) -> tuple[dict[str, Any], bool]:
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
