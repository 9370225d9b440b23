"""Progress for long exports, imports and transfers: rich, on stderr, and only when wanted.

Shown when ``--progress`` is given, or by default when stderr is a terminal and the output is a
table; never with ``--no-progress``. It goes to stderr, so json/yaml on stdout stay clean.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from .output import Printer

__all__ = ["Steps", "wanted"]


def wanted(flag: bool | None, printer: Printer) -> bool:
    """``--progress``/``--no-progress`` when given; otherwise a table on a terminal's stderr."""
    if flag is not None:
        return flag
    return not printer.machine and sys.stderr.isatty()


class _Bytes(DownloadColumn):
    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("transfer") else Text("")


class _Speed(TransferSpeedColumn):
    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("transfer") else Text("")


class Steps:
    """One line per step: a spinner with a status text, or a byte counter with a bar.

    Disabled, every method does nothing, so commands call them unconditionally. The display
    starts with the first step and ``done`` removes it; a later step shows it again.
    """

    def __init__(self, enabled: bool) -> None:
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                _Bytes(),
                _Speed(),
                TimeElapsedColumn(),
                console=Console(file=sys.stderr, highlight=False),
                transient=True,
                # Never capture stdout: results printed there must stay there, whole.
                redirect_stdout=False,
                redirect_stderr=False,
            )
        self._task: TaskID | None = None
        self._running = False

    def __enter__(self) -> Steps:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.done()

    def done(self) -> None:
        """Remove the progress display (before printing results or asking a question)."""
        if self._progress is not None and self._running:
            if self._task is not None:
                self._progress.remove_task(self._task)
                self._task = None
            self._progress.stop()
            self._running = False

    def _switch(self, description: str, total: int | None, *, transfer: bool) -> None:
        if self._progress is None:
            return
        if not self._running:
            self._progress.start()
            self._running = True
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=total, transfer=transfer)

    def step(self, description: str) -> None:
        """Start a step of unknown length (waiting for a job)."""
        self._switch(description, None, transfer=False)

    def status(self, description: str) -> None:
        """Change the current step's text (a job's status and attempt)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description)

    def transfer(self, description: str, total: int | None) -> None:
        """Start a step that moves ``total`` bytes (None: unknown)."""
        self._switch(description, total, transfer=True)

    def advance(self, count: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, count)
