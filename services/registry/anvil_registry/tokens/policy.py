"""What a caller may issue: pure rules (no I/O), checked before anything is looked up or written.

Defaults and maxima per kind (``TOKEN_POLICY``):

========  ===========  ===========  ====================================================
kind      default TTL  maximum TTL  audiences (default = all of them)
========  ===========  ===========  ====================================================
operator  12 hours     90 days      anvil-registry, anvil-bundle-worker, anvil-push-gateway
service   30 days      365 days     anvil-registry, anvil-bundle-worker, anvil-push-gateway
client    90 days      365 days     anvil-push-gateway, anvil-registry
peer      30 days      365 days     anvil-bundle-worker, anvil-registry
========  ===========  ===========  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from ..auth import AUDIENCE, KIND_SCOPES, SCOPES, Principal
from .errors import (
    AudienceNotAllowed,
    ClientTokenConstraints,
    InstanceScopeInOrgToken,
    InvalidLimits,
    LimitEscalation,
    OrganisationLimit,
    OrganisationRequired,
    ScopeEscalation,
    ScopeNotAllowedForKind,
    TtlTooLong,
    UnknownScope,
)
from .schemas import TokenCreate

__all__ = ["KindPolicy", "TOKEN_POLICY", "Grant", "decide_grant", "INSTANCE_SCOPES", "CLIENT_SCOPES"]

HOUR = 3600
DAY = 24 * HOUR
BUNDLE_WORKER = "anvil-bundle-worker"
PUSH_GATEWAY = "anvil-push-gateway"
# Scopes that act across organisations, so only tokens without an organisation may hold them.
INSTANCE_SCOPES = frozenset({"orgs:admin"})
CLIENT_SCOPES = frozenset({"config:read"})


@dataclass(frozen=True)
class KindPolicy:
    default_ttl: int
    max_ttl: int
    audiences: frozenset[str]


_ALL_SERVICES = frozenset({AUDIENCE, BUNDLE_WORKER, PUSH_GATEWAY})
TOKEN_POLICY: dict[str, KindPolicy] = {
    "operator": KindPolicy(default_ttl=12 * HOUR, max_ttl=90 * DAY, audiences=_ALL_SERVICES),
    "service": KindPolicy(default_ttl=30 * DAY, max_ttl=365 * DAY, audiences=_ALL_SERVICES),
    "client": KindPolicy(
        default_ttl=90 * DAY, max_ttl=365 * DAY, audiences=frozenset({PUSH_GATEWAY, AUDIENCE})
    ),
    "peer": KindPolicy(
        default_ttl=30 * DAY, max_ttl=365 * DAY, audiences=frozenset({BUNDLE_WORKER, AUDIENCE})
    ),
}


@dataclass(frozen=True)
class Grant:
    """What will be signed, once the organisation, project and environment are found to exist."""

    kind: str
    subject: str
    scopes: tuple[str, ...]
    audience: tuple[str, ...]
    ttl_seconds: int
    org: str | None
    project: str | None
    environment: str | None


def decide_grant(principal: Principal, data: TokenCreate) -> Grant:
    """Apply every issuance rule; raise the first violation (each a 422 with its own type)."""
    _check_tenancy(principal, data)
    scopes = _decide_scopes(principal, data)
    policy = TOKEN_POLICY[data.kind]
    ttl = policy.default_ttl if data.ttl_seconds is None else data.ttl_seconds
    if ttl > policy.max_ttl:
        raise TtlTooLong(
            f"a {data.kind} token lives at most {policy.max_ttl} seconds", max_ttl_seconds=policy.max_ttl
        )
    audience = policy.audiences if data.audience is None else frozenset(data.audience)
    if not audience <= policy.audiences:
        raise AudienceNotAllowed(
            f"a {data.kind} token may only be for {', '.join(sorted(policy.audiences))}",
            allowed=sorted(policy.audiences),
        )
    return Grant(
        kind=data.kind,
        subject=f"{data.kind}:{data.name}",
        scopes=tuple(sorted(scopes)),
        audience=tuple(sorted(audience)),
        ttl_seconds=ttl,
        org=data.org,
        project=data.project,
        environment=data.environment,
    )


def _check_tenancy(principal: Principal, data: TokenCreate) -> None:
    claims = principal.claims
    if data.org is None:
        if not principal.is_instance_admin:
            raise OrganisationRequired("this caller issues tokens for its own organisation only: set org")
        if data.kind not in ("operator", "service"):
            raise OrganisationRequired(f"a {data.kind} token must be limited to an organisation")
    elif claims.org is not None and data.org != claims.org:
        raise OrganisationLimit(f"this caller may only issue tokens for organisation {claims.org!r}")
    if data.project is not None and data.org is None:
        raise InvalidLimits("a project limit needs an organisation")
    if data.environment is not None and data.project is None:
        raise InvalidLimits("an environment limit needs a project")
    if data.kind == "client" and (data.project is None or data.environment is None):
        raise ClientTokenConstraints(
            "a client token is for one environment: set org, project and environment"
        )
    if claims.project is not None and data.project != claims.project:
        raise LimitEscalation(f"this caller may only issue tokens for project {claims.project!r}")
    if claims.environment is not None and data.environment != claims.environment:
        raise LimitEscalation(f"this caller may only issue tokens for environment {claims.environment!r}")


def _decide_scopes(principal: Principal, data: TokenCreate) -> frozenset[str]:
    held = principal.claims.scopes
    allowed = KIND_SCOPES[data.kind] - (INSTANCE_SCOPES if data.org is not None else frozenset())
    if data.scopes is None:
        scopes = allowed & held
        if not scopes:
            raise ScopeEscalation(f"this caller holds none of the scopes a {data.kind} token may carry")
        return scopes
    requested = frozenset(data.scopes)
    unknown = requested - frozenset(SCOPES)
    if unknown:
        raise UnknownScope(f"unknown scopes: {', '.join(sorted(unknown))}", scopes=sorted(unknown))
    if data.kind == "client" and requested != CLIENT_SCOPES:
        raise ClientTokenConstraints("a client token carries exactly ['config:read']")
    beyond_kind = requested - KIND_SCOPES[data.kind]
    if beyond_kind:
        raise ScopeNotAllowedForKind(
            f"a {data.kind} token may not hold {', '.join(sorted(beyond_kind))}", scopes=sorted(beyond_kind)
        )
    if data.org is not None and requested & INSTANCE_SCOPES:
        raise InstanceScopeInOrgToken("orgs:admin is only for tokens without an organisation")
    missing = requested - held
    if missing:
        raise ScopeEscalation(
            f"the caller does not hold {', '.join(sorted(missing))}", scopes=sorted(missing)
        )
    return requested
