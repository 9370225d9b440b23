"""A corpus of hostile and broken bundles (section 3.2): each is refused with its code and a
message that says what is wrong. The corpus is generated here from the golden example, so every
case differs from a valid bundle by exactly the defect it names."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from anvil_wire import TYP_REVISION_MANIFEST, KeySet, SigningKey, canonical_json, sign, sign_document
from anvil_wire.b64 import b64url_encode
from anvil_wire.bundles import (
    FORMAT_VERSION,
    BundleDanglingReference,
    BundleDigestMismatch,
    BundleError,
    BundleMalformed,
    BundleSignatureInvalid,
    BundleTooLarge,
    BundleUnsigned,
    BundleUntrustedKey,
    BundleVersionUnsupported,
    Limits,
    TrustedKeys,
    assemble_manifest,
    make_seal,
    peek_version,
    read_bundle,
)
from anvil_wire.bundles.archive import END_OF_ARCHIVE, gzip_member, object_name, tar_entry
from anvil_wire.bundles.inflate import BoundedStream

WHEN = datetime(2026, 11, 30, 8, 15, 42, tzinfo=UTC)
Entry = tuple[str, bytes] | bytes  # (name, data) for a regular file, or raw tar bytes


def raw_entry(info: tarfile.TarInfo, data: bytes = b"", fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    """Any tar entry tarfile can describe (links, directories, GNU and pax headers...)."""
    info.size = len(data)
    return info.tobuf(format=fmt) + data + bytes(-len(data) % 512)


def typed(name: str, kind: bytes, linkname: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return raw_entry(info)


def tar(entries: Sequence[Entry]) -> bytes:
    return b"".join(e if isinstance(e, bytes) else b"".join(tar_entry(*e)) for e in entries)


def craft_jws(header: dict[str, Any], payload: bytes, key: SigningKey) -> bytes:
    """A JWS with any header, really signed with ``key``."""
    signing_input = b64url_encode(json.dumps(header).encode()) + "." + b64url_encode(payload)
    r, s = decode_dss_signature(key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return (signing_input + "." + b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).encode()


@dataclass
class Forge:
    """A bundle taken apart: change any part, then ``build`` it (sealed for the current manifest)."""

    manifest: dict[str, Any]
    objects: dict[str, bytes]  # digest -> raw bytes of the object entry
    key: SigningKey
    version: bytes = b'{"format":"anvil.bundle","version":"1.0"}'
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return str(self.manifest["exporter"]["instance"])

    def manifest_bytes(self) -> bytes:
        return canonical_json(self.manifest)

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest_bytes()).hexdigest()

    def entries(self) -> list[Entry]:
        return [
            ("anvil-bundle.json", self.version),
            ("manifest.json", self.manifest_bytes()),
            *[(object_name(d), self.objects[d]) for d in sorted(self.objects)],
        ]

    def seal(self) -> bytes:
        return make_seal(self.digest(), self.issuer, self.key, WHEN)

    def build(
        self, entries: Sequence[Entry] | None = None, *, seal: bytes | None = b"", tail: bytes = b""
    ) -> bytes:
        """Body member, then the seal member (``seal=None``: none; ``b""``: a valid one)."""
        body = gzip_member([tar(self.entries() if entries is None else entries)])
        sealed = [("signature.jws", seal or self.seal())] if seal is not None else []
        return body + gzip_member([tar(sealed), END_OF_ARCHIVE]) + tail

    def replace_object(self, digest: str, data: bytes) -> str:
        """Put ``data`` in place of an object everywhere the manifest names it; its new digest."""
        new = "sha256:" + hashlib.sha256(data).hexdigest()
        self.manifest = json.loads(json.dumps(self.manifest).replace(digest, new))
        for entry in self.manifest["objects"]:
            if entry["digest"] == new:
                entry["size"] = len(data)
        self.manifest["objects"].sort(key=lambda o: o["digest"])
        del self.objects[digest]
        self.objects[new] = data
        return new


@pytest.fixture
def forge(snapshot: dict[str, Any], exporter: dict[str, str], bundle_keys: KeySet) -> Forge:
    manifest, contents = assemble_manifest(snapshot, exporter=exporter)
    return Forge(manifest, {d: canonical_json(c) for d, c in contents.items()}, bundle_keys.active)


def refused(
    data: bytes, error: type[BundleError], message: str, trust: TrustedKeys | None, **kw: Any
) -> None:
    with pytest.raises(error, match=message) as caught:
        read_bundle(data, trust=trust, **kw)
    assert type(caught.value) is error
    assert caught.value.code == error.code


def test_the_unmodified_forge_makes_a_valid_bundle(forge: Forge, trust: TrustedKeys) -> None:
    bundle = read_bundle(forge.build(), trust=trust)
    assert bundle.digest == forge.digest()


# --- Not a bundle at all -------------------------------------------------------------------


def first_objects(f: Forge) -> list[str]:
    return [object_name(d) for d in sorted(f.objects)]


def with_header_byte(entry: bytes, offset: int, value: bytes) -> bytes:
    return entry[:offset] + value + entry[offset + 1 :]


def version_then(f: Forge, *rest: Entry) -> list[Entry]:
    return [("anvil-bundle.json", f.version), *rest]


def gnu_long_name() -> bytes:
    return raw_entry(tarfile.TarInfo("objects/" + "a" * 100 + ".json"), b"{}", tarfile.GNU_FORMAT)


def pax_header() -> bytes:
    info = tarfile.TarInfo("manifest.json")
    info.pax_headers = {"comment": "smuggled"}
    return raw_entry(info, b"{}", tarfile.PAX_FORMAT)


Case = tuple[Callable[[Forge], bytes], type[BundleError], str]

ARCHIVE_CASES: dict[str, Case] = {
    "empty file": (lambda f: b"", BundleMalformed, "not a bundle: the file is empty"),
    "not gzip": (
        lambda f: b"PK\x03\x04" + bytes(200),
        BundleMalformed,
        "not a bundle: the file is not gzip-compressed",
    ),
    "truncated gzip": (lambda f: f.build()[:900], BundleMalformed, "the archive is truncated"),
    "truncated seal member": (lambda f: f.build()[:-3], BundleMalformed, "the archive is truncated"),
    "corrupt gzip": (
        lambda f: (lambda d: d[:700] + bytes([d[700] ^ 0xFF]) + d[701:])(f.build()),
        BundleMalformed,
        "the gzip stream is corrupt: gzip member 1",
    ),
    "not tar": (
        lambda f: gzip_member([b"hello, world\n" * 100]),
        BundleMalformed,
        "not a tar archive: bad checksum field",
    ),
    "bad header checksum": (
        lambda f: f.build(
            [*version_then(f), with_header_byte(tar([("manifest.json", f.manifest_bytes())]), 140, b"7")]
        ),
        BundleMalformed,
        "not a tar archive: an entry header has a bad checksum",
    ),
    "GNU long-name header": (
        lambda f: f.build(version_then(f, gnu_long_name())),
        BundleMalformed,
        "not a POSIX ustar archive: an entry header has another magic",
    ),
    "pax extended header": (
        lambda f: f.build(version_then(f, pax_header())),
        BundleMalformed,
        "is a pax extended header; a bundle holds only regular files",
    ),
    "symbolic link": (
        lambda f: f.build(version_then(f, typed("manifest.json", tarfile.SYMTYPE, "/etc/passwd"))),
        BundleMalformed,
        "entry 'manifest.json' is a symbolic link; a bundle holds only regular files",
    ),
    "hard link": (
        lambda f: f.build(version_then(f, typed("manifest.json", tarfile.LNKTYPE, "anvil-bundle.json"))),
        BundleMalformed,
        "is a hard link",
    ),
    "directory": (
        lambda f: f.build(version_then(f, typed("objects/", tarfile.DIRTYPE))),
        BundleMalformed,
        "entry 'objects/' is a directory",
    ),
    "device": (
        lambda f: f.build(version_then(f, typed("manifest.json", tarfile.CHRTYPE))),
        BundleMalformed,
        "is a character device",
    ),
    "FIFO": (
        lambda f: f.build(version_then(f, typed("manifest.json", tarfile.FIFOTYPE))),
        BundleMalformed,
        "is a FIFO",
    ),
    "absolute path": (
        lambda f: f.build(version_then(f, ("/etc/passwd", b"root"))),
        BundleMalformed,
        "entry name '/etc/passwd' is an absolute path",
    ),
    "dot-dot": (
        lambda f: f.build(version_then(f, ("objects/../../.bashrc", b"x"))),
        BundleMalformed,
        "climbs out of the archive with '..'",
    ),
    "backslash": (
        lambda f: f.build(version_then(f, ("objects\\..\\evil.json", b"x"))),
        BundleMalformed,
        "contains a backslash",
    ),
    "unknown entry": (
        lambda f: f.build(version_then(f, ("README.txt", b"hi"))),
        BundleMalformed,
        "entry name 'README.txt' is not a bundle entry; a bundle holds only anvil-bundle.json",
    ),
    "object name in capitals": (
        lambda f: f.build(version_then(f, ("objects/" + "A" * 64 + ".json", b"{}"))),
        BundleMalformed,
        "is not objects/<64 lowercase hex digits>.json",
    ),
    "duplicate entry": (
        lambda f: f.build([*f.entries()[:2], ("manifest.json", f.manifest_bytes()), *f.entries()[2:]]),
        BundleMalformed,
        "entry 'manifest.json' appears twice",
    ),
    "duplicate object": (
        lambda f: f.build([*f.entries(), f.entries()[-1]]),
        BundleMalformed,
        "entry 'objects/[0-9a-f]{64}.json' appears twice",
    ),
    "objects out of order": (
        lambda f: f.build([*f.entries()[:2], *reversed(f.entries()[2:])]),
        BundleMalformed,
        "entries out of order: 'objects/[0-9a-f]{64}.json' comes after 'objects/",
    ),
    "manifest after the objects": (
        lambda f: f.build([f.entries()[0], *f.entries()[2:], f.entries()[1]]),
        BundleMalformed,
        "entries out of order: 'manifest.json' comes after",
    ),
    "first entry not anvil-bundle.json": (
        lambda f: f.build([f.entries()[1], f.entries()[0], *f.entries()[2:]]),
        BundleMalformed,
        "the first entry must be anvil-bundle.json, not 'manifest.json'",
    ),
    "no anvil-bundle.json": (
        lambda f: f.build(f.entries()[2:]),
        BundleMalformed,
        "the first entry must be anvil-bundle.json, not 'objects/",
    ),
    "empty archive": (lambda f: gzip_member([END_OF_ARCHIVE]), BundleMalformed, "the archive is empty"),
    "no end-of-archive blocks": (
        lambda f: gzip_member([tar(f.entries())]),
        BundleMalformed,
        "the archive is truncated: it ends in the middle of an entry",
    ),
    "half an end-of-archive": (
        lambda f: gzip_member([tar(f.entries()), bytes(512), b"junk".ljust(512, b"\0")]),
        BundleMalformed,
        "a zero block is not followed by a second one",
    ),
    "tar data after the end": (
        lambda f: f.build() + gzip_member([tar([("README.txt", b"after the end")])]),
        BundleMalformed,
        "data follows the end of the archive",
    ),
    "garbage after the last member": (
        lambda f: f.build(tail=b"\x00trailing garbage"),
        BundleMalformed,
        "the data after gzip member 2 is not gzip",
    ),
    "no manifest": (
        lambda f: f.build(version_then(f, *f.entries()[2:])),
        BundleMalformed,
        "the bundle has no manifest.json",
    ),
}


@pytest.mark.parametrize("case", ARCHIVE_CASES.values(), ids=ARCHIVE_CASES.keys())
def test_a_broken_archive_is_refused(forge: Forge, trust: TrustedKeys, case: Case) -> None:
    build, error, message = case
    refused(build(forge), error, message, trust)


# --- The version entry, read before anything else ------------------------------------------


def with_version(f: Forge, text: bytes, *, manifest_version: str | None = None) -> bytes:
    if manifest_version is not None:
        f.manifest["version"] = manifest_version
    f.version = text
    return f.build()


VERSION_CASES: dict[str, Case] = {
    "unknown format": (
        lambda f: with_version(f, b'{"format":"zip.bundle","version":"1.0"}'),
        BundleVersionUnsupported,
        "not an Anvil bundle: anvil-bundle.json declares the format 'zip.bundle', not 'anvil.bundle'",
    ),
    "major version 0": (
        lambda f: with_version(f, b'{"format":"anvil.bundle","version":"0.9"}'),
        BundleVersionUnsupported,
        "bundle format 0.9 is older than this reader supports; this instance reads 1.x",
    ),
    "not a MAJOR.MINOR version": (
        lambda f: with_version(f, b'{"format":"anvil.bundle","version":"1"}'),
        BundleMalformed,
        "the bundle format version '1' is not a MAJOR.MINOR version such as '1.0'",
    ),
    "version entry not JSON": (
        lambda f: with_version(f, b"format=anvil.bundle"),
        BundleMalformed,
        "anvil-bundle.json is not JSON",
    ),
    "version entry not canonical": (
        lambda f: with_version(f, b'{"version": "1.0", "format": "anvil.bundle"}'),
        BundleMalformed,
        "anvil-bundle.json is not canonical JSON",
    ),
    "unknown member in version entry 1.0": (
        lambda f: with_version(f, b'{"compression":"zstd","format":"anvil.bundle","version":"1.0"}'),
        BundleMalformed,
        "anvil-bundle.json has unknown member\\(s\\) 'compression'",
    ),
    "huge version entry": (
        lambda f: with_version(
            f, b'{"format":"anvil.bundle","pad":"' + b"x" * 70_000 + b'","version":"1.0"}'
        ),
        BundleMalformed,
        "anvil-bundle.json is 70\\d\\d\\d bytes; it holds only a format and a version",
    ),
    "manifest version differs": (
        lambda f: with_version(f, b'{"format":"anvil.bundle","version":"1.0"}', manifest_version="1.3"),
        BundleMalformed,
        "the manifest's version '1.3' differs from anvil-bundle.json's '1.0'",
    ),
}


@pytest.mark.parametrize("case", VERSION_CASES.values(), ids=VERSION_CASES.keys())
def test_a_bad_version_entry_is_refused(forge: Forge, trust: TrustedKeys, case: Case) -> None:
    build, error, message = case
    refused(build(forge), error, message, trust)


def test_a_major_version_2_is_refused_first_with_a_message_for_people(
    forge: Forge, trust: TrustedKeys
) -> None:
    """Whatever follows the version entry (here: entries of an unknown layout, no seal, a cut
    gzip stream) is not looked at."""
    version = b'{"format":"anvil.bundle","version":"2.1"}'
    rest = [("manifest.cbor", b"\xa1\x00"), ("objects/blob", b"\x00" * 5000)]
    data = gzip_member([tar([("anvil-bundle.json", version), *rest])])[:-40]
    expected = "bundle format 2.1 needs a reader >= 2; this instance reads 1.x"
    with pytest.raises(BundleVersionUnsupported) as caught:
        read_bundle(data, trust=trust)
    assert str(caught.value) == expected
    assert caught.value.code == "bundle-version-unsupported"
    with pytest.raises(BundleVersionUnsupported, match=f"^{expected}$"):
        peek_version(data)
    # ... and even when it would also be too large for the reader's limits.
    with pytest.raises(BundleVersionUnsupported, match=f"^{expected}$"):
        read_bundle(data, trust=trust, limits=Limits(max_compressed=100))


def test_a_later_minor_version_with_unknown_members_is_accepted(forge: Forge, trust: TrustedKeys) -> None:
    forge.version = b'{"format":"anvil.bundle","mirrors":["https://m.example"],"version":"1.1"}'
    forge.manifest["version"] = "1.1"
    forge.manifest["signing_hints"] = {"rekor": "https://rekor.example"}  # a 1.1 addition
    forge.manifest["projects"][0]["icon"] = "🔧"
    bundle = read_bundle(forge.build(), trust=trust)
    assert bundle.manifest["signing_hints"] == {"rekor": "https://rekor.example"}
    assert peek_version(forge.build()) == "1.1"


def test_the_same_unknown_member_at_our_own_minor_version_is_refused(
    forge: Forge, trust: TrustedKeys
) -> None:
    assert FORMAT_VERSION == "1.0"
    forge.manifest["signing_hints"] = {"rekor": "https://rekor.example"}
    refused(
        forge.build(),
        BundleMalformed,
        "manifest: the manifest has unknown member\\(s\\) 'signing_hints'",
        trust,
    )
    del forge.manifest["signing_hints"]
    forge.manifest["projects"][0]["icon"] = "🔧"
    refused(forge.build(), BundleMalformed, "projects\\[0\\] has unknown member\\(s\\) 'icon'", trust)


def test_a_manifest_of_another_format_is_refused(forge: Forge, trust: TrustedKeys) -> None:
    forge.manifest["format"] = "anvil.backup"
    refused(forge.build(), BundleVersionUnsupported, "the manifest's format is 'anvil.backup'", trust)


# --- The manifest ---------------------------------------------------------------------------


def manifest_text(f: Forge, text: bytes) -> bytes:
    return f.build([f.entries()[0], ("manifest.json", text), *f.entries()[2:]])


def edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[Forge], bytes]:
    def build(f: Forge) -> bytes:
        change(f.manifest)
        return f.build()

    return build


def support(manifest: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in manifest["projects"] if p["slug"] == "support")


MANIFEST_CASES: dict[str, Case] = {
    "manifest not JSON": (
        lambda f: manifest_text(f, b'{"format":'),
        BundleMalformed,
        "manifest.json is not JSON",
    ),
    "manifest not UTF-8": (
        lambda f: manifest_text(f, b'{"format":"\xff"}'),
        BundleMalformed,
        "manifest.json is not JSON",
    ),
    "manifest pretty-printed": (
        lambda f: manifest_text(f, json.dumps(f.manifest, indent=2, sort_keys=True).encode()),
        BundleMalformed,
        "manifest.json is not canonical JSON \\(RFC 8785\\)",
    ),
    "manifest keys unsorted": (
        lambda f: manifest_text(f, json.dumps(f.manifest, separators=(",", ":")).encode()),
        BundleMalformed,
        "manifest.json is not canonical JSON",
    ),
    "manifest with a duplicate key": (
        lambda f: manifest_text(f, b'{"format":"anvil.bundle",' + f.manifest_bytes()[1:]),
        BundleMalformed,
        "manifest.json is not canonical JSON",
    ),
    "manifest with NaN": (
        lambda f: manifest_text(f, f.manifest_bytes().replace(b'"version":"1.0"', b'"version":NaN')),
        BundleMalformed,
        "manifest.json is not canonical JSON",
    ),
    "manifest an array": (
        lambda f: manifest_text(f, b"[]"),
        BundleMalformed,
        "the manifest must be a JSON object",
    ),
    "manifest member missing": (
        edit(lambda m: m.pop("dependencies")),
        BundleMalformed,
        "manifest: the manifest lacks 'dependencies'",
    ),
    "projects unsorted": (
        edit(lambda m: m["projects"].reverse()),
        BundleMalformed,
        "manifest: projects must be in ascending order: 'shared' comes after 'support'",
    ),
    "prompts unsorted": (
        edit(lambda m: support(m)["prompts"].reverse()),
        BundleMalformed,
        "project 'support': prompts must be in ascending order",
    ),
    "versions unsorted": (
        edit(lambda m: support(m)["prompts"][0]["versions"].reverse()),
        BundleMalformed,
        "prompt support/greeting: versions must be in ascending order",
    ),
    "set members unsorted": (
        edit(lambda m: support(m)["prompt_sets"][0]["prompts"].reverse()),
        BundleMalformed,
        "prompt set 'chat-widget': prompts must be in ascending order",
    ),
    "revisions unsorted": (
        edit(lambda m: support(m)["environments"][0]["revisions"].reverse()),
        BundleMalformed,
        "environment 'prod': revisions must be in ascending order",
    ),
    "dependencies unsorted": (
        edit(lambda m: m["dependencies"].reverse()),
        BundleMalformed,
        "dependencies must be in ascending order",
    ),
    "objects unsorted": (
        edit(lambda m: m["objects"].reverse()),
        BundleMalformed,
        "objects must be in ascending order",
    ),
    "a prompt listed twice": (
        edit(lambda m: support(m)["prompts"].insert(0, support(m)["prompts"][0])),
        BundleMalformed,
        "prompts: 'greeting' appears twice",
    ),
    "bad selection": (
        edit(lambda m: m["selection"].update(prompt_set="chat-widget")),
        BundleMalformed,
        "selection.prompt_set must be null for a 'project' selection",
    ),
    "bad history": (
        edit(lambda m: m["options"].update(history="some")),
        BundleMalformed,
        "options.history must be",
    ),
    "a version number of 0": (
        edit(lambda m: support(m)["prompts"][1]["versions"][0].update(number=0)),
        BundleMalformed,
        "a version number must be an integer >= 1",
    ),
    "a number beyond 2**53": (
        lambda f: manifest_text(f, f.manifest_bytes().replace(b'"size":', b'"size":9007199254740993', 1)),
        BundleMalformed,
        r"manifest.json is not canonical JSON \(integer 9007199254740993\d+ is outside the interoperable",
    ),
    "full history with a gap": (
        edit(lambda m: support(m)["prompts"][0]["versions"].pop(0)),
        BundleMalformed,
        "ancestors must list the 1 version\\(s\\) before version 2",
    ),
    "environments when not exported": (
        edit(lambda m: m["options"].update(environments=False)),
        BundleMalformed,
        "environments must be \\[\\] when options.environments is false",
    ),
    "an unresolvable dependency": (
        edit(lambda m: m["dependencies"][0].update(reference="shared:header@prod")),
        BundleMalformed,
        "'shared:header@prod' cannot resolve to shared:footer@2",
    ),
    "a dependency on a version not carried": (
        edit(lambda m: m["dependencies"][0]["to"].update(version=9)),
        BundleDanglingReference,
        "dependency 'shared:footer@prod' of support/greeting version 2 names shared/footer version 9, "
        "which the bundle does not carry",
    ),
    "a dependency with another digest": (
        edit(lambda m: m["dependencies"][0]["to"].update(digest="sha256:" + "0" * 64)),
        BundleDanglingReference,
        "names shared/footer version 2 with another digest than the bundle's",
    ),
    "a dependency from a version not carried": (
        edit(lambda m: m["dependencies"][1]["from"].update(version=4)),
        BundleDanglingReference,
        "a dependency names support/triage version 4, which the bundle does not carry",
    ),
    "a revision serving a version not carried": (
        edit(
            lambda m: support(m)["environments"][0]["revisions"][0]["prompts"]["greeting"].update(version=7)
        ),
        BundleDanglingReference,
        "environment support/prod revision 1 names support/greeting version 7, "
        "which the bundle does not carry",
    ),
    "a revision serving a prompt not carried": (
        edit(
            lambda m: support(m)["environments"][0]["revisions"][0]["prompts"].update(
                faq={"version": 1, "digest": "sha256:" + "1" * 64}
            )
        ),
        BundleDanglingReference,
        "names support/faq version 1, which the bundle does not carry",
    ),
    "a selection naming a project not carried": (
        edit(lambda m: m["selection"].update(project="billing")),
        BundleDanglingReference,
        "the selection names project 'billing', which the bundle does not carry",
    ),
}


@pytest.mark.parametrize("case", MANIFEST_CASES.values(), ids=MANIFEST_CASES.keys())
def test_a_bad_manifest_is_refused(forge: Forge, trust: TrustedKeys, case: Case) -> None:
    build, error, message = case
    refused(build(forge), error, message, trust)


# --- Objects against the manifest ------------------------------------------------------------


def alter_object(f: Forge) -> bytes:
    digest = sorted(f.objects)[0]
    entries = f.entries()
    entries[2] = (object_name(digest), f.objects[digest].replace(b"}", b',"x":1}', 1))  # same name
    return f.build(entries)


def extra_object(f: Forge) -> bytes:
    data = b'{"metadata":{},"model":null,"template":"smuggled","variables":{}}'
    f.objects["sha256:" + hashlib.sha256(data).hexdigest()] = data
    return f.build([*f.entries()[:2], *[(object_name(d), f.objects[d]) for d in sorted(f.objects)]])


def missing_object(f: Forge) -> bytes:
    entries = f.entries()
    del entries[3]
    return f.build(entries)


def wrong_size(f: Forge) -> bytes:
    f.manifest["objects"][1]["size"] += 1
    return f.build()


def first_digest(f: Forge) -> str:
    return sorted(f.objects)[0]


OBJECT_CASES: dict[str, Case] = {
    "object altered": (
        alter_object,
        BundleDigestMismatch,
        "object 'objects/[0-9a-f]{64}.json' does not hash to its name",
    ),
    "object not in the manifest": (
        extra_object,
        BundleDigestMismatch,
        "object sha256:[0-9a-f]{64} is in the archive but not in the manifest's objects",
    ),
    "manifest object missing from the archive": (
        missing_object,
        BundleDigestMismatch,
        "the manifest lists object sha256:[0-9a-f]{64}, which the archive does not hold",
    ),
    "wrong size": (
        wrong_size,
        BundleDigestMismatch,
        "object sha256:[0-9a-f]{64} is \\d+ bytes; the manifest says \\d+",
    ),
    "object not canonical": (
        lambda f: (
            f.replace_object(
                first_digest(f), b'{"template": "x", "variables": {}, "model": null, "metadata": {}}'
            ),
            f.build(),
        )[1],
        BundleMalformed,
        "object sha256:[0-9a-f]{64} is not canonical JSON",
    ),
    "object not JSON": (
        lambda f: (f.replace_object(first_digest(f), b"\x00\x01binary"), f.build())[1],
        BundleMalformed,
        "object sha256:[0-9a-f]{64} is not JSON",
    ),
    "object not a JSON object": (
        lambda f: (f.replace_object(first_digest(f), b'["template"]'), f.build())[1],
        BundleMalformed,
        "object sha256:[0-9a-f]{64} must be a JSON object",
    ),
    "object not named by any version": (
        lambda f: (
            f.objects.update({"sha256:" + hashlib.sha256(b"{}").hexdigest(): b"{}"}),
            f.manifest["objects"].append(
                {"digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2}
            ),
            f.manifest["objects"].sort(key=lambda o: o["digest"]),
            f.build(),
        )[-1],
        BundleMalformed,
        "object sha256:[0-9a-f]{64} is not the content of any listed version",
    ),
}


@pytest.mark.parametrize("case", OBJECT_CASES.values(), ids=OBJECT_CASES.keys())
def test_objects_that_differ_from_the_manifest_are_refused(
    forge: Forge, trust: TrustedKeys, case: Case
) -> None:
    build, error, message = case
    refused(build(forge), error, message, trust)


# --- The seal --------------------------------------------------------------------------------


def test_a_bundle_without_a_seal_is_refused_unless_explicitly_allowed(
    forge: Forge, trust: TrustedKeys
) -> None:
    data = forge.build(seal=None)
    refused(data, BundleUnsigned, "the bundle has no signature.jws: nothing proves who made it", trust)
    bundle = read_bundle(data, trust=trust, allow_unsigned=True)
    assert bundle.seal is None
    assert bundle.digest == forge.digest()


def test_a_seal_by_an_unknown_key_is_refused(forge: Forge, trust: TrustedKeys) -> None:
    stranger = SigningKey.generate()
    seal = make_seal(forge.digest(), forge.issuer, stranger, WHEN)
    refused(
        forge.build(seal=seal),
        BundleUntrustedKey,
        f"the bundle is sealed with key '{stranger.kid}', which is not a trusted key of https://anvil.acme.example",
        trust,
    )


def test_a_key_trusted_for_another_issuer_is_not_trusted_for_this_one(
    forge: Forge, trust: TrustedKeys
) -> None:
    """The exporter's own key, but the manifest claims another instance (an impersonation)."""
    forge.manifest["exporter"]["instance"] = "https://bank.example"
    refused(forge.build(), BundleUntrustedKey, "which is not a trusted key of https://bank.example", trust)


