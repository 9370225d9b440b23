"""Writing and reading bundles: what the writer makes, the reader gives back, and tar reads."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import anvil_wire.bundles as bundles
from anvil_wire import KeySet, canonical_json
from anvil_wire.bundles import (
    FORMAT_VERSION,
    MEDIA_TYPE,
    Bundle,
    BundleDanglingReference,
    BundleDigestMismatch,
    BundleError,
    BundleMalformed,
    Limits,
    TrustedKeys,
    WrittenBundle,
    assemble_manifest,
    peek_version,
    read_bundle,
    write_bundle,
)
from anvil_wire.bundles.archive import END_OF_ARCHIVE, gzip_member, object_name, tar_entry

WHEN = datetime(2026, 11, 30, 8, 15, 42, tzinfo=UTC)


def members(data: bytes) -> list[bytes]:
    """The gzip members of a bundle, as raw bytes."""
    result = []
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        inflater.decompress(data)
        assert inflater.eof
        end = len(data) - len(inflater.unused_data)
        result.append(data[:end])
        data = data[end:]
    return result


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return archive.getnames()


@pytest.fixture
def written(snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet) -> WrittenBundle:
    manifest, contents = assemble_manifest(snapshot, exporter=exporter)
    return write_bundle(manifest, contents, bundle_keys.active, created_at=WHEN)


def test_public_api_is_exported() -> None:
    for name in bundles.__all__:
        assert hasattr(bundles, name), name
    assert MEDIA_TYPE == "application/vnd.anvil.bundle"
    assert FORMAT_VERSION == "1.0"
    assert issubclass(BundleDanglingReference, BundleError)
    assert issubclass(BundleError, ValueError)


def test_round_trip_gives_back_the_manifest_and_contents(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet, trust: TrustedKeys
) -> None:
    manifest, contents = assemble_manifest(snapshot, exporter=exporter)
    written = write_bundle(manifest, contents, bundle_keys.active, created_at=WHEN)

    bundle = read_bundle(written.data, trust=trust)

    assert isinstance(bundle, Bundle)
    assert bundle.manifest == manifest
    assert bundle.contents == snapshot["contents"]
    assert bundle.digest == written.digest == "sha256:" + hashlib.sha256(written.manifest_bytes).hexdigest()
    assert written.manifest_bytes == canonical_json(manifest)
    assert bundle.size == len(written.data)
    assert bundle.seal is not None
    assert bundle.seal.issuer == exporter["instance"]
    assert bundle.seal.kid == bundle_keys.active.kid
    assert bundle.seal.bundle == written.digest
    assert bundle.seal.created_at == WHEN


def test_manifest_has_format_version_exporter_and_objects(
    snapshot: dict[str, Any], exporter: dict[str, str]
) -> None:
    original = copy.deepcopy(snapshot)
    manifest, contents = assemble_manifest(snapshot, exporter=exporter)

    assert snapshot == original  # the snapshot is not modified
    assert list(manifest) == [
        "format", "version", "exporter", "selection", "options", "organisation", "projects", "dependencies",
        "objects",
    ]  # fmt: skip
    assert manifest["format"] == "anvil.bundle"
    assert manifest["version"] == "1.0"
    assert manifest["exporter"] == exporter
    assert manifest["objects"] == [
        {"digest": digest, "size": len(canonical_json(content))}
        for digest, content in sorted(snapshot["contents"].items())
    ]
    assert contents == snapshot["contents"]


def test_created_at_defaults_to_now_in_utc_to_the_second(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet, trust: TrustedKeys
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    written = write_bundle(*assemble_manifest(snapshot, exporter=exporter), bundle_keys.active)
    after = datetime.now(UTC)

    seal = read_bundle(written.data, trust=trust).seal

    assert seal is not None
    assert before <= seal.created_at <= after
    assert seal.created_at.microsecond == 0
    assert seal.created_at.tzinfo == UTC


def test_created_at_in_another_zone_is_sealed_in_utc(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet, trust: TrustedKeys
) -> None:
    paris = WHEN.astimezone(timezone(timedelta(hours=1)))
    written = write_bundle(
        *assemble_manifest(snapshot, exporter=exporter), bundle_keys.active, created_at=paris
    )

    token = tar_member(written.data, "signature.jws").decode("ascii")
    payload = base64.urlsafe_b64decode(token.split(".")[1] + "==")
    assert json.loads(payload)["created_at"] == "2026-11-30T08:15:42Z"
    seal = read_bundle(written.data, trust=trust).seal
    assert seal is not None
    assert seal.created_at == WHEN


def test_a_naive_created_at_is_refused(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet
) -> None:
    manifest, contents = assemble_manifest(snapshot, exporter=exporter)
    with pytest.raises(ValueError, match="timezone-aware"):
        write_bundle(manifest, contents, bundle_keys.active, created_at=datetime(2026, 1, 1))


def tar_member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        extracted = archive.extractfile(name)
        assert extracted is not None
        return extracted.read()


def test_python_tarfile_lists_and_reads_a_bundle(written: WrittenBundle, snapshot: dict[str, Any]) -> None:
    objects = [object_name(d) for d in sorted(snapshot["contents"])]
    assert tar_names(written.data) == ["anvil-bundle.json", "manifest.json", *objects, "signature.jws"]
    with tarfile.open(fileobj=io.BytesIO(written.data), mode="r:gz") as archive:
        for info in archive.getmembers():
            assert info.isreg()
            assert (info.mode, info.uid, info.gid, info.uname, info.gname, info.mtime) == (
                0o644,
                0,
                0,
                "",
                "",
                0,
            )
    assert tar_member(written.data, "anvil-bundle.json") == b'{"format":"anvil.bundle","version":"1.0"}'
    assert tar_member(written.data, "manifest.json") == written.manifest_bytes
    for digest, content in snapshot["contents"].items():
        assert tar_member(written.data, object_name(digest)) == canonical_json(content)


@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar command on this machine")
def test_tar_command_lists_a_bundle(written: WrittenBundle, snapshot: dict[str, Any]) -> None:
    listed = subprocess.run(
        ["tar", "-tzf", "-"], input=written.data, capture_output=True, check=True
    ).stdout.decode()
    assert listed.split() == tar_names(written.data)
    assert len(listed.split()) == 3 + len(snapshot["contents"])


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("anvil-bundle.json", 41),
        ("manifest.json", 0),
        (f"objects/{'ab' * 32}.json", 1000),
        ("signature.jws", 8**8),
    ],
)
def test_hand_built_headers_equal_tarfiles(name: str, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = (
        size,
        0o644,
        0,
        0,
        0,
        "",
        "",
    )
    header, data, padding = tar_entry(name, bytes(size))
    assert header == info.tobuf(format=tarfile.USTAR_FORMAT)
    assert len(data) == size
    assert (len(header) + len(data) + len(padding)) % 512 == 0
    assert len(padding) < 512


def test_names_and_sizes_a_ustar_header_cannot_hold_are_refused() -> None:
    with pytest.raises(ValueError, match="does not fit a ustar header"):
        tar_entry("x" * 101, b"")


def test_body_and_seal_are_two_gzip_members_with_fixed_headers(written: WrittenBundle) -> None:
    body, seal = members(written.data)
    for member in (body, seal):
        # deflate, no flags (so no file name), mtime 0, XFL 0, OS 255 (unknown)
        assert member[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    sealed = gzip.decompress(seal)
    assert sealed[:13] == b"signature.jws"
    assert sealed.endswith(END_OF_ARCHIVE)
    assert len(gzip.decompress(body)) % 512 == 0


def test_gzip_member_compresses_at_level_6_like_zlib() -> None:
    data = b"".join(tar_entry("manifest.json", b'{"a":1}' * 300))
    member = gzip_member([data[:100], data[100:]])
    assert gzip.decompress(member) == data
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert member[10:-8] == deflate.compress(data) + deflate.flush()


def test_peek_version_reads_only_the_first_entry(written: WrittenBundle) -> None:
    assert peek_version(written.data) == "1.0"
    body = members(written.data)[0]
    assert peek_version(body[: len(body) // 2]) == "1.0"  # the rest may be missing


def test_unsigned_read_without_trust_gives_no_seal(written: WrittenBundle) -> None:
    bundle = read_bundle(written.data, trust=None)
    assert bundle.seal is None
    assert bundle.digest == written.digest


def test_a_retired_key_still_verifies(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet, trust: TrustedKeys
) -> None:
    retired = next(k for k in bundle_keys.keys if k.status == "retired")
    written = write_bundle(*assemble_manifest(snapshot, exporter=exporter), retired, created_at=WHEN)
    seal = read_bundle(written.data, trust=trust).seal
    assert seal is not None
    assert seal.kid == retired.kid


def test_two_exports_of_the_same_content_differ_only_in_the_seal(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet
) -> None:
    first = write_bundle(*assemble_manifest(snapshot, exporter=exporter), bundle_keys.active, created_at=WHEN)
    later = WHEN + timedelta(days=3)
    second = write_bundle(
        *assemble_manifest(snapshot, exporter=exporter), bundle_keys.active, created_at=later
    )
    assert first.digest == second.digest
    assert members(first.data)[0] == members(second.data)[0]
    assert members(first.data)[1] != members(second.data)[1]


def test_writer_validates_a_manifest_it_did_not_assemble(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet, written: WrittenBundle
) -> None:
    manifest, contents = assemble_manifest(snapshot, exporter=exporter)
    copied = copy.deepcopy(manifest)
    again = write_bundle(copied, dict(contents), bundle_keys.active, created_at=WHEN)
    assert members(again.data)[0] == members(written.data)[0]  # ES256 seals are randomised
    assert (again.digest, again.manifest_bytes) == (written.digest, written.manifest_bytes)

    copied["projects"].reverse()
    with pytest.raises(BundleMalformed, match="projects must be in ascending order"):
        write_bundle(copied, contents, bundle_keys.active)

    later = copy.deepcopy(manifest)
    later["version"] = "1.1"
    with pytest.raises(BundleMalformed, match=r"this writer writes bundle format 1\.0"):
        write_bundle(later, contents, bundle_keys.active)


def test_changes_made_after_assembly_never_make_an_inconsistent_bundle(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet, trust: TrustedKeys
) -> None:
    manifest, contents = assemble_manifest(snapshot, exporter=exporter)
    expected = copy.deepcopy((manifest, contents))
    manifest["exporter"]["instance"] = "https://elsewhere.example"
    manifest["objects"].pop()
    next(iter(contents.values()))["metadata"]["late"] = True
    bundle = read_bundle(write_bundle(manifest, contents, bundle_keys.active).data, trust=trust)
    assert (bundle.manifest, bundle.contents) == expected


def test_writer_refuses_contents_that_differ_from_the_objects(
    snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet
) -> None:
    manifest, contents = assemble_manifest(snapshot, exporter=exporter)
    digests = sorted(contents)

    fewer = {d: c for d, c in contents.items() if d != digests[0]}
    with pytest.raises(BundleDigestMismatch, match=f"lists object {digests[0]} but no content"):
        write_bundle(manifest, fewer, bundle_keys.active)

    more = {**contents, "sha256:" + "0" * 64: {"template": "x"}}
    with pytest.raises(BundleDigestMismatch, match="is not listed in the manifest's objects"):
        write_bundle(manifest, more, bundle_keys.active)

    changed = {**contents, digests[0]: {**contents[digests[0]], "metadata": {"changed": True}}}
    with pytest.raises(BundleDigestMismatch, match="does not hash to that digest"):
        write_bundle(manifest, changed, bundle_keys.active)

    wrong_size = copy.deepcopy(manifest)
    wrong_size["objects"][0]["size"] += 1
    with pytest.raises(BundleDigestMismatch, match=r"gives object sha256:\w+ a size of"):
        write_bundle(wrong_size, dict(contents), bundle_keys.active)


def test_assemble_refuses_a_content_that_does_not_hash_to_its_digest(
    snapshot: dict[str, Any], exporter: dict[str, str]
) -> None:
    digest = sorted(snapshot["contents"])[1]
    snapshot["contents"][digest]["template"] += " (edited)"
    with pytest.raises(
        BundleDigestMismatch, match=f"content listed as '{digest}' does not hash to that digest"
    ):
        assemble_manifest(snapshot, exporter=exporter)


def test_assemble_refuses_a_content_not_in_normal_form(
    snapshot: dict[str, Any], exporter: dict[str, str]
) -> None:
    digest = sorted(snapshot["contents"])[0]
    del snapshot["contents"][digest]["metadata"]  # the normal form always has metadata
    with pytest.raises(
        BundleDigestMismatch, match="not the canonical JSON of a prompt content in normal form"
    ):
        assemble_manifest(snapshot, exporter=exporter)


def test_assemble_refuses_missing_and_unnamed_contents(
    snapshot: dict[str, Any], exporter: dict[str, str]
) -> None:
    digest = sorted(snapshot["contents"])[2]
    missing = copy.deepcopy(snapshot)
    del missing["contents"][digest]
    with pytest.raises(
        BundleDigestMismatch, match=f"1 version\\(s\\) have no content in the snapshot, first '{digest}'"
    ):
        assemble_manifest(missing, exporter=exporter)

    extra = copy.deepcopy(snapshot)
    stray = {"template": "unused", "variables": {}, "model": None, "metadata": {}}
    extra["contents"]["sha256:" + hashlib.sha256(canonical_json(stray)).hexdigest()] = stray
    with pytest.raises(BundleDigestMismatch, match="1 content\\(s\\) are not named by any listed version"):
        assemble_manifest(extra, exporter=exporter)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda s: s.pop("dependencies"), BundleMalformed, "the export snapshot lacks dependencies"),
        (lambda s: s.update(contents=[]), BundleMalformed, "contents must map digests to contents"),
        (lambda s: s["projects"].reverse(), BundleMalformed, "projects must be in ascending order"),
        (lambda s: s["dependencies"].reverse(), BundleMalformed, "dependencies must be in ascending order"),
        (lambda s: s["dependencies"][0]["to"].update(prompt="header"), BundleMalformed, "cannot resolve to"),
        (
            lambda s: s["contents"].update({next(iter(s["contents"])): ["not", "an", "object"]}),
            BundleMalformed,
            "must be a JSON object",
        ),
        (
            lambda s: s["contents"].update({next(iter(s["contents"])): {"template": float("nan")}}),
            BundleMalformed,
            "not representable as canonical JSON",
        ),
    ],
)
def test_assemble_refuses_a_bad_snapshot(
    snapshot: dict[str, Any], exporter: dict[str, str], change: Any, error: type[BundleError], message: str
) -> None:
    change(snapshot)
    with pytest.raises(error, match=message):
        assemble_manifest(snapshot, exporter=exporter)


def test_assemble_refuses_an_empty_exporter(snapshot: dict[str, Any]) -> None:
    with pytest.raises(BundleMalformed, match=r"exporter\.instance is empty"):
        assemble_manifest(snapshot, exporter={"instance": "", "software": "x/1"})


def test_limits_default_to_the_documented_values() -> None:
    limits = Limits()
    mib = 1024 * 1024
    assert (limits.max_compressed, limits.max_uncompressed) == (64 * mib, 512 * mib)
    assert (limits.max_ratio, limits.max_entries) == (200, 100_001)


def test_a_large_export_round_trips(bundle_keys: KeySet) -> None:
    """Latest history with ancestors, many prompts, non-ASCII text: 500 objects."""
    exporter = {"instance": "https://big.example", "software": "test/1"}
    contents: dict[str, dict[str, Any]] = {}
    prompts = []
    for i in range(500):
        content = {
            "template": f"Prompt n° {i} ✓ " + "x" * 900,
            "variables": {},
            "model": None,
            "metadata": {},
        }
        digest = "sha256:" + hashlib.sha256(canonical_json(content)).hexdigest()
        contents[digest] = content
        version = {"number": 3, "digest": digest, "message": ""}
        ancestors = ["sha256:" + hashlib.sha256(b"%d-%d" % (i, n)).hexdigest() for n in (1, 2)]
        prompts.append(
            {"name": f"p{i:04d}", "description": "", "archived": i % 7 == 0, "role": "selected",
             "versions": [version], "ancestors": ancestors}
        )  # fmt: skip
    snapshot = {
        "selection": {"kind": "organisation", "project": None, "prompt_set": None, "prompts": None},
        "options": {"history": "latest", "environments": False},
        "organisation": {"slug": "big", "name": "Big"},
        "projects": [
            {
                "slug": "p",
                "name": "P",
                "description": "",
                "prompts": prompts,
                "prompt_sets": [],
                "environments": [],
            }
        ],
        "dependencies": [],
        "contents": dict(reversed(contents.items())),
    }
    written = write_bundle(*assemble_manifest(snapshot, exporter=exporter), bundle_keys.active)
    keys = bundle_keys.public_keys()
    bundle = read_bundle(
        written.data, trust=lambda issuer, kid: keys.get(kid), limits=Limits(max_entries=503)
    )
    assert bundle.contents == contents
    assert len(tar_names(written.data)) == 503


def test_any_gzip_member_layout_reads_the_same(written: WrittenBundle, trust: TrustedKeys) -> None:
    """The reader inflates the members as one stream (section 3): recompressed by another tool,
    or split at odd places, a bundle has the same digest."""
    tar_bytes = gzip.decompress(written.data)
    for data in (
        gzip.compress(tar_bytes, compresslevel=9, mtime=1_700_000_000),
        b"".join(gzip_member([tar_bytes[i : i + 777]]) for i in range(0, len(tar_bytes), 777)),
    ):
        assert read_bundle(data, trust=trust).digest == written.digest


def test_the_bundle_package_needs_nothing_but_cryptography() -> None:
    """anvil_wire is shared with the CLI and the runtime SDK: the standard library and
    ``cryptography`` only (a fresh interpreter, so that no other test's imports count)."""
    code = (
        "import sys, anvil_wire.bundles\n"
        "tops = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(t for t in tops if t not in sys.stdlib_module_names and not t.startswith('_')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True).stdout
    assert out.strip() == "['anvil_wire', 'cryptography']"
