"""``python -m anvil_push_gateway`` (or ``anvil-push-gateway``): serve, migrate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from anvil_common.observability import configure_logging
from anvil_common.serving import fail, serve_app

from .settings import GatewaySettings

PROG = "anvil-push-gateway"


def _serve(settings: GatewaySettings) -> None:
    from .app import create_app

    app = create_app(settings)
    # SIGTERM: uvicorn stops listening and drains the WebSocket sessions over drain_seconds
    # (transport.py), waiting for them that long and a little more.
    serve_app(
        app,
        host=settings.host,
        port=settings.port,
        graceful_seconds=int(settings.drain_seconds) + 10,
        ws=app.state.push_gateway.stream.protocol_factory,
    )


async def _migrate(settings: GatewaySettings) -> None:
    from .app import migrate_database

    await migrate_database(settings.resolved_database_url(), settings.resolved_schema())


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="SQLAlchemy async URL (default: SQLite in the data directory)")
    common.add_argument("--schema", dest="database_schema", help="Postgres schema (default push_gateway)")
    common.add_argument("--data-dir", help="embedded-mode data directory")
    parser = argparse.ArgumentParser(prog="anvil-push-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", parents=[common], help="serve the API and /v1/stream (migrations applied)"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--registry-url", help="where the registry's API is")
    serve.add_argument("--registry-token-file", help="a file holding the gateway's registry token")
    sub.add_parser("migrate", parents=[common], help="apply the database migrations")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "database_url",
        "database_schema",
        "data_dir",
        "host",
        "port",
        "registry_url",
        "registry_token_file",
    )
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = GatewaySettings(**_overrides(args))
    except Exception as exc:
        return fail(PROG, f"invalid settings: {exc}".splitlines()[0])
    configure_logging("push-gateway", level=settings.log_level, as_json=settings.log_json)
    try:
        if args.command == "serve":
            if settings.registry_token is None and settings.registry_token_file is None:
                return fail(
                    PROG, "no registry token: set ANVIL_PUSH_GATEWAY_REGISTRY_TOKEN or --registry-token-file"
                )
            _serve(settings)
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
            print("migrations applied", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        return fail(PROG, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