def test_a_seal_taken_from_another_bundle_is_refused(forge: Forge, trust: TrustedKeys) -> None:
    other_seal = forge.seal()
    forge.manifest["organisation"]["name"] = "Acme Corporation"  # the manifest changed after sealing
    refused(
        forge.build(seal=other_seal),
        BundleSignatureInvalid,
        "the bundle's seal is invalid: it seals bundle sha256:[0-9a-f]{64}, but this bundle's manifest "
        "hashes to sha256:[0-9a-f]{64}",
        trust,
    )


def test_a_seal_of_another_issuer_is_refused(forge: Forge, trust: TrustedKeys) -> None:
    seal = make_seal(forge.digest(), "https://other.example", forge.key, WHEN)
    refused(
        forge.build(seal=seal),
        BundleSignatureInvalid,
        "it was issued by 'https://other.example', but the manifest's exporter is 'https://anvil.acme.example'",
        trust,
    )


def seal_payload(f: Forge, **changes: Any) -> dict[str, Any]:
    payload = {
        "format": "anvil.bundle-seal",
        "version": "1.0",
        "bundle": f.digest(),
        "issuer": f.issuer,
        "created_at": "2026-11-30T08:15:42Z",
    }
    return {**payload, **changes}


SEAL_CASES: dict[str, tuple[Callable[[Forge], bytes], type[BundleError], str]] = {
    "a revision-manifest JWS": (
        lambda f: sign_document(seal_payload(f), f.key, typ=TYP_REVISION_MANIFEST).encode(),
        BundleSignatureInvalid,
        "expected a 'anvil-bundle-manifest\\+jws' document, got 'anvil-revision-manifest\\+jws'",
    ),
    "a JWT": (
        lambda f: sign(canonical_json(seal_payload(f)), f.key, typ="JWT").encode(),
        BundleSignatureInvalid,
        "got 'JWT'",
    ),
    "alg none": (
        lambda f: (
            b64url_encode(b'{"alg":"none","kid":"%s","typ":"anvil-bundle-manifest+jws"}' % f.key.kid.encode())
            + "."
            + b64url_encode(canonical_json(seal_payload(f)))
            + "."
        ).encode(),
        BundleSignatureInvalid,
        "algorithm 'none' refused; only ES256 is accepted",
    ),
    "alg HS256": (
        lambda f: craft_jws(
            {"alg": "HS256", "kid": f.key.kid, "typ": "anvil-bundle-manifest+jws"}, b"{}", f.key
        ),
        BundleSignatureInvalid,
        "algorithm 'HS256' refused",
    ),
    "jku header": (
        lambda f: craft_jws(
            {
                "alg": "ES256",
                "jku": "https://evil.example/jwks.json",
                "kid": f.key.kid,
                "typ": "anvil-bundle-manifest+jws",
            },
            canonical_json(seal_payload(f)),
            f.key,
        ),
        BundleSignatureInvalid,
        "JWS header members refused: jku",
    ),
    "embedded jwk": (
        lambda f: craft_jws(
            {"alg": "ES256", "jwk": f.key.public_jwk(), "kid": f.key.kid, "typ": "anvil-bundle-manifest+jws"},
            canonical_json(seal_payload(f)),
            f.key,
        ),
        BundleSignatureInvalid,
        "JWS header members refused: jwk",
    ),
    "x5u and crit": (
        lambda f: craft_jws(
            {
                "alg": "ES256",
                "crit": ["x5u"],
                "x5u": "https://e.example",
                "kid": f.key.kid,
                "typ": "anvil-bundle-manifest+jws",
            },
            canonical_json(seal_payload(f)),
            f.key,
        ),
        BundleSignatureInvalid,
        "JWS header members refused: crit, x5u",
    ),
    "signature altered": (
        lambda f: (lambda t: t[:-6] + (b"AAAAAA" if t[-6:] != b"AAAAAA" else b"BBBBBB"))(f.seal()),
        BundleSignatureInvalid,
        "the bundle's seal is invalid: signature does not verify",
    ),
    "not a JWS": (lambda f: b"hello", BundleSignatureInvalid, "compact JWS must have three parts"),
    "not ASCII": (lambda f: "seal✓".encode(), BundleSignatureInvalid, "it is not a compact JWS"),
    "payload of another format": (
        lambda f: sign_document(
            seal_payload(f, format="anvil.bundle"), f.key, typ="anvil-bundle-manifest+jws"
        ).encode(),
        BundleSignatureInvalid,
        "its format is 'anvil.bundle', not 'anvil.bundle-seal'",
    ),
    "payload of seal version 2": (
        lambda f: sign_document(
            seal_payload(f, version="2.0"), f.key, typ="anvil-bundle-manifest+jws"
        ).encode(),
        BundleSignatureInvalid,
        "the bundle's seal is invalid: seal format 2.0 needs a reader >= 2; this instance reads 1.x",
    ),
    "payload missing created_at": (
        lambda f: sign_document(
            {k: v for k, v in seal_payload(f).items() if k != "created_at"},
            f.key,
            typ="anvil-bundle-manifest+jws",
        ).encode(),
        BundleSignatureInvalid,
        "the seal's payload lacks 'created_at'",
    ),
    "payload with a local time": (
        lambda f: sign_document(
            seal_payload(f, created_at="2026-11-30T09:15:42+01:00"), f.key, typ="anvil-bundle-manifest+jws"
        ).encode(),
        BundleSignatureInvalid,
        "created_at is not a UTC time YYYY-MM-DDTHH:MM:SSZ",
    ),
    "payload with an impossible time": (
        lambda f: sign_document(
            seal_payload(f, created_at="2026-02-30T09:15:42Z"), f.key, typ="anvil-bundle-manifest+jws"
        ).encode(),
        BundleSignatureInvalid,
        "created_at '2026-02-30T09:15:42Z' is not a real time",
    ),
    "payload not canonical": (
        lambda f: sign(
            json.dumps(seal_payload(f), indent=1).encode(), f.key, typ="anvil-bundle-manifest+jws"
        ).encode(),
        BundleSignatureInvalid,
        "the seal's payload is not canonical JSON",
    ),
}


