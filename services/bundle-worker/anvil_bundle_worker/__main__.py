"""``python -m anvil_bundle_worker`` (or ``anvil-bundle-worker``): api, work, migrate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from anvil_common.observability import configure_logging
from anvil_common.serving import fail, serve_app

from .settings import WorkerSettings

PROG = "anvil-bundle-worker"


def _serve(settings: WorkerSettings) -> None:
    from .app import create_app

    serve_app(create_app(settings), host=settings.host, port=settings.port)


async def _migrate(settings: WorkerSettings) -> None:
    from .app import migrate_database

    await migrate_database(settings.resolved_database_url(), settings.resolved_schema())


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="SQLAlchemy async URL (default: SQLite in the data directory)")
    common.add_argument("--schema", dest="database_schema", help="Postgres schema (default bundle_worker)")
    common.add_argument("--data-dir", help="embedded-mode data directory")
    common.add_argument("--registry-url", help="where the registry's API is")
    common.add_argument("--keys-file", help="the instance key set (the registry's)")
    parser = argparse.ArgumentParser(prog="anvil-bundle-worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    api = sub.add_parser("api", parents=[common], help="serve the HTTP API (migrations must be applied)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    work = sub.add_parser("work", parents=[common], help="run the job loop until SIGTERM")
    work.add_argument("--concurrency", type=int, default=1, help="job loops in this process (default 1)")
    sub.add_parser("migrate", parents=[common], help="apply the database migrations")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("database_url", "database_schema", "data_dir", "registry_url", "keys_file", "host", "port")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = WorkerSettings(**_overrides(args))
    except Exception as exc:
        return fail(PROG, f"invalid settings: {exc}".splitlines()[0])
    configure_logging("bundle-worker", level=settings.log_level, as_json=settings.log_json)
    try:
        if args.command == "api":
            _serve(settings)
        elif args.command == "work":
            if args.concurrency < 1:
                return fail(PROG, "--concurrency must be at least 1")
            from .worker import run_workers

            asyncio.run(run_workers(settings, concurrency=args.concurrency))
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
