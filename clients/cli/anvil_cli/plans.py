"""Import plans (docs/import-planning.md section 10) as tables for people.

In json/yaml the plan is printed as the worker serves it (``GET /v1/plans/{id}``); these
functions only draw the table view: per object status and action, the environments section,
warnings and problems, and on request each prompt's diff.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from .client import JSON
from .output import Column, Printer, short_hash

__all__ = ["render_plan", "render_applied", "plan_line", "plural"]


def plural(count: int, word: str) -> str:
    """``1 prompt``, ``2 prompts`` (words here take an -s)."""
    return f"{count} {word if count == 1 else word + 's'}"


def _head(head: Any) -> str:
    if not isinstance(head, dict):
        return ""
    digest = short_hash(head.get("digest")) if head.get("digest") else "no version"
    return f"v{head.get('number')} {digest}"


def _versions(item: dict[str, Any]) -> str:
    numbers = [v.get("number") for v in item.get("versions") or []]
    if not numbers:
        return ""
    if len(numbers) == 1:
        return f"1 (v{numbers[0]})"
    return f"{len(numbers)} (v{numbers[0]}-v{numbers[-1]})"


def _note(item: dict[str, Any]) -> str:
    notes = []
    if item.get("rename_to"):
        notes.append(f"as {item['rename_to']}")
    if item.get("role") == "dependency":
        notes.append("dependency")
    problems, warnings = len(item.get("problems") or []), len(item.get("warnings") or [])
    if problems:
        notes.append(f"{problems} problem{'s' if problems > 1 else ''}")
    if warnings:
        notes.append(f"{warnings} warning{'s' if warnings > 1 else ''}")
    return ", ".join(notes)


def _revision(value: Any) -> str:
    return "" if value is None else str(value)


PROJECT_COLUMNS: list[Column] = [
    ("PROJECT", "key"),
    ("STATUS", "status"),
    ("ACTION", "action"),
    ("NOTE", _note),
]
PROMPT_COLUMNS: list[Column] = [
    ("PROMPT", "key"),
    ("STATUS", "status"),
    ("ACTION", "action"),
    ("TARGET", lambda p: _head(p.get("target"))),
    ("BUNDLE", lambda p: _head(p.get("incoming"))),
    ("VERSIONS", _versions),
    ("NOTE", _note),
]
SET_COLUMNS: list[Column] = [
    ("PROMPT SET", "key"),
    ("STATUS", "status"),
    ("ACTION", "action"),
    ("MEMBERS", lambda s: len(s.get("members") or [])),
    ("CHANGES", lambda s: ", ".join(s.get("changes") or [])),
    ("NOTE", _note),
]
ENVIRONMENT_COLUMNS: list[Column] = [
    ("ENVIRONMENT", "key"),
    ("STATUS", "status"),
    ("ACTION", "action"),
    ("FROM", lambda e: _revision(e.get("from_revision"))),
    ("TO", lambda e: _revision(e.get("to_revision"))),
    ("REVISIONS", lambda e: len(e.get("revisions") or []) or ""),
    ("NOTE", _note),
]


def _counts(section: dict[str, Any], key: str) -> str:
    counted = section.get(key) or {}
    return ", ".join(f"{n} {name}" for name, n in counted.items() if n)


def plan_line(public: JSON) -> str:
    """One sentence: which plan, of which bundle, for which organisation, in which state."""
    state = public.get("status", "?")
    verdict = "applicable" if public.get("applicable") else "NOT applicable"
    changes = "" if public.get("changes") else ", no changes"
    return (
        f"plan {public.get('id')} for organisation {public.get('organisation')}: bundle "
        f"{short_hash(public.get('bundle'))} from {public.get('exporter')}, strategy "
        f"{public.get('strategy')} ({state}, {verdict}{changes})"
    )


def _summary(plan: dict[str, Any]) -> str:
    summary = plan.get("summary") or {}
    parts = []
    prompts = summary.get("prompts") or {}
    if prompts:
        statuses = _counts(prompts, "statuses") or "none"
        parts.append(f"prompts: {statuses}; {plural(prompts.get('versions', 0), 'version')} to write")
    environments = summary.get("environments") or {}
    if environments and any((environments.get("statuses") or {}).values()):
        revisions = environments.get("revisions", 0)
        parts.append(
            f"environments: {_counts(environments, 'statuses')}; {plural(revisions, 'revision')} to write"
        )
    return "; ".join(parts)


def _diff(printer: Printer, item: dict[str, Any]) -> None:
    printer.console.print(Text(f"diff {item['key']}:", style="bold"))
    for line in str(item["diff"]).splitlines():
        style = ""
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        printer.console.print(Text(line, style=style))


def render_plan(printer: Printer, public: JSON, *, diff: bool = False) -> None:
    """The plan as tables: projects, prompts, prompt sets, environments, then warnings/problems."""
    plan: dict[str, Any] = public.get("plan") or {}
    printer.note(plan_line(public))
    overrides = public.get("overrides") or {}
    if overrides:
        printer.note("overrides: " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    console = printer.console
    sections = (
        ("projects", PROJECT_COLUMNS),
        ("prompts", PROMPT_COLUMNS),
        ("prompt_sets", SET_COLUMNS),
    )
    for key, columns in sections:
        items = plan.get(key) or []
        if items:
            console.print(printer.table(items, columns))
    environments = plan.get("environments") or []
    if environments:
        console.print(Text("environments:", style="bold"))
        console.print(printer.table(environments, ENVIRONMENT_COLUMNS))
    if diff:
        for item in plan.get("prompts") or []:
            if item.get("diff"):
                _diff(printer, item)
            elif item.get("status") in ("fast-forward", "conflict"):
                printer.note(
                    f"no diff for {item['key']}: the contents are not at hand "
                    f"({_head(item.get('target'))} -> {_head(item.get('incoming'))})"
                )
    summary = _summary(plan)
    if summary:
        printer.note(summary)
    for warning in plan.get("warnings") or []:
        console.print(Text("warning: ", style="yellow").append(str(warning)))
    for reason in plan.get("reasons") or []:
        console.print(Text("problem: ", style="bold red").append(str(reason)))


def render_applied(printer: Printer, public: JSON) -> None:
    """What an applied plan wrote (the registry's import record)."""
    result = public.get("result") or {}
    created = result.get("created") or {}
    wrote = ", ".join(plural(n, name.replace("_", " ").removesuffix("s")) for name, n in created.items() if n)
    printer.note(
        f"applied plan {public.get('id')} to organisation {public.get('organisation')}: "
        + (f"created {wrote}" if wrote else "nothing to write (already up to date)")
    )
    versions = result.get("versions") or []
    if versions:
        rows = [{**v, "key": f"{v.get('project')}/{v.get('name')}"} for v in versions]
        columns: list[Column] = [
            ("PROMPT", "key"),
            ("VERSION", "number"),
            ("DIGEST", lambda v: short_hash(v.get("digest"))),
        ]
        printer.console.print(printer.table(rows, columns))
    revisions = result.get("revisions") or []
    if revisions:
        rows = [{**r, "key": f"{r.get('project')}/{r.get('environment')}"} for r in revisions]
        printer.console.print(printer.table(rows, [("ENVIRONMENT", "key"), ("REVISION", "number")]))
