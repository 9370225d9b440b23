"""The errors a command may end with, each rendered as one line on stderr with its exit code."""

from __future__ import annotations

__all__ = ["CliError", "UsageProblem", "Failure", "ApiError", "one_line"]


def one_line(text: str, limit: int = 500) -> str:
    """Collapse whitespace so a message can never spill onto a second line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class CliError(Exception):
    """An expected error: printed as ``error: ...`` without a traceback."""

    exit_code = 1

    def line(self) -> str:
        return f"error: {one_line(str(self))}"


class UsageProblem(CliError):
    """The command line (or the context it runs in) is incomplete or wrong: exit 2."""

    exit_code = 2


class Failure(CliError):
    """The registry could not be reached, answered nonsense, or a check failed: exit 1."""


class ApiError(CliError):
    """The registry refused or failed a request with an RFC 9457 problem (or a bare status)."""

    def __init__(self, *, status: int, title: str, detail: str, type_: str) -> None:
        super().__init__(f"{title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_

    def line(self) -> str:
        detail = f": {one_line(self.detail, 400)}" if self.detail and self.detail != self.title else ""
        return f"error: {one_line(self.title, 200)}{detail} ({self.status} {one_line(self.type, 200)})"
