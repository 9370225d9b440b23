"""One connection to the gateway, over a WebSocket or the HTTP fallback, until it ends.

Each ``run_*`` function speaks docs/push-protocol.md for one connection and returns an
``Ended`` saying how it ended; the reconnect policy (backoff, token refresh, switching
transports) is the caller's.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from anvil_wire.push import (
    SUBPROTOCOL,
    Hello,
    PromptSetScope,
    ProtocolError,
    Resync,
    Sdk,
    Snapshot,
    Welcome,
    encode,
    parse_server_message,
)

from ._core import Core
from ._session import Accept, AlreadyHeld, Refuse, Session
from ._version import SDK_NAME, USER_AGENT, __version__

__all__ = ["Ended", "run_http", "run_websocket"]

log = logging.getLogger("anvil_runtime")
MAX_SERVER_MESSAGE = 64 * 1024 * 1024
PROBLEM_PREFIX = "urn:anvil:problem:"

EndKind = Literal["closed", "refused", "blocked", "unreachable", "retry-websocket"]


@dataclass(frozen=True)
class Ended:
    """How a connection ended: ``kind``, the close code or HTTP status, the problem code, words."""

    kind: EndKind
    code: int | None = None
    problem: str | None = None
    detail: str = ""
    welcomed: bool = False

    def describe(self) -> str:
        if self.kind == "closed":
            return f"closed with {self.code}" + (f" ({self.detail})" if self.detail else "")
        if self.kind == "refused":
            return f"refused with {self.code} {self.problem or ''}".rstrip() + (
                f": {self.detail}" if self.detail else ""
            )
        return self.detail or self.kind


def _problem(status: int, content_type: str, body: bytes) -> Ended | None:
    """An Anvil problem+json answer as ``refused``; None if it is not one (a proxy said no)."""
    if not content_type.startswith("application/problem+json"):
        return None
    try:
        doc = json.loads(body)
        kind = doc["type"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(kind, str) or not kind.startswith(PROBLEM_PREFIX):
        return None
    detail = doc.get("detail") if isinstance(doc.get("detail"), str) else ""
    return Ended("refused", status, kind.removeprefix(PROBLEM_PREFIX), detail)


def _hello(core: Core) -> Hello:
    assert core.subscription is not None
    assert core.client_id is not None
    return Hello(
        client_id=core.client_id,
        sdk=Sdk(name=SDK_NAME, version=__version__),
        subscription=core.subscription,
        holds=None if core.current is None else core.current.holds,
        labels=core.options.labels,
    )


async def run_websocket(core: Core, token: str) -> Ended:
    """One WebSocket session: handshake, hello, then revisions until the connection ends."""
    try:
        async with connect(
            core.options.stream_url,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            additional_headers={"Authorization": f"Bearer {token}"},
            user_agent_header=USER_AGENT,
            compression=None,
            max_size=MAX_SERVER_MESSAGE,
            open_timeout=core.options.connect_timeout,
            close_timeout=2,
        ) as connection:
            return await _stream(core, connection)
    except InvalidStatus as exc:
        response = exc.response
        refused = _problem(
            response.status_code, response.headers.get("Content-Type", ""), bytes(response.body or b"")
        )
        return refused or Ended(
            "blocked", response.status_code, detail=f"WebSocket upgrade answered {response.status_code}"
        )
    except InvalidURI as exc:
        return Ended("unreachable", detail=str(exc))
    except InvalidHandshake as exc:
        return Ended("blocked", detail=f"WebSocket handshake failed: {exc}")
    except ConnectionClosed as exc:
        return _closed(exc, welcomed=False)
    except (OSError, TimeoutError) as exc:
        return Ended(
            "unreachable", detail=f"cannot connect to {core.options.stream_url}: {exc or type(exc).__name__}"
        )


def _closed(exc: ConnectionClosed, *, welcomed: bool) -> Ended:
    close = exc.rcvd or exc.sent
    code = close.code if close is not None else 1006
    return Ended(
        "closed", code, detail=close.reason if close is not None else "connection lost", welcomed=welcomed
    )


async def _stream(core: Core, connection: ClientConnection) -> Ended:
    assert core.subscription is not None
    assert core.keys is not None
    session = Session(core.subscription, keys=core.keys.lookup, floor=core.floor, held=core.current)
    welcomed = False
    try:
        await connection.send(encode(_hello(core)).decode())
        async for raw in connection:
            try:
                message = parse_server_message(raw)
            except ProtocolError as exc:
                log.warning("closing: the gateway sent an invalid message (%s)", exc)
                await connection.close(1002, "invalid message")
                return Ended("closed", 1002, detail=f"invalid server message: {exc}", welcomed=welcomed)
            if message is None:
                continue  # a type of a later minor version (section 1)
            if isinstance(message, Welcome):
                welcomed = True
                session.environment_id = message.environment_id
                _welcomed(core, message)
                continue
            if session.environment_id is None:
                await connection.close(1002, "revision before welcome")
                return Ended("closed", 1002, detail="revision before welcome")
            core.gateway_current = (message.environment_id, message.revision, message.manifest_digest)
            outcome = await core.decide(session, message)
            await _act(core, outcome, connection)
    except ConnectionClosed as exc:
        return _closed(exc, welcomed=welcomed)
    code, reason = connection.close_code or 1000, connection.close_reason or ""
    return Ended("closed", code, detail=reason, welcomed=welcomed)


def _welcomed(core: Core, welcome: Welcome) -> None:
    current = welcome.current
    core.connection_up(
        welcome.environment_id, None if current is None else (current.revision, current.manifest_digest)
    )


async def _act(core: Core, outcome: Any, connection: ClientConnection) -> None:
    if isinstance(outcome, Accept):
        await core.apply(outcome.applied, persist=True)
        await connection.send(encode(outcome.ack).decode())
    elif isinstance(outcome, AlreadyHeld):
        core.notify()
        await connection.send(encode(outcome.ack).decode())
    elif isinstance(outcome, Refuse):
        await connection.send(encode(outcome.nack).decode())
        if outcome.resync:
            await connection.send(encode(Resync()).decode())


# -- the HTTP fallback (push-protocol.md section 7) --------------------------------------------


async def run_http(core: Core, token: str, *, until: float | None) -> Ended:
    """Long-poll the gateway's config endpoint until an error, or ``until`` (monotonic) passes."""
    assert core.subscription is not None
    assert core.keys is not None
    sub = core.subscription
    path = f"/v1/orgs/{sub.organisation}/projects/{sub.project}/environments/{sub.environment}/config"
    params: dict[str, Any] = {"wait": core.options.long_poll_seconds}
    if sub.prompt_set:
        params["prompt_set"] = sub.prompt_set
    session = Session(sub, keys=core.keys.lookup, floor=core.floor, held=core.current)
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
    timeout = httpx.Timeout(core.options.connect_timeout, read=core.options.long_poll_seconds + 30)
    welcomed = False
    try:
        async with httpx.AsyncClient(base_url=core.options.url, headers=headers, timeout=timeout) as http:
            while until is None or time.monotonic() < until:
                # "rev-N" names a revision of whichever environment has that name now: only
                # conditional once this session saw which environment id that is. It names the
                # gateway's last answer, applied or refused, so a refused revision is not sent
                # again until a newer one exists.
                seen = core.gateway_current
                conditional = {}
                if seen is not None and session.environment_id == seen[0]:
                    conditional["If-None-Match"] = f'"rev-{seen[1]}"'
                response = await http.get(path, params=params, headers=conditional)
                if response.status_code in (200, 304) or _is_no_revision(response):
                    welcomed = True
                    if not await _polled(core, session, http, response):
                        return Ended("unreachable", 200, detail=core.last_error or "", welcomed=True)
                    continue
                refused = _problem(
                    response.status_code, response.headers.get("Content-Type", ""), response.content
                )
                return refused or Ended(
                    "unreachable", response.status_code, detail=f"config answered {response.status_code}"
                )
    except httpx.HTTPError as exc:
        return Ended(
            "unreachable",
            detail=f"cannot reach {core.options.url}: {exc or type(exc).__name__}",
            welcomed=welcomed,
        )
    return Ended("retry-websocket", welcomed=welcomed)


