"""The push protocol's message layer (docs/push-protocol.md), shared by the gateway and the SDK.

Pure code, no I/O: messages and their canonical encoding, close and nack codes, what a
client needs of a revision, deltas, and the client's verification of a pushed revision.
"""

from .codes import (
    BEARER_PREFIX,
    CLIENT_BUG_CODES,
    NACK_CODES,
    PERSON_CODES,
    RECONNECT_CODES,
    SUBPROTOCOL,
    CloseCode,
    should_reconnect,
)
from .deltas import (
    make_delta,
    make_snapshot,
    manifest_digest,
    narrow_document,
    needed_digests,
    rebuild_document,
    unverified_manifest,
)
from .errors import DeltaError, ProtocolError, PushRefused
from .members import Current, Holds, PromptSetScope, Sdk, Subscription
from .messages import (
    Ack,
    ClientMessage,
    Delta,
    Hello,
    Nack,
    Resync,
    ServerMessage,
    Snapshot,
    Welcome,
    encode,
    message_schema,
    parse_client_message,
    parse_server_message,
)
from .verify import verify_message, verify_pushed

__all__ = [
    "BEARER_PREFIX",
    "CLIENT_BUG_CODES",
    "NACK_CODES",
    "PERSON_CODES",
    "RECONNECT_CODES",
    "SUBPROTOCOL",
    "Ack",
    "ClientMessage",
    "CloseCode",
    "Current",
    "Delta",
    "DeltaError",
    "Hello",
    "Holds",
    "Nack",
    "PromptSetScope",
    "ProtocolError",
    "PushRefused",
    "Resync",
    "Sdk",
    "ServerMessage",
    "Snapshot",
    "Subscription",
    "Welcome",
    "encode",
    "make_delta",
    "make_snapshot",
    "manifest_digest",
    "message_schema",
    "narrow_document",
    "needed_digests",
    "parse_client_message",
    "parse_server_message",
    "rebuild_document",
    "should_reconnect",
    "unverified_manifest",
    "verify_message",
    "verify_pushed",
]
