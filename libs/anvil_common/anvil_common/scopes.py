"""The token scopes and what each token kind may hold (docs/api.md sections 3.3 and 3.4).

One table for every service: the registry issues tokens from it, and every service checks a
token's scopes against its kind with it (tests/test_docs.py holds it equal to the docs).
"""

from __future__ import annotations

__all__ = ["SCOPES", "KIND_SCOPES"]

SCOPES = (
    "orgs:admin",
    "projects:read",
    "projects:write",
    "prompts:read",
    "prompts:write",
    "revisions:read",
    "revisions:publish",
    "config:read",
    "events:read",
    "audit:read",
    "tokens:admin",
    "peers:admin",
    "bundles:export",
    "bundles:import",
    "fleet:read",
)
KIND_SCOPES: dict[str, frozenset[str]] = {
    "operator": frozenset(SCOPES),
    "service": frozenset(
        {
            "projects:read",
            "prompts:read",
            "revisions:read",
            "revisions:publish",
            "config:read",
            "events:read",
            "bundles:export",
            "bundles:import",
            "fleet:read",
        }
    ),
    "client": frozenset({"config:read"}),
    "peer": frozenset({"projects:read", "prompts:read", "bundles:export", "bundles:import"}),
}
