"""Prompt set errors, rendered as problem+json."""

from __future__ import annotations

from anvil_common.problems import Conflict, ValidationFailed

__all__ = ["PromptSetExists", "UnknownPrompt"]


class PromptSetExists(Conflict):
    code, title = "prompt-set-exists", "Prompt set exists"


class UnknownPrompt(ValidationFailed):
    code, title = "unknown-prompt", "Unknown prompt"
