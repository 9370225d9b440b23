"""Client settings, checked once in the constructor: URLs, TLS, the token source, the subscription."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from anvil_wire import is_prompt_name, is_slug
from anvil_wire.b64 import b64url_decode
from anvil_wire.push import Hello, ProtocolError, Sdk, Subscription

from ._errors import AnvilError, ConfigurationError

__all__ = ["Options", "TokenProvider", "TokenSource", "subscription_from"]

TokenProvider = Callable[[], str] | Callable[[], Awaitable[str]]
Transport = Literal["auto", "websocket", "http"]
_SECURE = {"https": "wss", "wss": "wss"}
_INSECURE = {"http": "ws", "ws": "ws"}


def _base_url(url: str, what: str, allow_insecure: bool) -> str:
    """``url`` as an http(s) base URL without trailing slash; https unless ``allow_insecure``."""
    parts = urlsplit(url)
    if (parts.scheme not in _SECURE and parts.scheme not in _INSECURE) or not parts.netloc:
        raise ConfigurationError(f"{what} {url!r} must be an https:// (or wss://) URL")
    if parts.scheme in _INSECURE and not allow_insecure:
        raise ConfigurationError(
            f"{what} {url!r} is not TLS; use https:// (or pass allow_insecure=True for local development)"
        )
    scheme = "https" if parts.scheme in _SECURE else "http"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """The labels as the hello message will carry them; ProtocolError if they break its rules."""
    probe = Hello(
        client_id="00000000-0000-4000-8000-000000000000",
        sdk=Sdk("check", "0"),
        subscription=Subscription("a", "b", "c"),
        labels=dict(labels or {}),
    )
    return dict(probe.labels)


def token_claims(token: str) -> dict[str, Any]:
    """The unverified claims of a JWT (only used to default settings; the gateway verifies it)."""
    try:
        claims = json.loads(b64url_decode(token.split(".")[1]))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True)
class Options:
    """Everything the constructor was given, normalised and checked."""

    url: str
    cache_dir: Path | None
    public_keys: Any
    registry_url: str | None
    organisation: str | None
    project: str | None
    environment: str | None
    prompt_set: str | None
    bootstrap: Path | None
    labels: Mapping[str, str]
    transport: Transport
    allow_insecure: bool
    backoff_base: float
    backoff_cap: float
    connect_timeout: float
    long_poll_seconds: float
    jwks_refresh_seconds: float
    person_retry_seconds: float
    websocket_retry_seconds: float

    @property
    def stream_url(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path, "", "")) + (
            "/v1/stream"
        )

    @classmethod
    def build(cls, url: str, **values: Any) -> Options:
        allow = bool(values["allow_insecure"])
        registry = values["registry_url"]
        if values["public_keys"] is not None and registry is not None:
            raise ConfigurationError("pass public_keys (pinned) or registry_url (fetched), not both")
        for name in ("organisation", "project"):
            if values[name] is not None and not is_slug(values[name]):
                raise ConfigurationError(f"{name} {values[name]!r} is not a slug")
        if values["environment"] is not None and not is_slug(values["environment"]):
            raise ConfigurationError(f"environment {values['environment']!r} is not an environment name")
        if values["prompt_set"] is not None and not is_prompt_name(values["prompt_set"]):
            raise ConfigurationError(f"prompt_set {values['prompt_set']!r} is not a prompt set name")
        if values["transport"] not in ("auto", "websocket", "http"):
            raise ConfigurationError("transport must be 'auto', 'websocket' or 'http'")
        for name in (
            "backoff_base",
            "backoff_cap",
            "connect_timeout",
            "long_poll_seconds",
            "jwks_refresh_seconds",
            "person_retry_seconds",
            "websocket_retry_seconds",
        ):
            if not isinstance(values[name], int | float) or not values[name] > 0:
                raise ConfigurationError(f"{name} must be a positive number")
        labels = values["labels"]
        try:
            values["labels"] = _check_labels(labels)
        except (ProtocolError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigurationError(f"labels: {exc}") from None
        values["url"] = _base_url(url, "url", allow)
        values["registry_url"] = None if registry is None else _base_url(registry, "registry_url", allow)
        return cls(**values)

    def jwks_url(self, issuer: str | None) -> str | None:
        """The registry's JWKS URL: from ``registry_url``, else the token's issuer (also TLS-checked)."""
        base = self.registry_url
        if base is None and issuer:
            base = _base_url(issuer, "the token's issuer (registry URL)", self.allow_insecure)
        return None if base is None else f"{base}/.well-known/jwks.json"


class TokenSource:
    """A fixed token or a provider (sync or async), asked again when the gateway says so."""

    def __init__(self, token: str | TokenProvider) -> None:
        if isinstance(token, str):
            if not token.strip():
                raise ConfigurationError("token is empty")
        elif not callable(token):
            raise ConfigurationError("token must be a string or a callable returning one")
        self._token = token
        self._current: str | None = token if isinstance(token, str) else None

    @property
    def is_provider(self) -> bool:
        return not isinstance(self._token, str)

    @property
    def current(self) -> str | None:
        return self._current

    async def get(self, *, fresh: bool = False) -> str:
        """The token; a provider is called the first time and whenever ``fresh`` is asked."""
        if self._current is not None and not (fresh and self.is_provider):
            return self._current
        provider = self._token
        assert callable(provider)
        if inspect.iscoroutinefunction(provider):
            value = await provider()
        else:
            # A provider may block (a file, a vault): keep it off the event loop.
            value = await asyncio.to_thread(provider)
            if inspect.isawaitable(value):
                value = await value
        if not isinstance(value, str) or not value.strip():
            raise AnvilError("the token provider returned no token")
        self._current = value
        return value


def subscription_from(options: Options, token: str) -> Subscription:
    """The subscription: what was configured, the rest from a client token's limits."""
    claims = token_claims(token)
    values = {
        "organisation": options.organisation or claims.get("org"),
        "project": options.project or claims.get("project"),
        "environment": options.environment or claims.get("environment"),
    }
    missing = [k for k, v in values.items() if not isinstance(v, str) or not v]
    if missing:
        raise ConfigurationError(
            f"no {', '.join(missing)} to subscribe to: "
            "pass them, or use a client token limited to one environment"
        )
    try:
        return Subscription(
            str(values["organisation"]),
            str(values["project"]),
            str(values["environment"]),
            options.prompt_set,
        )
    except ProtocolError as exc:
        raise ConfigurationError(f"the token's limits are not a subscription: {exc}") from None
