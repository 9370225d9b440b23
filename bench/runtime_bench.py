"""Runtime SDK benchmark (``make bench-runtime``): a measurement, not a test; exits 0 when a goal is missed.

(a) ``client.get_prompt(name).render(**vars)`` of a 1 KiB template with 5 variables and one
partial, served by a real ``AsyncAnvilClient`` from a signed bootstrap file (verified like any
revision), against ``str.format`` of the same rendered text with the same 5 fields, in the same
process and run (goal: at most 3x). Best of several timeit repeats for each.

(b) Memory of a client holding a 1 MiB revision (100 prompts of ~10 KiB): the Python heap the
client's state holds (tracemalloc, after the revision is applied and the file bytes are gone)
against the same revision document merely parsed with ``json.loads`` (the baseline).

Prints a markdown table and writes the raw figures to ``.bench/runtime.json``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import sys
import tempfile
import timeit
import tracemalloc
from pathlib import Path
from typing import Any

from anvil_runtime import AsyncAnvilClient
from anvil_wire import (
    KeySet,
    ManifestEntry,
    RevisionManifest,
    canonical_json,
    content_digest,
    normalize_content,
    sign_revision,
)

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT_ID = "7b0c4b7e-0d3f-4e43-9a66-0f6d2a4c1e11"
VARIABLES = {"name": "Ada", "product": "Anvil", "plan": "pro", "day": "Tuesday", "agent": "Sam"}
FILLER = "Please keep answers short, friendly and precise; cite the docs when you can. "


def _content(template: str, variables: list[str]) -> dict[str, Any]:
    return normalize_content({"template": template, "variables": {v: {} for v in variables}})


def _document(prompts: dict[str, tuple[dict[str, Any], dict[str, str]]], keys: KeySet) -> dict[str, Any]:
    entries = {
        name: ManifestEntry(version=1, digest=content_digest(content), partials=partials)
        for name, (content, partials) in prompts.items()
    }
    manifest = RevisionManifest(
        issuer="http://registry.bench",
        organisation={"id": "5d3c2b1a-0f9e-4d8c-b7a6-958473625140", "slug": "acme"},
        project={"id": "1e2d3c4b-5a69-4788-9766-554433221100", "slug": "web"},
        environment={"id": ENVIRONMENT_ID, "name": "prod"},
        revision=1,
        rollback_of=None,
        created_at="2026-12-01T00:00:00Z",
        prompts=entries,
    )
    contents = {content_digest(c): c for c, _ in prompts.values()}
    return sign_revision(manifest, contents, keys.active)


def _render_revision() -> tuple[dict[str, Any], str]:
    """A ~1 KiB template using 5 variables and one partial; and the same text for str.format."""
    body = FILLER * 11  # ~880 characters around the fields
    head = "Hello {{name}}, welcome to {{product}} ({{plan}} plan). "
    tail = "Today is {{day}}; your agent is {{agent}}.\n{{> footer}}"
    footer = "-- The Anvil support team. Replies within one business day."
    main = _content(head + body + tail, list(VARIABLES))
    prompts = {"greeting": (main, {"footer": "footer"}), "footer": (_content(footer, []), {})}
    fmt = (head + body + tail).replace("{{> footer}}", footer).replace("{{", "{").replace("}}", "}")
    return _document(prompts, KEYS), fmt


def _large_revision() -> dict[str, Any]:
    """~1 MiB of contents: 100 prompts of ~10 KiB each."""
    prompts = {}
    for i in range(100):
        text = f"Prompt {i} for {{{{name}}}}. " + (FILLER * 135)[: 10 * 1024]
        prompts[f"prompt-{i:03d}"] = (_content(text, ["name"]), {})
    return _document(prompts, KEYS)


KEYS = KeySet.generate()


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _client(bootstrap: Path) -> AsyncAnvilClient:
    return AsyncAnvilClient(
        _closed_url(),  # no gateway: the bootstrap file is what it serves
        token="bench",
        organisation="acme",
        project="web",
        environment="prod",
        public_keys=KEYS.public_jwks(),
        bootstrap=bootstrap,
        allow_insecure=True,
        backoff_base=5.0,
    )


async def bench_render(workdir: Path) -> dict[str, Any]:
    document, fmt = _render_revision()
    path = workdir / "render.json"
    path.write_bytes(canonical_json(document))
    async with _client(path) as client:
        await client.wait_until_ready(timeout=10)
        expected = fmt.format(**VARIABLES)
        assert client.get_prompt("greeting").render(**VARIABLES) == expected, "renders differ"

        def sdk() -> object:
            return client.get_prompt("greeting").render(**VARIABLES)

        def baseline() -> object:
            return fmt.format(**VARIABLES)

        loops = 100_000
        results = {"sdk": [], "baseline": []}
        for _ in range(7):  # interleaved, so a noisy moment hits both
            results["baseline"].append(timeit.timeit(baseline, number=loops) / loops)
            results["sdk"].append(timeit.timeit(sdk, number=loops) / loops)
    best = {k: min(v) for k, v in results.items()}
    return {
        "template_chars": len(expected),
        "baseline_us": best["baseline"] * 1e6,
        "sdk_us": best["sdk"] * 1e6,
        "ratio": best["sdk"] / best["baseline"],
    }


async def bench_memory(workdir: Path) -> dict[str, Any]:
    document = _large_revision()
    data = canonical_json(document)
    path = workdir / "large.json"
    path.write_bytes(data)
    contents_bytes = len(canonical_json(document["contents"]))
    del document
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    parsed = json.loads(data)
    gc.collect()
    baseline = tracemalloc.get_traced_memory()[0] - before
    del parsed
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    client = _client(path)
    await client.start()
    await client.wait_until_ready(timeout=30)
    await client.close(timeout=5)  # stop connecting; the revision stays held
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert client.revision == 1
    return {
        "revision_bytes": len(data),
        "contents_bytes": contents_bytes,
        "baseline_bytes": baseline,
        "client_bytes": held,
        "ratio": held / baseline,
    }


async def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        render = await bench_render(Path(tmp))
        memory = await bench_memory(Path(tmp))
    print("| measure | SDK | baseline | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| get_prompt().render() of a {render['template_chars']}-char template, 5 variables, 1 partial "
        f"| {render['sdk_us']:.2f} µs | str.format {render['baseline_us']:.2f} µs "
        f"| {render['ratio']:.2f}x | <= 3x |"
    )
    print(
        f"| heap held by a client with a {memory['revision_bytes'] / 2**20:.2f} MiB revision "
        f"| {memory['client_bytes'] / 2**20:.2f} MiB | json.loads {memory['baseline_bytes'] / 2**20:.2f} MiB "
        f"| {memory['ratio']:.2f}x | reported |"
    )
    out = ROOT / ".bench"
    out.mkdir(exist_ok=True)
    (out / "runtime.json").write_text(json.dumps({"render": render, "memory": memory}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