@pytest.mark.parametrize("case", SEAL_CASES.values(), ids=SEAL_CASES.keys())
def test_a_bad_seal_is_refused(forge: Forge, trust: TrustedKeys, case: Case) -> None:
    make, error, message = case
    refused(forge.build(seal=make(forge)), error, message, trust)


def test_without_a_trust_function_the_seal_is_not_looked_at(forge: Forge) -> None:
    """``trust=None`` is for showing a bundle (``anvil bundle inspect``), never for importing it."""
    bundle = read_bundle(forge.build(seal=b"not even a JWS"), trust=None)
    assert bundle.seal is None


# --- Limits ----------------------------------------------------------------------------------


def zeros_member(header: bytes, size: int) -> bytes:
    """A gzip member of ``header`` and ``size`` zero bytes, made without holding them in memory."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc = zlib.crc32(header)
    parts = [deflate.compress(header)]
    chunk = bytes(1 << 20)
    for _ in range(size // len(chunk)):
        parts.append(deflate.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    parts.append(deflate.flush())
    length = (len(header) + size) & 0xFFFFFFFF
    return (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        + b"".join(parts)
        + crc.to_bytes(4, "little")
        + length.to_bytes(4, "little")
    )


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A 64 MiB object of zeros (about 64 KiB compressed: a ratio of 1000:1) behind a valid start."""
    start = tar(
        [("anvil-bundle.json", b'{"format":"anvil.bundle","version":"1.0"}'), ("manifest.json", b"{}")]
    )
    size = 64 << 20
    fixed = bytearray(tar_entry("objects/" + "0" * 64 + ".json", b"")[0])  # then given the size
    fixed[124:136] = b"%011o\x00" % size
    fixed[148:156] = b"        "
    fixed[148:156] = b"%06o\x00 " % sum(fixed)
    return zeros_member(start + bytes(fixed), size)


