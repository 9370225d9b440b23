"""Typed httpx clients over the Anvil /v1 APIs (the OpenAPI at /openapi.json is the reference):
:class:`HttpClient` holds what every service shares, :class:`AnvilClient` speaks to the registry
(``anvil_cli.worker.WorkerClient`` to the bundle worker).

Every refusal becomes an :class:`ApiError` carrying the RFC 9457 problem's title, detail,
status and type; network failures become a :class:`Failure`. With ``dry_run`` a mutating
request is built (headers and body exactly as they would be sent) and raised as
:class:`DryRun` instead of being sent; reads still go out.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Self
from urllib.parse import quote

import httpx

from anvil_wire import is_prompt_name

from . import __version__
from .errors import ApiError, Failure, UsageProblem, one_line

__all__ = ["JSON", "HttpClient", "AnvilClient", "DryRun", "check_url", "is_loopback", "problem_error"]

JSON = dict[str, Any]
MAX_PAGE_SIZE = 500
HTTP_HINT = "use https, or --insecure-http / ANVIL_ALLOW_HTTP=1 for local development"


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_http: bool, what: str = "registry URL") -> str:
    """A base URL (``what`` names it in messages), refusing plain http off loopback unless allowed."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UsageProblem(f"invalid {what} {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageProblem(f"{what} must look like https://host[:port], not {url!r}")
    if parsed.scheme == "http" and not allow_http and not is_loopback(parsed.host):
        raise UsageProblem(f"refusing plain http to {parsed.host}: {HTTP_HINT}")
    return url.rstrip("/")


class DryRun(Exception):
    """A mutating request that was built but not sent."""

    def __init__(self, request: httpx.Request) -> None:
        super().__init__(f"{request.method} {request.url}")
        self.request = request

    def describe(self) -> JSON:
        """Method, URL, headers (never the Authorization header) and body (never a token)."""
        headers = {
            k: v for k, v in self.request.headers.items() if k.lower() not in ("authorization", "cookie")
        }
        body: Any = None
        if self.request.content:
            try:
                body = json.loads(self.request.content)
            except ValueError:
                body = self.request.content.decode("utf-8", "replace")
        if isinstance(body, dict) and isinstance(body.get("token"), str):
            body = {**body, "token": "(hidden)"}  # a peer's token is a secret too
        return {
            "dry_run": True,
            "method": self.request.method,
            "url": str(self.request.url),
            "headers": dict(sorted(headers.items())),
            "body": body,
        }


def problem_error(body: Any, status: int) -> ApiError | None:
    """The ApiError of an RFC 9457 problem object (a response body, or a job's recorded error)."""
    if not isinstance(body, Mapping) or "title" not in body:
        return None
    try:
        code = int(body.get("status") or status)
    except (TypeError, ValueError):
        code = status
    return ApiError(
        status=code,
        title=str(body["title"]),
        detail=str(body.get("detail") or ""),
        type_=str(body.get("type") or "about:blank"),
    )


def _problem(response: httpx.Response) -> ApiError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    found = problem_error(body, status)
    if found is not None:
        return found
    return ApiError(
        status=status,
        title=response.reason_phrase or "HTTP error",
        detail=one_line(response.text, 200),
        type_="about:blank",
    )


def _seg(value: str) -> str:
    return quote(value, safe="")


def _prompt(name: str) -> str:
    if not is_prompt_name(name):
        raise UsageProblem(f"{name!r} is not a prompt name (segments of a-z 0-9 . _ - separated by '/')")
    return name


class HttpClient:
    """One service, one token: requests, problems, dry runs. Use as a context manager."""

    service = "registry"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        allow_http: bool = False,
        dry_run: bool = False,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = check_url(url, allow_http=allow_http, what=f"{self.service} URL")
        self.dry_run = dry_run
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"anvil-cli/{__version__}",
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,  # a redirect must never carry the token to another host
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _build(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        json: Any,
        content: bytes | Iterable[bytes] | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Request:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        request = self._http.build_request(
            method, path, params=query, json=json, content=content, headers=headers
        )
        if self.dry_run and method not in ("GET", "HEAD"):
            raise DryRun(request)
        return request

    def _unreachable(self, exc: httpx.HTTPError) -> Failure:
        return Failure(f"cannot reach {self.base_url}: {exc or type(exc).__name__}")

    def _check(self, path: str, response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise _problem(response)
        if response.is_redirect:
            location = response.headers.get("location", "?")
            raise Failure(f"the {self.service} redirected {path} to {location}; use that URL instead")

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request (or raise DryRun for a mutating one); refusals raise ApiError."""
        request = self._build(method, path, params=params, json=json, content=content, headers=headers)
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        self._check(path, response)
        return response

    @contextlib.contextmanager
    def stream(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """A response whose body is read in chunks (``iter_chunks``); refusals raise ApiError."""
        request = self._build(method, path, params=None, json=None, content=None, headers=headers)
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        try:
            if response.status_code >= 400:
                response.read()
            self._check(path, response)
            yield response
        finally:
            response.close()

    def iter_chunks(self, response: httpx.Response, size: int = 256 * 1024) -> Iterator[bytes]:
        """The body of a streamed response; a broken connection is a Failure."""
        try:
            yield from response.iter_bytes(size)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise Failure(f"{method} {path} answered {response.status_code} without a JSON body") from exc

    def items(self, path: str, *, limit: int | None = None, **params: Any) -> list[JSON]:
        """Follow ``next_page_token`` until the list ends or ``limit`` items were read."""
        return list(self._iter_items(path, limit=limit, params=params))

    def _iter_items(self, path: str, *, limit: int | None, params: Mapping[str, Any]) -> Iterator[JSON]:
        seen, token = 0, None
        while True:
            size = MAX_PAGE_SIZE if limit is None else max(1, min(MAX_PAGE_SIZE, limit - seen))
            page = self.json("GET", path, params={**params, "page_size": size, "page_token": token})
            for item in page.get("items", []):
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield item
            token = page.get("next_page_token")
            if not token or (limit is not None and seen >= limit):
                return


class AnvilClient(HttpClient):
    """The registry's /v1 API."""

    service = "registry"

    # -- paths ------------------------------------------------------------------------------

    @staticmethod
    def project_path(org: str, project: str) -> str:
        return f"/v1/orgs/{_seg(org)}/projects/{_seg(project)}"

    def env_path(self, org: str, project: str, env: str) -> str:
        return f"{self.project_path(org, project)}/environments/{_seg(env)}"

    def prompt_path(self, org: str, project: str, name: str) -> str:
        return f"{self.project_path(org, project)}/prompts/{_prompt(name)}"

    # -- organisations, projects, environments ----------------------------------------------

    def list_orgs(self, *, limit: int | None = None) -> list[JSON]:
        return self.items("/v1/orgs", limit=limit)

    def create_org(self, *, slug: str, name: str) -> JSON:
        body: JSON = self.json("POST", "/v1/orgs", json={"slug": slug, "name": name})
        return body

    def list_projects(
        self, org: str, *, include_archived: bool = False, limit: int | None = None
    ) -> list[JSON]:
        path = f"/v1/orgs/{_seg(org)}/projects"
        return self.items(path, limit=limit, include_archived=include_archived or None)

    def create_project(self, org: str, *, slug: str, name: str, description: str = "") -> JSON:
        data = {"slug": slug, "name": name, "description": description}
        body: JSON = self.json("POST", f"/v1/orgs/{_seg(org)}/projects", json=data)
        return body

    def archive_project(self, org: str, project: str) -> JSON:
        body: JSON = self.json("DELETE", self.project_path(org, project))
        return body

    def list_environments(
        self, org: str, project: str, *, include_archived: bool = False, limit: int | None = None
    ) -> list[JSON]:
        path = f"{self.project_path(org, project)}/environments"
        return self.items(path, limit=limit, include_archived=include_archived or None)

    def get_environment(self, org: str, project: str, env: str) -> tuple[JSON, str]:
        """The environment and its ETag (which names its latest revision)."""
        response = self.send("GET", self.env_path(org, project, env))
        return response.json(), response.headers.get("etag", "")

    def create_environment(self, org: str, project: str, *, name: str, description: str = "") -> JSON:
        data = {"name": name, "description": description}
        body: JSON = self.json("POST", f"{self.project_path(org, project)}/environments", json=data)
        return body

    def archive_environment(self, org: str, project: str, env: str) -> JSON:
        body: JSON = self.json("DELETE", self.env_path(org, project, env))
        return body

    # -- prompts ----------------------------------------------------------------------------

    def list_prompts(
        self, org: str, project: str, *, include_archived: bool = False, limit: int | None = None
    ) -> list[JSON]:
        path = f"{self.project_path(org, project)}/prompts"
        return self.items(path, limit=limit, include_archived=include_archived or None)

    def list_prompt_versions(
        self, org: str, project: str, name: str, *, limit: int | None = None
    ) -> list[JSON]:
        return self.items(f"{self.prompt_path(org, project, name)}/versions", limit=limit)

    def get_prompt_version(self, org: str, project: str, name: str, number: int) -> JSON:
        body: JSON = self.json("GET", f"{self.prompt_path(org, project, name)}/versions/{int(number)}")
        return body

    def create_prompt_version(
        self, org: str, project: str, name: str, *, content: JSON, message: str = ""
    ) -> tuple[JSON, bool]:
        """Add a version; False when the content equals the latest version (nothing written)."""
        path = f"{self.prompt_path(org, project, name)}/versions"
        response = self.send("POST", path, json={"content": content, "message": message})
        return response.json(), response.status_code == 201

    # -- revisions --------------------------------------------------------------------------

    def _change(self, path: str, body: JSON, *, if_match: str, idempotency_key: str) -> tuple[JSON, bool]:
        headers = {"If-Match": if_match, "Idempotency-Key": idempotency_key}
        response = self.send("POST", path, json=body, headers=headers)
        return response.json(), response.status_code == 201

    def publish_revision(
        self, org: str, project: str, env: str, body: JSON, *, if_match: str, idempotency_key: str
    ) -> tuple[JSON, bool]:
        """Publish; False when the environment already serves exactly this (no new revision)."""
        path = f"{self.env_path(org, project, env)}/revisions"
        return self._change(path, body, if_match=if_match, idempotency_key=idempotency_key)

    def promote_revision(
        self, org: str, project: str, env: str, body: JSON, *, if_match: str, idempotency_key: str
    ) -> tuple[JSON, bool]:
        path = f"{self.env_path(org, project, env)}/promotions"
        return self._change(path, body, if_match=if_match, idempotency_key=idempotency_key)

    def roll_back(
        self, org: str, project: str, env: str, body: JSON, *, if_match: str, idempotency_key: str
    ) -> tuple[JSON, bool]:
        path = f"{self.env_path(org, project, env)}/rollbacks"
        return self._change(path, body, if_match=if_match, idempotency_key=idempotency_key)

    def list_revisions(self, org: str, project: str, env: str, *, limit: int | None = None) -> list[JSON]:
        return self.items(f"{self.env_path(org, project, env)}/revisions", limit=limit)

    def diff_revisions(self, org: str, project: str, env: str, *, from_: int, to: int | None) -> JSON:
        params = {"from": from_, "to": to}
        body: JSON = self.json("GET", f"{self.env_path(org, project, env)}/diff", params=params)
        return body

    def get_config(self, org: str, project: str, env: str) -> tuple[JSON, str]:
        """The current signed revision document and its ETag ("rev-N")."""
        response = self.send("GET", f"{self.env_path(org, project, env)}/config")
        try:
            document = response.json()
        except ValueError as exc:
            raise Failure("the config document is not JSON") from exc
        return document, response.headers.get("etag", "")

    def get_jwks(self) -> JSON:
        body: JSON = self.json("GET", "/.well-known/jwks.json")
        return body

    # -- tokens and audit -------------------------------------------------------------------

    def issue_token(self, body: JSON) -> JSON:
        issued: JSON = self.json("POST", "/v1/tokens", json=body)
        return issued

    def list_tokens(
        self, *, include_revoked: bool = False, include_expired: bool = False, limit: int | None = None
    ) -> list[JSON]:
        return self.items(
            "/v1/tokens",
            limit=limit,
            include_revoked=include_revoked or None,
            include_expired=include_expired or None,
        )

    def revoke_token(self, token_id: str) -> JSON:
        body: JSON = self.json("DELETE", f"/v1/tokens/{_seg(token_id)}")
        return body

    def list_audit(self, *, limit: int | None = None, **filters: str | None) -> list[JSON]:
        return self.items("/v1/audit", limit=limit, **filters)
