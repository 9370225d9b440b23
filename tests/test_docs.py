"""docs/ and the README stay in step with the code they describe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from anvil_bundle_worker.settings import WorkerSettings
from anvil_common import jwt, problems
from anvil_common.settings import ServiceSettings
from anvil_push_gateway.settings import GatewaySettings
from anvil_registry.auth import KIND_SCOPES, SCOPES
from anvil_registry.prompts.schemas import RESERVED_SEGMENT
from anvil_registry.settings import RegistrySettings
from anvil_registry.tokens.policy import TOKEN_POLICY
from anvil_wire import canonical_json, content_digest, normalize_content, prompts
from anvil_wire.jws import TYP_REVISION_MANIFEST
from anvil_wire.revisions import DOCUMENT_FORMAT, MANIFEST_FORMAT, RevisionManifest

ROOT = Path(__file__).resolve().parent.parent
API = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
PROMPT_FORMAT = (ROOT / "docs" / "prompt-format.md").read_text(encoding="utf-8")
REGISTRY_SOURCES = ROOT / "services" / "registry" / "anvil_registry"
_SEPARATOR = re.compile(r"^:?-+:?$")
_UNITS = {"h": 3600, "d": 86400}


def _tables(text: str) -> list[list[list[str]]]:
    """Every pipe table as a list of rows (header first, separator row dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(_SEPARATOR.match(c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _table(text: str, *header: str) -> list[list[str]]:
    """The body rows of the one table whose header starts with ``header``."""
    found = [t[1:] for t in _tables(text) if tuple(c.lower() for c in t[0][: len(header)]) == header]
    assert len(found) == 1, f"expected one table with header {header}, found {len(found)}"
    return found[0]


def _spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _example(name: str) -> str:
    match = re.search(rf"<!-- example: {name} -->\s*```\w*\n(.*?)\n```", PROMPT_FORMAT, re.DOTALL)
    assert match, f"docs/prompt-format.md has no '{name}' example block"
    return match.group(1)


def _seconds(text: str) -> int:
    number, unit = text.split()
    return int(number) * _UNITS[unit]


def test_scopes_table_lists_exactly_the_scopes_of_auth():
    documented = [_spans(row[0])[0] for row in _table(API, "scope", "allows")]
    assert len(documented) == len(set(documented)), "a scope is listed twice"
    assert set(documented) == set(SCOPES)


def test_kinds_table_scopes_equal_kind_scopes():
    rows = _table(API, "kind", "scopes it may hold")
    documented = {_spans(row[0])[0]: frozenset(_spans(row[1])) for row in rows}
    assert documented == KIND_SCOPES


def test_kinds_table_lifetimes_and_audiences_equal_token_policy():
    rows = _table(API, "kind", "scopes it may hold")
    documented = {
        _spans(row[0])[0]: (_seconds(row[2]), _seconds(row[3]), frozenset(_spans(row[4]))) for row in rows
    }
    expected = {k: (p.default_ttl, p.max_ttl, p.audiences) for k, p in TOKEN_POLICY.items()}
    assert documented == expected


def test_claims_table_names_every_audience():
    rows = {_spans(row[0])[0]: row for row in _table(API, "claim", "type")}
    audiences = set().union(*(p.audiences for p in TOKEN_POLICY.values()))
    assert set(_spans(rows["aud"][3])) == audiences


def test_content_hash_example_recomputes():
    content = json.loads(_example("content"))
    assert canonical_json(normalize_content(content)).decode("utf-8") == _example("canonical")
    assert content_digest(content) == _example("digest").strip()


def _problem_classes() -> list[type[problems.Problem]]:
    found = [problems.Problem]
    for module in (problems, jwt):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, problems.Problem):
                found.append(value)
    return found


def test_every_generic_problem_code_is_documented_with_its_status():
    table = {_spans(row[0])[0]: int(row[1]) for row in _table(API, "code", "status")}
    for cls in _problem_classes():
        assert cls.code in table, f"docs/api.md does not list problem code {cls.code!r}"
        assert table[cls.code] == cls.status, f"docs/api.md gives {cls.code!r} the wrong status"


def test_prompt_format_quotes_the_grammar_of_the_code():
    for fragment in (
        prompts.SLUG_PATTERN,
        prompts._SEGMENT,
        prompts._VAR,
        f"at most {prompts.MAX_NAME_LENGTH} characters",
        f"limited to {prompts.MAX_PARTIAL_DEPTH} partial levels",
        f"segment `{RESERVED_SEGMENT}` is reserved",
        ", ".join(f"`{role}`" for role in prompts.CHAT_ROLES[:-1]) + f", `{prompts.CHAT_ROLES[-1]}`",
    ):
        assert fragment in PROMPT_FORMAT, f"docs/prompt-format.md lacks {fragment!r}"


def test_manifest_table_has_exactly_the_members_of_the_manifest():
    manifest = RevisionManifest(
        issuer="https://registry.example",
        organisation={"id": "o", "slug": "acme"},
        project={"id": "p", "slug": "web"},
        environment={"id": "e", "name": "prod"},
        revision=1,
        rollback_of=None,
        created_at="2026-01-01T00:00:00Z",
        prompts={},
    )
    documented = [_spans(row[0])[0] for row in _table(API, "member", "value")]
    assert documented == list(manifest.to_json())
    for name in (DOCUMENT_FORMAT, MANIFEST_FORMAT, TYP_REVISION_MANIFEST):
        assert f"`{name}`" in API or f'"{name}"' in API, name


def test_event_kinds_table_lists_every_event_the_registry_appends():
    appended = {
        kind
        for path in REGISTRY_SOURCES.rglob("*.py")
        for kind in re.findall(r'append_event\(\s*\w+,\s*kind="([^"]+)"', path.read_text(encoding="utf-8"))
    }
    assert appended, "found no append_event calls; the pattern above needs updating"
    documented = {_spans(row[0])[0] for row in _table(API, "kind", "payload")}
    assert appended <= documented, f"undocumented event kinds: {sorted(appended - documented)}"


_SETTINGS = {"REGISTRY": RegistrySettings, "BUNDLE_WORKER": WorkerSettings, "PUSH_GATEWAY": GatewaySettings}


@pytest.mark.parametrize(
    "doc",
    ["docs/api.md", "docs/prompt-format.md", "docs/bundle-worker.md", "docs/push-gateway.md", "README.md"],
)
@pytest.mark.parametrize("service", sorted(_SETTINGS))
def test_every_setting_named_in_the_docs_exists(doc, service):
    text = (ROOT / doc).read_text(encoding="utf-8")
    fields = set(_SETTINGS[service].model_fields)
    named = {m.lower() for m in re.findall(rf"ANVIL_{service}_([A-Z_]+[A-Z])", text)}
    assert named <= fields, sorted(named - fields)


def test_push_gateway_md_names_every_gateway_setting_and_only_those():
    text = (ROOT / "docs" / "push-gateway.md").read_text(encoding="utf-8")
    own = set(GatewaySettings.model_fields) - set(ServiceSettings.model_fields) | {"port"}
    # Settings appear bare (`HEARTBEAT_SECONDS`) in its tables and lists.
    bare = {m for m in re.findall(r"`([A-Z][A-Z_]+[A-Z])`", text) if not m.startswith("ANVIL_")}
    named = {m.lower() for m in bare - {"GET", "POST"}}
    named |= {m.lower() for m in re.findall(r"ANVIL_PUSH_GATEWAY_([A-Z_]+[A-Z])", text)}
    named = {n.removeprefix("_") for n in named}
    assert named - set(GatewaySettings.model_fields) == set()
    assert own - named == set()
