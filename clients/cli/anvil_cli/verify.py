"""``anvil config --verify`` and ``--save``: check a revision document with anvil_wire, the way
a client app does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from anvil_wire import KeyError_, RevisionError, VerifiedRevision, public_keys_from_jwks, verify_revision

from .client import JSON, AnvilClient
from .errors import Failure, UsageProblem
from .output import Column, Printer, short_hash

__all__ = ["fetch_verified", "verify_config", "verified_json", "show_verified"]


def _load_jwks(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageProblem(f"cannot read the JWKS file {path}: {exc}") from exc


def verify_config(
    client: AnvilClient, org: str, project: str, env: str, *, jwks_file: str | None = None
) -> VerifiedRevision:
    """Fetch the current document and verify signature, environment binding and every digest."""
    return fetch_verified(client, org, project, env, jwks_file=jwks_file)[1]


def fetch_verified(
    client: AnvilClient, org: str, project: str, env: str, *, jwks_file: str | None = None
) -> tuple[JSON, VerifiedRevision]:
    """``verify_config``, also returning the document as the registry sent it (unchanged)."""
    environment, _ = client.get_environment(org, project, env)
    document, etag = client.get_config(org, project, env)
    jwks = _load_jwks(jwks_file) if jwks_file else client.get_jwks()
    try:
        keys = public_keys_from_jwks(jwks)
        verified = verify_revision(document, keys, environment_id=str(environment["id"]))
    except (KeyError_, RevisionError) as exc:
        raise Failure(f"revision verification failed: {exc}") from exc
    manifest = verified.manifest
    names = (
        manifest.organisation.get("slug"),
        manifest.project.get("slug"),
        manifest.environment.get("name"),
    )
    if names != (org, project, env):
        raise Failure(f"revision verification failed: the document is signed for {'/'.join(map(str, names))}")
    if etag and etag.removeprefix("W/").strip('"') != f"rev-{manifest.revision}":
        raise Failure(
            f"revision verification failed: ETag {etag} but the manifest is revision {manifest.revision}"
        )
    return document, verified


def verified_json(verified: VerifiedRevision) -> JSON:
    manifest = verified.manifest
    return {
        "verified": True,
        "kid": verified.kid,
        "issuer": manifest.issuer,
        "organisation": manifest.organisation.get("slug"),
        "project": manifest.project.get("slug"),
        "environment": dict(manifest.environment),
        "revision": manifest.revision,
        "rollback_of": manifest.rollback_of,
        "created_at": manifest.created_at,
        "prompts": {
            name: {"version": entry.version, "digest": entry.digest, "content": dict(verified.content(name))}
            for name, entry in sorted(manifest.prompts.items())
        },
    }


def _preview(content: Any) -> str:
    template = content.get("template") if isinstance(content, dict) else None
    if isinstance(template, list):
        text = " | ".join(f"{m.get('role')}: {m.get('content')}" for m in template if isinstance(m, dict))
    else:
        text = str(template)
    flat = " ".join(text.split())
    return flat if len(flat) <= 80 else flat[:79] + "…"


def show_verified(printer: Printer, verified: VerifiedRevision) -> None:
    data = verified_json(verified)

    def render() -> None:
        rollback = f", rollback of {data['rollback_of']}" if data["rollback_of"] else ""
        where = f"{data['organisation']}/{data['project']}/{data['environment']['name']}"
        printer.note(f"verified revision {data['revision']} of {where}{rollback} (key {data['kid']})")
        rows = [{"name": k, **v} for k, v in data["prompts"].items()]
        columns: list[Column] = [
            ("PROMPT", "name"),
            ("VERSION", "version"),
            ("DIGEST", lambda r: short_hash(r["digest"])),
            ("TEMPLATE", lambda r: _preview(r["content"])),
        ]
        printer.console.print(printer.table(rows, columns))

    printer.show(data, render)