def test_a_decompression_bomb_is_stopped_before_it_is_inflated(bomb: bytes, trust: TrustedKeys) -> None:
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(BundleTooLarge, match="refused as a possible decompression bomb") as caught:
            read_bundle(bomb, trust=trust)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.code == "bundle-too-large"
    assert peak < 4 << 20, f"reading the bomb used {peak} bytes"  # 64 MiB were never inflated


def test_a_bomb_within_the_ratio_is_stopped_at_the_uncompressed_limit(
    bomb: bytes, trust: TrustedKeys
) -> None:
    limits = Limits(max_uncompressed=1 << 20, max_ratio=10_000)
    tracemalloc.start()
    try:
        with pytest.raises(BundleTooLarge, match="the bundle inflates to more than 1 MiB, the limit"):
            read_bundle(bomb, trust=trust, limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_a_bomb_hidden_after_the_end_is_stopped(forge: Forge, trust: TrustedKeys) -> None:
    """Zeros after the end-of-archive blocks look like more end blocks: refused, not inflated."""
    data = forge.build() + zeros_member(b"", 32 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(BundleMalformed, match="data follows the end of the archive"):
            read_bundle(data, trust=trust)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_inflation_itself_stops_at_the_limit() -> None:
    """The backstop under the header checks: whatever asks for bytes, no more than the limit
    (and one output chunk) is ever inflated."""
    data = zeros_member(b"", 32 << 20)
    stream = BoundedStream(data, Limits())
    with pytest.raises(BundleTooLarge, match=f"more than 200 times its compressed size of {len(data)} bytes"):
        stream.read(32 << 20)
    assert stream.inflated <= 200 * len(data) + (256 << 10)


def test_a_file_larger_than_the_compressed_limit_is_refused(forge: Forge, trust: TrustedKeys) -> None:
    data = forge.build()
    refused(
        data,
        BundleTooLarge,
        f"the bundle is {len(data)} bytes; the limit is 1000 bytes",
        trust,
        limits=Limits(max_compressed=1000),
    )


def test_a_bundle_larger_than_the_uncompressed_limit_is_refused(forge: Forge, trust: TrustedKeys) -> None:
    refused(
        forge.build(),
        BundleTooLarge,
        "the bundle inflates to more than 4096 bytes, the limit",
        trust,
        limits=Limits(max_uncompressed=4096),
    )


def test_too_many_entries_are_refused(forge: Forge, trust: TrustedKeys) -> None:
    assert len(forge.objects) == 5
    refused(
        forge.build(),
        BundleTooLarge,
        "the bundle has more than 6 entries, the limit",
        trust,
        limits=Limits(max_entries=6),
    )
    assert read_bundle(forge.build(), trust=trust, limits=Limits(max_entries=8)).seal is not None


# --- Anything else ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_random_damage_is_always_a_bundle_error(forge: Forge, trust: TrustedKeys, seed: int) -> None:
    """Flipped bytes in the compressed file or in the tar inside it, and cuts anywhere."""
    rng = random.Random(seed)
    valid = forge.build()
    inner = zlib.decompress(valid, 16 + zlib.MAX_WBITS)
    for _ in range(200):
        damaged = bytearray(valid if rng.random() < 0.5 else inner)
        for _ in range(rng.randrange(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        data = bytes(damaged) if damaged[:2] == b"\x1f\x8b" else gzip_member([bytes(damaged)])
        data = data[: rng.choice([len(data), rng.randrange(len(data) + 1)])]
        with contextlib.suppress(BundleError):  # any other exception fails the test
            read_bundle(data, trust=trust, allow_unsigned=True)