def _is_no_revision(response: httpx.Response) -> bool:
    return (
        response.status_code == 404
        and response.headers.get("Content-Type", "").startswith("application/problem+json")
        and b"no-revision" in response.content
    )


async def _polled(core: Core, session: Session, http: httpx.AsyncClient, response: httpx.Response) -> bool:
    """Handle one answer of the config endpoint; False if it was unusable (the caller backs off)."""
    if response.status_code == 404:
        core.connection_up("", None)
        return True
    if response.status_code == 304:
        return True
    try:
        message = _snapshot_of(core, response)
    except (ProtocolError, ValueError, KeyError) as exc:
        core.last_error = f"the gateway's config answer is not a revision: {exc}"
        log.warning("%s", core.last_error)
        return False
    session.environment_id = message.environment_id
    core.connection_up(message.environment_id, (message.revision, message.manifest_digest))
    outcome = await core.decide(session, message)
    if isinstance(outcome, Accept):
        await core.apply(outcome.applied, persist=True)
    else:
        core.notify()
    await _report(core, http, outcome)
    return True


def _snapshot_of(core: Core, response: httpx.Response) -> Snapshot:
    assert core.subscription is not None
    headers = response.headers
    scope = None
    if core.subscription.prompt_set is not None:
        served = headers.get("Anvil-Prompt-Set-Prompts", "")
        scope = PromptSetScope(core.subscription.prompt_set, tuple(n for n in served.split(",") if n))
    return Snapshot(
        environment_id=headers["Anvil-Environment-Id"],
        revision=int(headers["Anvil-Revision"]),
        manifest_digest=headers["Anvil-Manifest-Digest"],
        document=response.json(),
        prompt_set=scope,
    )


async def _report(core: Core, http: httpx.AsyncClient, outcome: Any) -> None:
    """POST /v1/acks: what the client did with the revision (the fleet view shows it)."""
    hello = _hello(core)
    message = outcome.nack if isinstance(outcome, Refuse) else outcome.ack
    body: dict[str, Any] = {
        "client_id": hello.client_id,
        "sdk": hello.sdk.to_json(),
        "labels": dict(hello.labels),
        "subscription": hello.subscription.to_json(),
        "status": "nack" if isinstance(outcome, Refuse) else "ack",
        "environment_id": message.environment_id,
        "revision": message.revision,
        "manifest_digest": message.manifest_digest,
    }
    if isinstance(outcome, Refuse):
        body["reason"] = {"code": outcome.nack.code, "detail": outcome.nack.detail}
    try:
        response = await http.post("/v1/acks", json=body)
        if response.status_code != 204:
            log.warning("the gateway did not record the %s: %s", body["status"], response.status_code)
    except httpx.HTTPError as exc:
        log.warning("cannot report the %s to the gateway: %s", body["status"], exc)
