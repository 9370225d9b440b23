"""The golden example of docs/bundle-format.md section 7: a change here is a format change.

``tests/contract/bundles/example-input.json`` holds the inputs of a small project export and
``example-digest.txt`` the bundle digest the reference writer gives them. Both are pinned: edit
either and this test fails (update the constants below only with a new format version).
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Any

from anvil_wire import KeySet, canonical_json, content_digest, template_references
from anvil_wire.bundles import TrustedKeys, assemble_manifest, read_bundle, write_bundle
from anvil_wire.bundles.archive import object_name

EXAMPLE_DIGEST = Path(__file__).resolve().parents[3] / "tests" / "contract" / "bundles" / "example-digest.txt"
# sha256 of the canonical JSON of example-input.json: the inputs themselves must not drift.
INPUT_SHA256 = "d3ed7417160e20aa04c6f27ca892083ce74abd7d7ae6fdd008332dee15ca6883"
# sha256 of the uncompressed body member (the tar entries before gzip): pins the tar layer of
# section 3.3, which the bundle digest does not cover. Independent of the zlib version.
BODY_TAR_SHA256 = "6868065f2420f14b555f7e5a80d29fed3239ce1c2307201bde9a3bc5ce60da7b"


def golden_digest() -> str:
    return EXAMPLE_DIGEST.read_text(encoding="ascii").strip()


def test_the_example_input_is_unchanged(example_input: dict[str, Any]) -> None:
    assert hashlib.sha256(canonical_json(example_input)).hexdigest() == INPUT_SHA256


def test_the_writer_gives_the_golden_digest(example_input: dict[str, Any], bundle_keys: KeySet) -> None:
    manifest, contents = assemble_manifest(example_input["snapshot"], exporter=example_input["exporter"])
    written = write_bundle(manifest, contents, bundle_keys.active)
    assert golden_digest().startswith("sha256:")
    assert written.digest == golden_digest()
    body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(written.data)
    assert hashlib.sha256(body).hexdigest() == BODY_TAR_SHA256


def test_the_golden_digest_follows_from_the_document_alone(example_input: dict[str, Any]) -> None:
    """Section 2 and 4 by hand, with the plain RFC 8785 encoder: no code of the writer."""
    snapshot, exporter = example_input["snapshot"], example_input["exporter"]
    objects = [
        {"digest": digest, "size": len(canonical_json(content))}
        for digest, content in sorted(snapshot["contents"].items())
    ]
    manifest = {
        "format": "anvil.bundle",
        "version": "1.0",
        "exporter": exporter,
        **{
            key: snapshot[key] for key in ("selection", "options", "organisation", "projects", "dependencies")
        },
        "objects": objects,
    }
    assert "sha256:" + hashlib.sha256(canonical_json(manifest)).hexdigest() == golden_digest()


def test_the_example_covers_what_the_format_describes(example_input: dict[str, Any]) -> None:
    snapshot = example_input["snapshot"]
    assert snapshot["selection"]["kind"] == "project"
    assert snapshot["options"] == {"history": "full", "environments": True}
    for digest, content in snapshot["contents"].items():
        assert content_digest(content) == digest  # the prompt format's content hash
    support = next(p for p in snapshot["projects"] if p["slug"] == "support")
    assert any(len(prompt["versions"]) == 2 for prompt in support["prompts"])
    assert support["prompt_sets"]
    assert support["environments"][0]["revisions"][-1]["kind"] == "rollback"
    roles = {prompt["role"] for project in snapshot["projects"] for prompt in project["prompts"]}
    assert roles == {"selected", "dependency"}
    cross = [d for d in snapshot["dependencies"] if d["to"]["project"] != d["from"]["project"]]
    assert cross
    assert ":" in cross[0]["reference"]
    references = {
        ref.text for content in snapshot["contents"].values() for ref in template_references(content)
    }
    assert references == {d["reference"] for d in snapshot["dependencies"]}


def test_the_golden_bundle_reads_back(
    example_input: dict[str, Any], bundle_keys: KeySet, trust: TrustedKeys
) -> None:
    written = write_bundle(
        *assemble_manifest(example_input["snapshot"], exporter=example_input["exporter"]), bundle_keys.active
    )
    bundle = read_bundle(written.data, trust=trust)
    assert bundle.digest == golden_digest()
    assert bundle.contents == example_input["snapshot"]["contents"]
    assert [object_name(o["digest"]) for o in bundle.manifest["objects"]] == sorted(
        object_name(d) for d in example_input["snapshot"]["contents"]
    )
