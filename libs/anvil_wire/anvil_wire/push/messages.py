"""The messages of the push protocol (docs/push-protocol.md section 2), as frozen dataclasses.

Constructing a message checks its members (ProtocolError names the bad one), so what
``encode`` writes is always a valid message; ``parse_client_message`` and
``parse_server_message`` read any JSON text of one and ignore members they do not know.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, partial
from importlib import resources
from typing import Any, ClassVar, TypeVar

from ..canonical import canonical_json
from . import _checks as c
from .codes import NACK_CODES
from .errors import ProtocolError
from .members import Current, Holds, PromptSetScope, Sdk, Subscription

__all__ = [
    "Hello",
    "Ack",
    "Nack",
    "Resync",
    "Welcome",
    "Snapshot",
    "Delta",
    "ClientMessage",
    "ServerMessage",
    "encode",
    "parse_client_message",
    "parse_server_message",
    "message_schema",
]

_M = TypeVar("_M")


def _parse(cls: type[_M], doc: Any, build: Callable[[Callable[[str], Any]], _M]) -> _M:
    """Check that ``doc`` is a ``cls.type`` message and build it, naming the type in errors."""
    name: str = getattr(cls, "type")  # noqa: B009 - a ClassVar of every message class
    if not isinstance(doc, Mapping) or doc.get("type") != name:
        raise ProtocolError(f"expected a message of type {name!r}")
    try:
        return build(partial(c.member, doc, ""))
    except ProtocolError as exc:
        raise ProtocolError(f"{name}: {exc}") from None


def _optional(value: Any, read: Callable[[Any], _M]) -> _M | None:
    return None if value is None else read(value)


@dataclass(frozen=True)
class Hello:
    """Client → gateway: the first message of a connection."""

    type: ClassVar[str] = "hello"
    client_id: str
    sdk: Sdk
    subscription: Subscription
    holds: Holds | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c.uuid(self.client_id, "client_id")
        c.set_member(self, "labels", c.labels(self.labels, "labels"))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "client_id": self.client_id,
            "sdk": self.sdk.to_json(),
            "labels": dict(self.labels),
            "subscription": self.subscription.to_json(),
            "holds": None if self.holds is None else self.holds.to_json(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> Hello:
        return _parse(
            cls,
            doc,
            lambda get: cls(
                client_id=get("client_id"),
                sdk=Sdk.from_json(get("sdk")),
                labels=get("labels"),
                subscription=Subscription.from_json(get("subscription")),
                holds=_optional(get("holds"), Holds.from_json),
            ),
        )


@dataclass(frozen=True)
class Ack:
    """Client → gateway: the client verified and applied a revision."""

    type: ClassVar[str] = "ack"
    environment_id: str
    revision: int
    manifest_digest: str

    def __post_init__(self) -> None:
        c.uuid(self.environment_id, "environment_id")
        c.set_member(self, "revision", c.revision(self.revision, "revision"))
        c.digest(self.manifest_digest, "manifest_digest")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "environment_id": self.environment_id,
            "revision": self.revision,
            "manifest_digest": self.manifest_digest,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Ack:
        return _parse(
            cls, doc, lambda get: cls(get("environment_id"), get("revision"), get("manifest_digest"))
        )

    @classmethod
    def of(cls, message: Snapshot | Delta) -> Ack:
        """The ack of a snapshot or delta the client applied."""
        return cls(message.environment_id, message.revision, message.manifest_digest)


@dataclass(frozen=True)
class Nack:
    """Client → gateway: the client refused a revision (``code`` from NACK_CODES)."""

    type: ClassVar[str] = "nack"
    environment_id: str
    revision: int
    manifest_digest: str
    code: str
    detail: str = ""

    def __post_init__(self) -> None:
        c.uuid(self.environment_id, "environment_id")
        c.set_member(self, "revision", c.revision(self.revision, "revision"))
        c.digest(self.manifest_digest, "manifest_digest")
        if not isinstance(self.code, str) or self.code not in NACK_CODES:
            c.fail("reason.code", "one of " + ", ".join(sorted(NACK_CODES)))
        c.text(self.detail, "reason.detail", maximum=c.MAX_DETAIL)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "environment_id": self.environment_id,
            "revision": self.revision,
            "manifest_digest": self.manifest_digest,
            "reason": {"code": self.code, "detail": self.detail},
        }

    @classmethod
    def from_json(cls, doc: Any) -> Nack:
        def build(get: Callable[[str], Any]) -> Nack:
            reason = partial(c.member, c.json_object(get("reason"), "reason"), "reason.")
            return cls(
                get("environment_id"),
                get("revision"),
                get("manifest_digest"),
                code=reason("code"),
                detail=reason("detail"),
            )

        return _parse(cls, doc, build)

    @classmethod
    def of(cls, message: Snapshot | Delta, code: str, detail: str) -> Nack:
        """The nack of a snapshot or delta, with its members as the message said them."""
        return cls(
            message.environment_id, message.revision, message.manifest_digest, code, detail[: c.MAX_DETAIL]
        )


@dataclass(frozen=True)
class Resync:
    """Client → gateway: send me a full snapshot of the current revision."""

    type: ClassVar[str] = "resync"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type}

    @classmethod
    def from_json(cls, doc: Any) -> Resync:
        return _parse(cls, doc, lambda get: cls())


@dataclass(frozen=True)
class Welcome:
    """Gateway → client: the answer to an accepted ``hello``."""

    type: ClassVar[str] = "welcome"
    session: str
    environment_id: str
    environment_name: str
    current: Current | None
    heartbeat_seconds: float
    max_message_bytes: int

    def __post_init__(self) -> None:
        c.uuid(self.session, "session")
        c.uuid(self.environment_id, "environment.id")
        c.slug(self.environment_name, "environment.name")
        c.positive_number(self.heartbeat_seconds, "heartbeat_seconds")
        c.set_member(
            self, "max_message_bytes", c.positive_integer(self.max_message_bytes, "max_message_bytes")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "session": self.session,
            "environment": {"id": self.environment_id, "name": self.environment_name},
            "current": None if self.current is None else self.current.to_json(),
            "heartbeat_seconds": self.heartbeat_seconds,
            "max_message_bytes": self.max_message_bytes,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Welcome:
        def build(get: Callable[[str], Any]) -> Welcome:
            environment = partial(c.member, c.json_object(get("environment"), "environment"), "environment.")
            return cls(
                session=get("session"),
                environment_id=environment("id"),
                environment_name=environment("name"),
                current=_optional(get("current"), Current.from_json),
                heartbeat_seconds=get("heartbeat_seconds"),
                max_message_bytes=get("max_message_bytes"),
            )

        return _parse(cls, doc, build)


@dataclass(frozen=True)
class Snapshot:
    """Gateway → client: a whole revision document (narrowed to the prompt set, if any)."""

    type: ClassVar[str] = "snapshot"
    environment_id: str
    revision: int
    manifest_digest: str
    document: Mapping[str, Any]
    prompt_set: PromptSetScope | None = None

    def __post_init__(self) -> None:
        c.uuid(self.environment_id, "environment_id")
        c.set_member(self, "revision", c.revision(self.revision, "revision"))
        c.digest(self.manifest_digest, "manifest_digest")
        c.set_member(self, "document", c.document(self.document, "document"))

    def to_json(self) -> dict[str, Any]:
        # The document is not copied: encode() runs once per revision over possibly megabytes.
        return {
            "type": self.type,
            "environment_id": self.environment_id,
            "revision": self.revision,
            "manifest_digest": self.manifest_digest,
            "prompt_set": None if self.prompt_set is None else self.prompt_set.to_json(),
            "document": self.document,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Snapshot:
        return _parse(
            cls,
            doc,
            lambda get: cls(
                environment_id=get("environment_id"),
                revision=get("revision"),
                manifest_digest=get("manifest_digest"),
                prompt_set=_optional(get("prompt_set"), PromptSetScope.from_json),
                document=get("document"),
            ),
        )


@dataclass(frozen=True)
class Delta:
    """Gateway → client: a revision relative to ``base_revision``, which the client holds."""

    type: ClassVar[str] = "delta"
    environment_id: str
    revision: int
    manifest_digest: str
    base_revision: int
    manifest: str
    contents: Mapping[str, Any]
    removed: tuple[str, ...] = ()
    prompt_set: PromptSetScope | None = None

    def __post_init__(self) -> None:
        c.uuid(self.environment_id, "environment_id")
        c.set_member(self, "revision", c.revision(self.revision, "revision"))
        c.digest(self.manifest_digest, "manifest_digest")
        c.set_member(self, "base_revision", c.revision(self.base_revision, "base_revision"))
        if not isinstance(self.manifest, str):
            c.fail("manifest", "a string (a compact JWS)")
        c.set_member(self, "contents", c.contents(self.contents, "contents"))
        c.set_member(self, "removed", c.prompt_names(self.removed, "removed"))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "environment_id": self.environment_id,
            "revision": self.revision,
            "manifest_digest": self.manifest_digest,
            "prompt_set": None if self.prompt_set is None else self.prompt_set.to_json(),
            "base_revision": self.base_revision,
            "manifest": self.manifest,
            "contents": self.contents,
            "removed": list(self.removed),
        }

    @classmethod
    def from_json(cls, doc: Any) -> Delta:
        return _parse(
            cls,
            doc,
            lambda get: cls(
                environment_id=get("environment_id"),
                revision=get("revision"),
                manifest_digest=get("manifest_digest"),
                prompt_set=_optional(get("prompt_set"), PromptSetScope.from_json),
                base_revision=get("base_revision"),
                manifest=get("manifest"),
                contents=get("contents"),
                removed=get("removed"),
            ),
        )


ClientMessage = Hello | Ack | Nack | Resync
ServerMessage = Welcome | Snapshot | Delta
_CLIENT: dict[str, Callable[[Any], ClientMessage]] = {m.type: m.from_json for m in (Hello, Ack, Nack, Resync)}
_SERVER: dict[str, Callable[[Any], ServerMessage]] = {m.type: m.from_json for m in (Welcome, Snapshot, Delta)}


def encode(message: ClientMessage | ServerMessage) -> bytes:
    """The canonical JSON of a message: the bytes of its one text frame."""
    return canonical_json(message.to_json())


def _envelope(data: str | bytes) -> tuple[str, dict[str, Any]]:
    doc = c.load_json(data)
    if not isinstance(doc, dict):
        raise ProtocolError("message must be a JSON object")
    kind = doc.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("message must have a string member 'type'")
    return kind, doc


def parse_client_message(data: str | bytes) -> ClientMessage:
    """Read a client message; ProtocolError (close 4000) for anything that is not a valid one."""
    kind, doc = _envelope(data)
    read = _CLIENT.get(kind)
    if read is None:
        raise ProtocolError(f"unknown client message type {kind[:40]!r}")
    return read(doc)


def parse_server_message(data: str | bytes) -> ServerMessage | None:
    """Read a server message; None for a type this client does not know (section 1)."""
    kind, doc = _envelope(data)
    read = _SERVER.get(kind)
    return None if read is None else read(doc)


@cache
def _schema_text(kind: str) -> str:
    if kind not in _CLIENT and kind not in _SERVER:
        raise KeyError(kind)
    return resources.files("anvil_wire.push").joinpath("schemas", f"{kind}.schema.json").read_text("utf-8")


def message_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of message type ``kind``, a fresh copy."""
    schema: dict[str, Any] = json.loads(_schema_text(kind))
    return schema
