"""``assemble_manifest(..., plain=True)`` (contents ``parse_plain`` found plain): exactly what
the ordinary road gives, the same bytes and the same errors."""

from __future__ import annotations

import copy
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest

from anvil_wire import KeySet, canonical_json
from anvil_wire.bundles import (
    BundleDigestMismatch,
    BundleError,
    BundleMalformed,
    assemble_manifest,
    parse_plain,
    parse_plain_spliced,
    write_bundle,
)

WHEN = datetime(2026, 11, 30, 8, 15, 42, tzinfo=UTC)


def body_member(data: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflater.decompress(data)
    return data[: len(data) - len(inflater.unused_data)]


def test_plain_contents_make_the_same_manifest_and_bundle(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet
) -> None:
    expected_manifest, expected_contents = assemble_manifest(copy.deepcopy(snapshot), exporter=exporter)
    expected = write_bundle(expected_manifest, expected_contents, bundle_keys.active, created_at=WHEN)
    parsed, plain = parse_plain(json.dumps(snapshot, ensure_ascii=False).encode())
    assert plain
    manifest, contents = assemble_manifest(parsed, exporter=exporter, plain=True)
    assert manifest == expected_manifest
    assert contents == expected_contents
    written = write_bundle(manifest, contents, bundle_keys.active, created_at=WHEN)
    assert (written.digest, written.manifest_bytes) == (expected.digest, expected.manifest_bytes)
    assert body_member(written.data) == body_member(expected.data)  # the seal's signature is random


def _break_content(snapshot: dict[str, Any]) -> None:
    snapshot["contents"][sorted(snapshot["contents"])[1]]["template"] += " (edited)"


def _drop_metadata(snapshot: dict[str, Any]) -> None:
    del snapshot["contents"][sorted(snapshot["contents"])[0]]["metadata"]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda s: s.pop("dependencies"), BundleMalformed, "the export snapshot lacks dependencies"),
        (_break_content, BundleDigestMismatch, "does not hash to that digest"),
        (_drop_metadata, BundleDigestMismatch, "not the canonical JSON of a prompt content in normal form"),
        (lambda s: s["projects"].reverse(), BundleMalformed, "projects must be in ascending order"),
        (lambda s: s["dependencies"][0]["to"].update(prompt="header"), BundleMalformed, "cannot resolve to"),
        (
            lambda s: s["contents"].update({next(iter(s["contents"])): ["not", "an", "object"]}),
            BundleMalformed,
            "must be a JSON object",
        ),
    ],
)
def test_plain_contents_are_refused_as_others_are(
    snapshot: dict[str, Any],
    exporter: dict[str, str],
    change: Any,
    error: type[BundleError],
    message: str,
) -> None:
    change(snapshot)
    with pytest.raises(error, match=message):
        assemble_manifest(copy.deepcopy(snapshot), exporter=exporter)
    with pytest.raises(error, match=message):
        assemble_manifest(snapshot, exporter=exporter, plain=True)


def test_spliced_texts_make_the_same_manifest_and_bundle(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet
) -> None:
    expected_manifest, expected_contents = assemble_manifest(copy.deepcopy(snapshot), exporter=exporter)
    expected = write_bundle(expected_manifest, expected_contents, bundle_keys.active, created_at=WHEN)
    # As the registry answers: every content's canonical JSON, spliced into the snapshot.
    head = json.dumps({k: v for k, v in snapshot.items() if k != "contents"})
    spliced = ",".join(
        f"{json.dumps(d)}:{canonical_json(c).decode()}" for d, c in sorted(snapshot["contents"].items())
    )
    parsed, plain, texts = parse_plain_spliced(f'{head[:-1]}, "contents": {{{spliced}}}}}', "contents")
    assert set(texts) == set(snapshot["contents"])
    manifest, contents = assemble_manifest(parsed, exporter=exporter, plain=plain, texts=texts)
    assert (manifest, contents) == (expected_manifest, expected_contents)
    written = write_bundle(manifest, contents, bundle_keys.active, created_at=WHEN)
    assert body_member(written.data) == body_member(expected.data)


def test_a_text_that_is_not_the_canonical_json_of_its_digest_is_encoded_instead(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet
) -> None:
    expected_manifest, expected_contents = assemble_manifest(copy.deepcopy(snapshot), exporter=exporter)
    expected = write_bundle(expected_manifest, expected_contents, bundle_keys.active, created_at=WHEN)
    digests = sorted(snapshot["contents"])
    texts = {
        digests[0]: json.dumps(snapshot["contents"][digests[0]], indent=2),  # valid JSON, not canonical
        digests[1]: canonical_json({"template": "something else"}).decode(),  # another content
    }
    manifest, contents = assemble_manifest(copy.deepcopy(snapshot), exporter=exporter, texts=texts)
    written = write_bundle(manifest, contents, bundle_keys.active, created_at=WHEN)
    assert body_member(written.data) == body_member(expected.data)


def test_a_spliced_text_does_not_excuse_a_content_that_is_not_an_object(
    snapshot: dict[str, Any], exporter: dict[str, str]
) -> None:
    digest = sorted(snapshot["contents"])[0]
    text = canonical_json(snapshot["contents"][digest]).decode()
    snapshot["contents"][digest] = ["not", "an", "object"]
    with pytest.raises(BundleMalformed, match="must be a JSON object"):
        assemble_manifest(snapshot, exporter=exporter, texts={digest: text})
