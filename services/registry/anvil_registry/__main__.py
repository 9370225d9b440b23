"""``python -m anvil_registry`` (or ``anvil-registry``): run, serve, migrate, admin tokens, keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime

from anvil_common.observability import configure_logging
from anvil_common.serving import fail, serve_app

from .settings import RegistrySettings

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name


async def _migrate(settings: RegistrySettings) -> None:
    from .app import migrate_database

    await migrate_database(settings.resolved_database_url(), settings.resolved_schema())


async def _issue_admin_token(settings: RegistrySettings, ttl_hours: int) -> str:
    from .app import build_state
    from .tokens.service import issue_bootstrap_admin

    state = build_state(settings)
    try:
        async with state.db.session() as session:
            token = await issue_bootstrap_admin(session, state, ttl_seconds=ttl_hours * 3600)
    finally:
        await state.db.dispose()
    return token


PROG = "anvil-registry"


def _serve(settings: RegistrySettings) -> None:
    from .app import create_app

    serve_app(create_app(settings), host=settings.host, port=settings.port)


def _run(settings: RegistrySettings, *, seed_demo: bool) -> int:
    """Embedded quickstart: migrate, seed, print the admin token and URLs, serve."""
    asyncio.run(_migrate(settings))
    token_file = settings.data_dir / ADMIN_TOKEN_FILE
    token = token_file.read_text().strip() if token_file.exists() else ""
    if not token or _expired(token):
        token = asyncio.run(_issue_admin_token(settings, ttl_hours=24 * 30))
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(token + "\n")
        os.chmod(token_file, 0o600)
    lines = [f"Anvil registry on {settings.public_url}", f"  data:    {settings.data_dir.resolve()}"]
    if seed_demo:
        from .demo import seed_demo as seed

        lines.extend(asyncio.run(seed(settings)))
    base = settings.public_url.rstrip("/")
    lines += [
        f"  API:     {base}/v1   (OpenAPI {base}/openapi.json, docs {base}/docs)",
        f"  JWKS:    {base}/.well-known/jwks.json",
        f"  admin token (also in {token_file}):",
        f"    {token}",
        f"  try:     curl -H 'Authorization: Bearer '$(cat {token_file}) {base}/v1/orgs",
    ]
    print("\n".join(lines), flush=True)
    _serve(settings)
    return 0


def _expired(token: str) -> bool:
    import json

    from anvil_wire.b64 import b64url_decode

    try:
        claims = json.loads(b64url_decode(token.split(".")[1]))
        return int(claims["exp"]) < datetime.now(UTC).timestamp() + 3600
    except (ValueError, KeyError, IndexError):
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anvil-registry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="migrate, bootstrap an admin token, print it, serve (embedded quickstart)"
    )
    run.add_argument(
        "--seed-demo", action="store_true", help="seed a demo organisation, project and revision"
    )
    sub.add_parser("serve", help="serve the API (migrations must be applied)")
    sub.add_parser("migrate", help="apply the database migrations")
    admin = sub.add_parser("issue-admin-token", help="print a new instance-admin token")
    admin.add_argument("--ttl-hours", type=int, default=12)
    sub.add_parser("rotate-keys", help="add a new signing key; old keys stay published for verification")
    args = parser.parse_args(argv)

    try:
        settings = RegistrySettings()
    except Exception as exc:
        return fail(PROG, f"invalid settings: {exc}".splitlines()[0])
    configure_logging("registry", level=settings.log_level, as_json=settings.log_json)
    try:
        if args.command == "run":
            return _run(settings, seed_demo=args.seed_demo)
        if args.command == "serve":
            _serve(settings)
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
            print("migrations applied", file=sys.stderr)
        elif args.command == "issue-admin-token":
            print(asyncio.run(_issue_admin_token(settings, args.ttl_hours)))
        elif args.command == "rotate-keys":
            from .app import load_keyset

            keyset = load_keyset(settings).rotate()
            keyset.save(settings.resolved_keys_file())
            print(
                f"new active key {keyset.active.kid}; restart the registry to sign with it", file=sys.stderr
            )
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        return fail(PROG, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
