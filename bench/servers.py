"""The servers the registry benchmark runs, each in its own process (``python bench/servers.py``).

* ``trivial``: a raw asyncio server answering every request with fixed bytes; it measures the
  load generator's ceiling for a response of that shape.
* ``bare``: the baselines, a FastAPI app with no middleware and no auth: one endpoint inserting
  a ``prompt_versions`` row with one INSERT (same ``anvil_common.db.Database`` engine settings as
  the registry), one serving fixed config bytes and answering 304 on a matching If-None-Match.
* ``registry``: ``anvil_registry.app.create_app`` on a migrated database.

``bare`` and ``registry`` run under uvicorn with the same options (``UVICORN_OPTIONS``).
"""

# No ``from __future__ import annotations``: FastAPI must resolve the endpoints' annotations,
# which name classes imported inside ``bare_app``.
import argparse
import asyncio
import contextlib
import itertools
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

UVICORN_OPTIONS: dict[str, Any] = {
    "host": "127.0.0.1",
    "log_config": None,
    "access_log": False,
    "ws": "none",
    "lifespan": "on",
    "timeout_graceful_shutdown": 5,
}


class _Fixed(asyncio.Protocol):
    def __init__(self, response: bytes) -> None:
        self.response = response
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # Requests to this server are GETs without a body: one blank line ends each.
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")
        if count:
            self.transport.write(self.response * count)
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]


async def serve_trivial(port: int, response: bytes) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Fixed(response), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def bare_app(
    *, database_url: str, schema: str | None, prompt_id: uuid.UUID, config_body: bytes, etag: str
) -> Any:
    from fastapi import FastAPI, Request, Response
    from pydantic import BaseModel
    from sqlalchemy import insert

    from anvil_common.db import Database, utcnow
    from anvil_registry.models import PromptVersion
    from anvil_wire import digest_of

    db = Database(database_url, schema=schema, application_name="anvil-bench-bare")
    table = PromptVersion.__table__
    numbers = itertools.count(1)
    parent: list[uuid.UUID | None] = [None]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)

    class VersionCreate(BaseModel):
        content: dict[str, Any]
        message: str = ""

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bare/versions", status_code=201)
    async def create_version(data: VersionCreate) -> dict[str, Any]:
        version_id, number, content_hash = uuid.uuid4(), next(numbers), digest_of(data.content)
        async with db.session() as session:
            await session.execute(
                insert(table).values(
                    id=version_id,
                    prompt_id=prompt_id,
                    number=number,
                    content_hash=content_hash,
                    content=data.content,
                    parent_id=parent[0],
                    origin_instance=None,
                    origin_digest=None,
                    message=data.message,
                    created_at=utcnow(),
                    created_by="bench",
                )
            )
        parent[0] = version_id
        return {"number": number, "content_hash": content_hash}

    @app.get("/bare/config")
    async def get_config(request: Request) -> Response:
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(config_body, media_type="application/json", headers=headers)

    return app


def registry_app(
    *, database_url: str, schema: str | None, keys_file: Path, data_dir: Path, public_url: str
) -> Any:
    from anvil_registry.app import create_app
    from anvil_registry.settings import RegistrySettings

    settings = RegistrySettings(
        database_url=database_url,
        database_schema=schema,
        keys_file=keys_file,
        generate_keys=False,
        data_dir=data_dir,
        public_url=public_url,
        log_json=False,
    )
    return create_app(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["trivial", "bare", "registry"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--response-file", type=Path, help="trivial: the bytes to answer")
    parser.add_argument("--database-url")
    parser.add_argument("--schema")
    parser.add_argument("--prompt-id", type=uuid.UUID, help="bare: the prompt its versions belong to")
    parser.add_argument("--config-file", type=Path, help="bare: the config body to serve")
    parser.add_argument("--etag", help="bare: the config's ETag")
    parser.add_argument("--keys-file", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--public-url")
    args = parser.parse_args(argv)

    if args.kind == "trivial":
        asyncio.run(serve_trivial(args.port, args.response_file.read_bytes()))
        return 0
    import uvicorn

    if args.kind == "bare":
        app = bare_app(
            database_url=args.database_url,
            schema=args.schema,
            prompt_id=args.prompt_id,
            config_body=args.config_file.read_bytes(),
            etag=args.etag,
        )
    else:
        app = registry_app(
            database_url=args.database_url,
            schema=args.schema,
            keys_file=args.keys_file,
            data_dir=args.data_dir,
            public_url=args.public_url,
        )
    uvicorn.Server(uvicorn.Config(app, port=args.port, **UVICORN_OPTIONS)).run()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
