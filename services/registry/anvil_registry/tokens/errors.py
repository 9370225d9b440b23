"""Token errors, rendered as problem+json (the ``code`` is the stable part of the ``type``).

Every refused issuance is a 422 with its own type, so a client can tell what to change."""

from __future__ import annotations

from anvil_common.problems import NotFound, ValidationFailed

__all__ = [
    "TokenNotFound",
    "UnknownScope",
    "ScopeNotAllowedForKind",
    "ScopeEscalation",
    "InstanceScopeInOrgToken",
    "OrganisationRequired",
    "OrganisationLimit",
    "LimitEscalation",
    "InvalidLimits",
    "ClientTokenConstraints",
    "TtlTooLong",
    "AudienceNotAllowed",
]


class TokenNotFound(NotFound):
    """Same ``not-found`` type as every other missing resource (also for another org's tokens)."""


class UnknownScope(ValidationFailed):
    code, title = "unknown-scope", "Unknown scope"


class ScopeNotAllowedForKind(ValidationFailed):
    code, title = "scope-not-allowed-for-kind", "Scope not allowed for this kind of token"


class ScopeEscalation(ValidationFailed):
    code, title = "scope-escalation", "Scopes beyond the caller's own"


class InstanceScopeInOrgToken(ValidationFailed):
    code, title = "instance-scope-in-org-token", "Instance-wide scope in an organisation token"


class OrganisationRequired(ValidationFailed):
    code, title = "organisation-required", "Organisation required"


class OrganisationLimit(ValidationFailed):
    code, title = "organisation-limit", "Organisation outside the caller's limit"


class LimitEscalation(ValidationFailed):
    code, title = "limit-escalation", "Project or environment outside the caller's limits"


class InvalidLimits(ValidationFailed):
    code, title = "invalid-token-limits", "Invalid token limits"


class ClientTokenConstraints(ValidationFailed):
    code, title = "client-token-constraints", "Client token constraints"


class TtlTooLong(ValidationFailed):
    code, title = "ttl-too-long", "Lifetime above the kind's maximum"


class AudienceNotAllowed(ValidationFailed):
    code, title = "audience-not-allowed", "Audience not allowed for this kind of token"
