"""Rendering: rich tables for people; JSON and YAML (sorted keys, stable) for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Output", "Column", "Printer", "dump", "short_hash", "when"]

Column = tuple[str, str | Callable[[dict[str, Any]], Any]]


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def dump(data: Any, fmt: Output) -> str:
    """Machine-readable text: the same data always gives the same bytes."""
    if fmt is Output.yaml:
        return yaml.safe_dump(data, sort_keys=True, allow_unicode=True, default_flow_style=False)
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def short_hash(digest: Any) -> str:
    text = str(digest or "")
    algorithm, _, value = text.partition(":")
    return f"{algorithm}:{value[:12]}" if value else text[:19]


def when(value: Any) -> str:
    """An ISO timestamp trimmed to the second, for tables."""
    if not value:
        return "-"
    text = str(value).replace("T", " ")
    return text[:19] if len(text) >= 19 else text


def cell(value: Any) -> Text:
    if value is None or value == "":
        return Text("-")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, dict | list):
        return Text(json.dumps(value, sort_keys=True, ensure_ascii=False))
    return Text(str(value))  # Text, not a str: values are never read as rich markup


class Printer:
    """Prints a command's result in the chosen format; tables and notes only in table mode."""

    def __init__(self, fmt: Output) -> None:
        self.fmt = fmt

    @property
    def console(self) -> Console:
        # Built per call so that whatever sys.stdout is now (a pipe, a test runner) is used.
        return Console(file=sys.stdout, highlight=False, soft_wrap=True)

    @property
    def machine(self) -> bool:
        return self.fmt is not Output.table

    def raw(self, data: Any) -> None:
        sys.stdout.write(dump(data, self.fmt if self.machine else Output.json))
        sys.stdout.flush()

    def note(self, message: str) -> None:
        """A sentence for people; never printed in json/yaml mode."""
        if not self.machine:
            self.console.print(Text(message))

    def show(self, data: Any, render: Callable[[], None]) -> None:
        if self.machine:
            self.raw(data)
        else:
            render()

    def table(
        self, items: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str | None = None
    ) -> Table:
        table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
        for header, _ in columns:
            table.add_column(header, overflow="fold")
        for item in items:
            table.add_row(*(cell(get(item) if callable(get) else item.get(get)) for _, get in columns))
        return table

    def rows(
        self,
        items: Sequence[dict[str, Any]],
        columns: Sequence[Column],
        *,
        title: str | None = None,
        empty: str = "nothing to show",
    ) -> None:
        """A list: the items as given in json/yaml, a table otherwise."""
        if self.machine:
            self.raw(list(items))
        elif not items:
            self.note(empty)
        else:
            self.console.print(self.table(items, columns, title=title))

    def fields(self, data: dict[str, Any], keys: Sequence[Column], *, title: str | None = None) -> None:
        """One object: the object in json/yaml, a two-column table otherwise."""
        if self.machine:
            self.raw(data)
            return
        table = Table(title=title, title_justify="left", show_header=False, show_edge=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for label, get in keys:
            table.add_row(label, cell(get(data) if callable(get) else data.get(get)))
        self.console.print(table)


def error(line: str) -> None:
    """One line on stderr, plain text (rich would wrap it)."""
    print(line, file=sys.stderr, flush=True)
