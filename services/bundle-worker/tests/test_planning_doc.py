"""docs/import-planning.md stays in step with the planner it describes."""

from __future__ import annotations

import re
from pathlib import Path

from anvil_bundle_worker.planning import RENAME_INFIX, STRATEGIES
from anvil_bundle_worker.planning import model as plan_model
from anvil_bundle_worker.planning.prompts import RENAME_PROBES
from anvil_bundle_worker.planning.testing import Exporter, TargetModel

DOC = (Path(__file__).resolve().parents[3] / "docs" / "import-planning.md").read_text(encoding="utf-8")
_SEPARATOR = re.compile(r"^:?-+:?$")


def _table(*header: str) -> list[list[str]]:
    """The body rows of the one pipe table whose header starts with ``header``."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*DOC.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(_SEPARATOR.match(c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    found = [t[1:] for t in tables if tuple(c.lower() for c in t[0][: len(header)]) == header]
    assert len(found) == 1, f"expected one table with header {header}, found {len(found)}"
    return found[0]


def _first_spans(rows: list[list[str]], column: int = 0) -> list[str]:
    return [re.findall(r"`([^`]+)`", row[column])[0] for row in rows]


def test_the_doc_has_a_version_line() -> None:
    assert DOC.splitlines()[0] == "# Anvil import planning — Version 1"


def test_statuses_actions_and_strategies_are_the_codes() -> None:
    assert _first_spans(_table("status", "when")) == list(plan_model.PROMPT_STATUSES)
    assert _first_spans(_table("strategy", "action on a conflict")) == list(STRATEGIES)
    assert _first_spans(_table("action", "meaning")) == list(plan_model.PROMPT_ACTIONS)
    assert sorted(_first_spans(_table("set status"))) == sorted(plan_model.SET_STATUSES)
    assert sorted(_first_spans(_table("set status"), 1)) == sorted(plan_model.SET_ACTIONS)
    assert sorted(_first_spans(_table("environment status"))) == sorted(plan_model.ENVIRONMENT_STATUSES)
    assert sorted(_first_spans(_table("environment status"), 1)) == sorted(plan_model.ENVIRONMENT_ACTIONS)


def test_the_rename_rule_is_the_codes() -> None:
    assert f"<name>{RENAME_INFIX}<h>" in DOC
    assert f"{['one', 'two', 'three', 'four', 'five'][RENAME_PROBES - 1]} at a time" in DOC


def test_the_plan_document_members_are_the_codes() -> None:
    exporter = Exporter()
    exporter.prompt("support/greeting", "A")
    exporter.prompt_set("support", "app", ["greeting"])
    exporter.publish("support", "prod", {"greeting": 1})
    manifest, contents = exporter.export(environments=True)
    data = TargetModel().plan(manifest, contents).to_json()
    rows = {_first_spans([row])[0]: row[1] for row in _table("member", "value")}
    assert list(rows) == list(data)
    for section in ("projects", "prompts", "prompt_sets", "environments"):
        listed = re.match(r"`\{([^}]*)\}`", rows[section])
        assert listed, section
        assert [m.strip() for m in listed.group(1).split(",")] == list(data[section][0]), section
    revision = re.search(r"a revision is `\{([^}]*)\}`", rows["environments"])
    assert revision
    assert [m.strip() for m in revision.group(1).split(",")] == list(data["environments"][0]["revisions"][0])
