"""Fleet view bodies: ``GET /v1/fleet`` items, ``GET /v1/fleet/summary``, and the HTTP client's
``POST /v1/acks`` report (docs/push-protocol.md section 7)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anvil_wire.canonical import MAX_SAFE_INTEGER
from anvil_wire.prompts import NAME_PATTERN, SLUG_PATTERN
from anvil_wire.push import Ack, Hello, Nack, ProtocolError, Sdk, Subscription

from ..models import FleetClient
from .repository import EnvironmentTally, status_of

__all__ = [
    "ClientStatus",
    "NackCode",
    "EnvironmentRef",
    "SdkPublic",
    "RevisionHeld",
    "NackPublic",
    "FleetClientPublic",
    "RevisionSummary",
    "EnvironmentSummary",
    "FleetSummary",
    "SdkIn",
    "SubscriptionIn",
    "ReasonIn",
    "AckReport",
    "UUID_PATTERN",
    "DIGEST_PATTERN",
]

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
Slug = Annotated[str, Field(pattern=f"^{SLUG_PATTERN}$")]
RevisionNumber = Annotated[int, Field(ge=1, le=MAX_SAFE_INTEGER)]
# docs/push-protocol.md section 2.2 (anvil_wire.push.NACK_CODES; a test keeps them equal).
NackCode = Literal[
    "bad-signature",
    "environment-mismatch",
    "digest-mismatch",
    "rollback",
    "invalid-prompt",
    "base-mismatch",
    "internal",
]


class ClientStatus(StrEnum):
    """``connected``: a session holds the client now (an HTTP client: heard from lately);
    ``stale``: connected, but its replica stopped refreshing it; ``disconnected``: its session ended."""

    connected = "connected"
    stale = "stale"
    disconnected = "disconnected"


class EnvironmentRef(BaseModel):
    organisation: str
    project: str
    name: str
    id: str


class SdkPublic(BaseModel):
    name: str
    version: str


class RevisionHeld(BaseModel):
    """The client's last ack: the revision it applied."""

    number: int
    manifest_digest: str
    acked_at: datetime


class NackPublic(BaseModel):
    """The client's last nack: a revision it refused, and why."""

    revision: int
    code: str
    detail: str
    at: datetime


class FleetClientPublic(BaseModel):
    """One client of one environment, as the gateway replicas last wrote it."""

    client_id: str
    environment: EnvironmentRef
    prompt_set: str | None
    sdk: SdkPublic
    labels: dict[str, str]
    replica: str = Field(description="The gateway replica that wrote the row last.")
    transport: Literal["websocket", "http"]
    status: ClientStatus
    connected_at: datetime | None
    last_seen_at: datetime
    revision: RevisionHeld | None
    last_nack: NackPublic | None

    @classmethod
    def of(cls, row: FleetClient, cutoff: datetime) -> FleetClientPublic:
        held = None
        if row.revision is not None and row.manifest_digest is not None and row.acked_at is not None:
            held = RevisionHeld(
                number=row.revision, manifest_digest=row.manifest_digest, acked_at=row.acked_at
            )
        nack = None
        if row.nack_revision is not None and row.nack_code is not None and row.nacked_at is not None:
            nack = NackPublic(
                revision=row.nack_revision, code=row.nack_code, detail=row.nack_detail or "", at=row.nacked_at
            )
        return cls(
            client_id=str(row.client_id),
            environment=EnvironmentRef(
                organisation=row.organisation,
                project=row.project,
                name=row.environment,
                id=str(row.environment_id),
            ),
            prompt_set=row.prompt_set,
            sdk=SdkPublic(name=row.sdk_name, version=row.sdk_version),
            labels=dict(row.labels),
            replica=row.replica,
            transport="http" if row.transport == "http" else "websocket",
            status=ClientStatus(status_of(row, cutoff)),
            connected_at=row.connected_at,
            last_seen_at=row.last_seen_at,
            revision=held,
            last_nack=nack,
        )


class RevisionSummary(BaseModel):
    revision: int
    clients: int = Field(description="Clients whose last ack is this revision.")
    connected: int = Field(description="Of those, the ones connected now.")
    nacks: int = Field(
        description="Clients whose last nack is this revision (and that did not ack it since)."
    )


class EnvironmentSummary(BaseModel):
    environment: EnvironmentRef
    clients: int
    connected: int
    stale: int
    disconnected: int
    without_revision: int = Field(description="Clients that have acked nothing yet.")
    revisions: list[RevisionSummary] = Field(description="Newest first.")

    @classmethod
    def of(cls, tally: EnvironmentTally) -> EnvironmentSummary:
        return cls(
            environment=EnvironmentRef(
                organisation=tally.organisation,
                project=tally.project,
                name=tally.environment,
                id=str(tally.environment_id),
            ),
            clients=tally.clients,
            connected=tally.connected,
            stale=tally.stale,
            disconnected=tally.disconnected,
            without_revision=tally.without_revision,
            revisions=[
                RevisionSummary(revision=number, clients=r.clients, connected=r.connected, nacks=r.nacks)
                for number, r in sorted(tally.revisions.items(), reverse=True)
            ],
        )


class FleetSummary(BaseModel):
    environments: list[EnvironmentSummary]


# -- POST /v1/acks ---------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", strict=True)


class SdkIn(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)


class SubscriptionIn(BaseModel):
    model_config = _STRICT
    organisation: Slug
    project: Slug
    environment: Slug
    prompt_set: str | None = Field(default=None, pattern=f"^{NAME_PATTERN}$", max_length=200)


class ReasonIn(BaseModel):
    model_config = _STRICT
    code: NackCode
    detail: str = Field(max_length=1000)


class AckReport(BaseModel):
    """What an HTTP client applied (``ack``) or refused (``nack``), as in the stream's messages."""

    model_config = _STRICT
    client_id: str = Field(pattern=UUID_PATTERN, description="The client's id (as in `hello`).")
    sdk: SdkIn
    labels: dict[str, str] = Field(default_factory=dict, description="As in `hello`: at most 16.")
    subscription: SubscriptionIn
    status: Literal["ack", "nack"]
    environment_id: str = Field(pattern=UUID_PATTERN)
    revision: RevisionNumber
    manifest_digest: str = Field(pattern=DIGEST_PATTERN)
    reason: ReasonIn | None = Field(default=None, description="Only with `nack`: why the client refused.")

    @model_validator(mode="after")
    def _wire_rules(self) -> AckReport:
        if (self.status == "nack") != (self.reason is not None):
            raise ValueError("reason is required with status nack and not allowed with ack")
        try:
            self.messages()  # the stream's own checks (label keys, lengths), so both agree
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        return self

    def messages(self) -> tuple[Hello, Ack | Nack]:
        """The report as the stream's ``hello`` and ``ack``/``nack`` (ProtocolError if invalid)."""
        sub = self.subscription
        hello = Hello(
            client_id=self.client_id,
            sdk=Sdk(self.sdk.name, self.sdk.version),
            subscription=Subscription(sub.organisation, sub.project, sub.environment, sub.prompt_set),
            labels=dict(self.labels),
        )
        message: Ack | Nack
        if self.reason is None:
            message = Ack(self.environment_id, self.revision, self.manifest_digest)
        else:
            message = Nack(
                self.environment_id, self.revision, self.manifest_digest, self.reason.code, self.reason.detail
            )
        return hello, message
