"""What a client needs of a revision, deltas between revisions, and the client's verification of
a pushed revision (docs/push-protocol.md section 3), each refusal with its nack code."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from anvil_wire import (
    TYP_BUNDLE_MANIFEST,
    KeySet,
    ManifestEntry,
    RevisionError,
    RevisionManifest,
    content_digest,
    normalize_content,
    sign_document,
    sign_revision,
    verify_revision,
)
from anvil_wire.b64 import b64url_encode
from anvil_wire.canonical import canonical_json, sha256_digest
from anvil_wire.push import (
    Delta,
    DeltaError,
    PromptSetScope,
    PushRefused,
    make_delta,
    make_snapshot,
    manifest_digest,
    narrow_document,
    needed_digests,
    rebuild_document,
    unverified_manifest,
    verify_message,
    verify_pushed,
)

ENV = "6f1f0a55-35a3-4f0e-9a56-0c8d8d1c2f10"
OTHER_ENV = "0b7d5c1e-2f43-4d8e-8a41-5b0e5b9c7a21"


def content(template: str, **variables: Any) -> dict[str, Any]:
    return normalize_content({"template": template, "variables": variables})


HEADER = content("Acme support")
FOOTER = content("Bye from {{> header}}")
GREETING = content("Hello {{name}}! {{> shared:footer}}", name={})
GREETING_2 = content("Hi {{name}}! {{> shared:footer}}", name={})
FAREWELL = content("Goodbye.")
TRIAGE = content("Triage this ticket.")
NEWS = content("News of the day.")


def entry(
    c: dict[str, Any], version: int = 1, partials: dict[str, str] | None = None, **dep: str
) -> ManifestEntry:
    return ManifestEntry(version=version, digest=content_digest(c), partials=partials or {}, **dep)


# greeting -> shared:footer@1 (a dependency) -> shared:header@1 (a dependency of the dependency)
DEPENDENCIES = {
    "shared:footer@1": entry(FOOTER, partials={"header": "shared:header@1"}, project="shared", name="footer"),
    "shared:header@1": entry(HEADER, project="shared", name="header"),
}


def revision(
    number: int, prompts: dict[str, dict[str, Any]], keyset: KeySet, *, environment_id: str = ENV
) -> tuple[dict[str, Any], RevisionManifest]:
    """A signed revision document serving ``prompts`` (greeting-like ones reach the footer)."""
    entries = {
        name: entry(c, partials={"shared:footer": "shared:footer@1"} if "{{>" in c["template"] else None)
        for name, c in prompts.items()
    }
    deps = DEPENDENCIES if any(e.partials for e in entries.values()) else {}
    manifest = RevisionManifest(
        issuer="https://anvil.example",
        organisation={"id": "11111111-1111-4111-8111-111111111111", "slug": "acme"},
        project={"id": "22222222-2222-4222-8222-222222222222", "slug": "web"},
        environment={"id": environment_id, "name": "prod"},
        revision=number,
        rollback_of=None,
        created_at="2026-11-25T09:00:00Z",
        prompts=entries,
        dependencies=deps,
    )
    contents = {content_digest(c): c for c in [*prompts.values(), *((FOOTER, HEADER) if deps else ())]}
    return sign_revision(manifest, contents, keyset.active), manifest


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    return KeySet.generate()


@pytest.fixture(scope="module")
def keys(keyset: KeySet):
    return keyset.public_keys()


@pytest.fixture(scope="module")
def rev1(keyset: KeySet) -> tuple[dict[str, Any], RevisionManifest]:
    return revision(1, {"greeting": GREETING, "farewell": FAREWELL, "support/triage": TRIAGE}, keyset)


@pytest.fixture(scope="module")
def rev2(keyset: KeySet) -> tuple[dict[str, Any], RevisionManifest]:
    """Revision 1 with greeting changed, support/triage removed and news added."""
    return revision(2, {"greeting": GREETING_2, "farewell": FAREWELL, "news": NEWS}, keyset)


def digests(*contents: dict[str, Any]) -> set[str]:
    return {content_digest(c) for c in contents}


def verify(
    document: dict[str, Any],
    keys: Any,
    prompts: Any = None,
    *,
    revision: int = 1,
    digest: str | None = None,
    environment_id: str = ENV,
):
    """verify_pushed, expecting what the message would say: by default revision 1, the JWS digest."""
    expected = (revision, digest or manifest_digest(document["manifest"]))
    return verify_pushed(document, keys, environment_id=environment_id, prompts=prompts, expected=expected)


# --- what a client needs -------------------------------------------------------------------------


def test_without_a_prompt_set_a_client_needs_every_digest_of_the_manifest(rev1):
    _, manifest = rev1
    assert needed_digests(manifest, None) == manifest.digests()
    assert needed_digests(manifest, None) == digests(GREETING, FAREWELL, TRIAGE, FOOTER, HEADER)


def test_with_a_prompt_set_a_client_needs_its_prompts_and_every_entry_their_partials_reach(rev1):
    _, manifest = rev1
    assert needed_digests(manifest, ["greeting"]) == digests(GREETING, FOOTER, HEADER)
    assert needed_digests(manifest, ["farewell"]) == digests(FAREWELL)
    assert needed_digests(manifest, []) == set()


def test_a_prompt_the_manifest_does_not_serve_needs_nothing(rev1):
    _, manifest = rev1
    assert needed_digests(manifest, ["farewell", "gone", "shared:footer@1"]) == digests(FAREWELL)


def test_partials_that_form_a_cycle_are_walked_once(keyset):
    a = content("A {{> b}}")
    b = content("B {{> a}}")
    manifest = RevisionManifest(
        issuer="https://anvil.example",
        organisation={"id": "11111111-1111-4111-8111-111111111111", "slug": "acme"},
        project={"id": "22222222-2222-4222-8222-222222222222", "slug": "web"},
        environment={"id": ENV, "name": "prod"},
        revision=1,
        rollback_of=None,
        created_at="2026-11-25T09:00:00Z",
        prompts={"a": entry(a, partials={"b": "b"}), "b": entry(b, partials={"a": "a"})},
    )
    assert needed_digests(manifest, ["a"]) == digests(a, b)


def test_narrow_document_keeps_only_the_needed_contents(rev1, keys):
    document, manifest = rev1
    narrowed = narrow_document(document, manifest, ["greeting"])
    assert narrowed["manifest"] == document["manifest"]
    assert narrowed["format"] == document["format"]
    assert set(narrowed["contents"]) == digests(GREETING, FOOTER, HEADER)
    assert list(narrowed["contents"]) == sorted(narrowed["contents"])
    verified = verify(narrowed, keys, ["greeting"])
    assert verified.render("greeting", {"name": "Ada"}) == "Hello Ada! Bye from Acme support"


def test_narrow_document_refuses_a_document_that_lacks_a_needed_content(rev1):
    document, manifest = rev1
    broken = copy.deepcopy(document)
    del broken["contents"][content_digest(HEADER)]
    with pytest.raises(RevisionError) as caught:
        narrow_document(broken, manifest, ["greeting"])
    assert str(caught.value) == f"document contents lack digest {content_digest(HEADER)}"


def test_make_snapshot_narrows_to_the_prompt_set_and_names_the_revision(rev1):
    document, manifest = rev1
    scope = PromptSetScope("checkout", ("farewell",))
    snapshot = make_snapshot(document, manifest, prompt_set=scope)
    assert (snapshot.environment_id, snapshot.revision) == (ENV, 1)
    assert snapshot.manifest_digest == sha256_digest(document["manifest"].encode("ascii"))
    assert snapshot.document["contents"] == {content_digest(FAREWELL): FAREWELL}
    assert make_snapshot(document, manifest, prompt_set=None).document is document


def test_manifest_digest_is_the_sha256_of_the_ascii_jws_text(rev1):
    document, _ = rev1
    assert manifest_digest(document["manifest"]) == sha256_digest(document["manifest"].encode("ascii"))


# --- deltas --------------------------------------------------------------------------------------


def full_delta(rev1, rev2) -> Delta:
    (doc1, manifest1), (doc2, manifest2) = rev1, rev2
    return make_delta(
        doc1["contents"], 1, manifest1.prompts, doc2, manifest2, environment_id=ENV, prompt_set=None
    )


def test_a_delta_carries_only_added_and_changed_contents_and_names_removed_prompts(rev1, rev2):
    delta = full_delta(rev1, rev2)
    assert (delta.revision, delta.base_revision, delta.environment_id) == (2, 1, ENV)
    assert set(delta.contents) == digests(GREETING_2, NEWS)
    assert delta.removed == ("support/triage",)
    assert delta.manifest == rev2[0]["manifest"]
    assert delta.manifest_digest == manifest_digest(rev2[0]["manifest"])


def test_a_delta_rebuilds_into_exactly_the_target_document(rev1, rev2, keys):
    delta = full_delta(rev1, rev2)
    rebuilt = rebuild_document(delta, 1, rev1[0]["contents"], None)
    assert rebuilt == rev2[0]
    verified = verify(rebuilt, keys, revision=2)
    assert verified.manifest == rev2[1]
    assert verified.render("greeting", {"name": "Ada"}) == "Hi Ada! Bye from Acme support"


def test_a_delta_between_revisions_with_equal_contents_carries_no_content(rev1, keyset):
    doc1, manifest1 = rev1
    doc3, manifest3 = revision(
        3, {"greeting": GREETING, "farewell": FAREWELL, "support/triage": TRIAGE}, keyset
    )
    delta = make_delta(
        doc1["contents"], 1, manifest1.prompts, doc3, manifest3, environment_id=ENV, prompt_set=None
    )
    assert delta.contents == {}
    assert delta.removed == ()
    assert rebuild_document(delta, 1, doc1["contents"], None) == doc3


def test_a_delta_for_a_prompt_set_carries_only_what_the_set_needs(rev1, rev2, keys):
    (doc1, manifest1), (doc2, manifest2) = rev1, rev2
    base = narrow_document(doc1, manifest1, ["farewell"])["contents"]
    scope = PromptSetScope("checkout", ("farewell", "greeting"))
    delta = make_delta(base, 1, ["farewell"], doc2, manifest2, environment_id=ENV, prompt_set=scope)
    assert set(delta.contents) == digests(GREETING_2, FOOTER, HEADER)
    assert delta.removed == ()
    assert delta.prompt_set == scope
    rebuilt = rebuild_document(delta, 1, base, scope.prompts)
    assert rebuilt == narrow_document(doc2, manifest2, scope.prompts)
    assert verify(rebuilt, keys, scope.prompts, revision=2).manifest == manifest2


def test_a_delta_names_the_set_prompts_the_new_revision_no_longer_serves(rev1, rev2):
    (doc1, manifest1), (doc2, manifest2) = rev1, rev2
    base = narrow_document(doc1, manifest1, ["support/triage", "farewell"])["contents"]
    scope = PromptSetScope.serving("ops", ["support/triage", "farewell"], manifest2.prompts)
    delta = make_delta(
        base, 1, ["farewell", "support/triage"], doc2, manifest2, environment_id=ENV, prompt_set=scope
    )
    assert scope.prompts == ("farewell",)
    assert delta.removed == ("support/triage",)
    assert delta.contents == {}


def test_make_delta_refuses_a_target_of_another_environment(rev1, rev2):
    (doc1, manifest1), (doc2, manifest2) = rev1, rev2
    with pytest.raises(ValueError, match=r"^the target revision belongs to another environment$"):
        make_delta(
            doc1["contents"], 1, manifest1.prompts, doc2, manifest2, environment_id=OTHER_ENV, prompt_set=None
        )


def test_a_delta_from_another_base_is_a_base_mismatch(rev1, rev2):
    delta = full_delta(rev1, rev2)
    with pytest.raises(DeltaError) as caught:
        rebuild_document(delta, 3, rev1[0]["contents"], None)
    assert caught.value.code == "base-mismatch"
    assert caught.value.detail == "delta starts from revision 1, client holds 3"
    assert isinstance(caught.value, PushRefused)


def test_a_needed_content_in_neither_the_delta_nor_the_base_is_a_digest_mismatch(rev1, rev2):
    delta = full_delta(rev1, rev2)
    held = dict(rev1[0]["contents"])
    del held[content_digest(FAREWELL)]
    with pytest.raises(DeltaError) as caught:
        rebuild_document(delta, 1, held, None)
    assert caught.value.code == "digest-mismatch"
    assert caught.value.detail == f"content {content_digest(FAREWELL)} is neither in the delta nor held"


def test_a_delta_content_the_client_does_not_need_is_a_digest_mismatch(rev1, rev2):
    delta = full_delta(rev1, rev2)
    extra = Delta(**{**delta.__dict__, "contents": {**delta.contents, content_digest(TRIAGE): TRIAGE}})
    with pytest.raises(DeltaError) as caught:
        rebuild_document(extra, 1, rev1[0]["contents"], None)
    assert caught.value.code == "digest-mismatch"
    assert caught.value.detail == f"delta carries {content_digest(TRIAGE)}, which the client does not need"


def test_a_delta_content_outside_the_prompt_set_is_a_digest_mismatch(rev1, rev2):
    delta = full_delta(rev1, rev2)  # made for the whole manifest: news is not in the set
    with pytest.raises(DeltaError) as caught:
        rebuild_document(delta, 1, rev1[0]["contents"], ["greeting"])
    assert caught.value.code == "digest-mismatch"
    assert caught.value.detail == f"delta carries {content_digest(NEWS)}, which the client does not need"


def test_a_delta_whose_manifest_cannot_be_read_is_a_bad_signature(rev1, rev2):
    delta = full_delta(rev1, rev2)
    broken = Delta(**{**delta.__dict__, "manifest": "not-a-jws"})
    with pytest.raises(DeltaError) as caught:
        rebuild_document(broken, 1, rev1[0]["contents"], None)
    assert caught.value.code == "bad-signature"
    assert caught.value.detail == "unreadable manifest: manifest is not a compact JWS"


@pytest.mark.parametrize(
    ("jws", "error"),
    [
        ("a.b", "manifest is not a compact JWS"),
        ("a.!!.c", "manifest payload is not base64url JSON"),
        (f"a.{b64url_encode(b'[1]')}.c", "manifest payload must be a JSON object"),
        (f"a.{b64url_encode(b'{}')}.c", "manifest format must be 'anvil.revision-manifest.v1', got None"),
    ],
)
def test_unverified_manifest_refuses_what_it_cannot_read(jws: str, error: str):
    with pytest.raises(RevisionError) as caught:
        unverified_manifest(jws)
    assert str(caught.value) == error


# --- verification (section 3.3) ------------------------------------------------------------------


def test_a_verified_document_gives_what_verify_revision_gives(rev1, keys):
    document, _ = rev1
    assert verify(document, keys) == verify_revision(document, keys, environment_id=ENV)


def resigned(document: dict[str, Any], manifest: RevisionManifest, signer: Any, typ: str) -> dict[str, Any]:
    return {**document, "manifest": sign_document(manifest.to_json(), signer, typ=typ)}


def unsigned(document: dict[str, Any], manifest: RevisionManifest) -> dict[str, Any]:
    header = b64url_encode(canonical_json({"alg": "none", "typ": "anvil-revision-manifest+jws"}))
    return {**document, "manifest": f"{header}.{b64url_encode(canonical_json(manifest.to_json()))}."}


def refusal(document: dict[str, Any], keys: Any, prompts: Any = None, **expected: Any) -> PushRefused:
    with pytest.raises(PushRefused) as caught:
        verify(document, keys, prompts, **expected)
    return caught.value


def test_an_unsigned_manifest_is_a_bad_signature(rev1, keys):
    document, manifest = rev1
    refused = refusal(unsigned(document, manifest), keys)
    assert refused.code == "bad-signature"
    assert refused.detail == "manifest signature refused: algorithm 'none' refused; only ES256 is accepted"


def test_a_manifest_signed_by_another_key_is_a_bad_signature(rev1, keys):
    document, manifest = rev1
    stranger = KeySet.generate().active
    refused = refusal(resigned(document, manifest, stranger, "anvil-revision-manifest+jws"), keys)
    assert refused.code == "bad-signature"
    assert refused.detail == f"manifest signature refused: signed with unknown key id {stranger.kid!r}"


def test_a_manifest_of_another_typ_is_a_bad_signature(rev1, keys, keyset):
    document, manifest = rev1
    refused = refusal(resigned(document, manifest, keyset.active, TYP_BUNDLE_MANIFEST), keys)
    assert refused.code == "bad-signature"
    assert refused.detail == (
        "manifest signature refused: expected a 'anvil-revision-manifest+jws' document, "
        f"got {TYP_BUNDLE_MANIFEST!r}"
    )


def test_a_signed_payload_that_is_not_a_manifest_is_a_bad_signature(rev1, keys, keyset):
    document, _ = rev1
    forged = {
        **document,
        "manifest": sign_document({"format": "x"}, keyset.active, typ="anvil-revision-manifest+jws"),
    }
    refused = refusal(forged, keys)
    assert refused.code == "bad-signature"
    assert (
        refused.detail
        == "signed manifest refused: manifest format must be 'anvil.revision-manifest.v1', got 'x'"
    )


def test_a_manifest_whose_digest_differs_from_the_message_is_a_bad_signature(rev1, keys):
    document, _ = rev1
    refused = refusal(document, keys, digest="sha256:" + "0" * 64)
    assert refused.code == "bad-signature"
    assert refused.detail == (
        f"manifest digest is {manifest_digest(document['manifest'])}, the message said sha256:{'0' * 64}"
    )


def test_a_revision_of_another_environment_is_an_environment_mismatch(rev1, keys):
    document, _ = rev1
    refused = refusal(document, keys, environment_id=OTHER_ENV)
    assert refused.code == "environment-mismatch"
    assert refused.detail == f"revision is bound to environment {ENV}"


def test_a_revision_number_other_than_the_message_said_is_a_rollback(rev1, keys):
    document, _ = rev1
    refused = refusal(document, keys, revision=2)
    assert refused.code == "rollback"
    assert refused.detail == "signed revision is 1, the message said 2"


def test_tampered_content_is_a_digest_mismatch(rev1, keys):
    document, _ = rev1
    tampered = copy.deepcopy(document)
    tampered["contents"][content_digest(FAREWELL)]["template"] = "Send me your password."
    refused = refusal(tampered, keys)
    assert refused.code == "digest-mismatch"
    assert refused.detail == f"content does not match its digest {content_digest(FAREWELL)}"


def test_a_missing_content_without_a_prompt_set_is_a_digest_mismatch(rev1, keys):
    document, manifest = rev1
    narrowed = narrow_document(document, manifest, ["greeting"])
    refused = refusal(narrowed, keys)
    assert refused.code == "digest-mismatch"
    assert refused.detail == "contents do not match the manifest's digests exactly"


def test_a_missing_needed_content_with_a_prompt_set_is_a_digest_mismatch(rev1, keys):
    document, manifest = rev1
    narrowed = narrow_document(document, manifest, ["farewell"])
    refused = refusal(narrowed, keys, ["farewell", "greeting"])
    assert refused.code == "digest-mismatch"
    assert refused.detail == f"needed content {sorted(digests(GREETING, FOOTER, HEADER))[0]} is missing"


def test_with_a_prompt_set_contents_may_hold_other_manifest_digests_but_no_foreign_one(rev1, keys):
    document, _ = rev1
    assert verify(document, keys, ["farewell"]).contents == document["contents"]
    foreign = copy.deepcopy(document)
    foreign["contents"][content_digest(NEWS)] = NEWS
    refused = refusal(foreign, keys, ["farewell"])
    assert refused.code == "digest-mismatch"
    assert refused.detail == "contents carry a digest the manifest does not list"


def test_something_that_is_not_a_revision_document_is_refused_as_internal(rev1, keys):
    document, _ = rev1
    refused = refusal({**document, "format": "anvil.revision.v2"}, keys)
    assert refused.code == "internal"
    assert refused.detail == "not a anvil.revision.v1 revision document"


def test_push_refused_accepts_only_nack_codes():
    with pytest.raises(ValueError, match=r"^unknown nack code 'oops'$"):
        PushRefused("oops", "detail")


# --- verify_message: a snapshot or delta for a subscription --------------------------------------


def test_verify_message_verifies_a_snapshot_and_a_delta(rev1, rev2, keys):
    snapshot = make_snapshot(rev1[0], rev1[1], prompt_set=None)
    assert verify_message(snapshot, keys, environment_id=ENV).manifest == rev1[1]
    delta = full_delta(rev1, rev2)
    verified = verify_message(delta, keys, environment_id=ENV, held=(1, rev1[0]["contents"]))
    assert verified.contents == rev2[0]["contents"]


def test_verify_message_uses_the_message_prompt_set(rev1, keys):
    scope = PromptSetScope("checkout", ("greeting",))
    snapshot = make_snapshot(rev1[0], rev1[1], prompt_set=scope)
    verified = verify_message(snapshot, keys, environment_id=ENV, prompt_set="checkout")
    assert set(verified.contents) == digests(GREETING, FOOTER, HEADER)
    with pytest.raises(PushRefused) as caught:
        verify_message(snapshot, keys, environment_id=ENV, prompt_set=None)
    assert (caught.value.code, caught.value.detail) == ("internal", "message is for prompt set 'checkout'")


def test_verify_message_refuses_a_message_for_another_environment(rev1, keys):
    snapshot = make_snapshot(rev1[0], rev1[1], prompt_set=None)
    with pytest.raises(PushRefused) as caught:
        verify_message(snapshot, keys, environment_id=OTHER_ENV)
    assert (caught.value.code, caught.value.detail) == (
        "environment-mismatch",
        f"message is for environment {ENV}",
    )


def test_verify_message_refuses_a_delta_when_the_client_holds_nothing(rev1, rev2, keys):
    with pytest.raises(PushRefused) as caught:
        verify_message(full_delta(rev1, rev2), keys, environment_id=ENV)
    assert caught.value.code == "base-mismatch"
    assert caught.value.detail == "the client holds no revision to apply a delta to"
