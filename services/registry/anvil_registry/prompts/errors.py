"""Prompt errors, rendered as problem+json (the ``code`` is the stable part of the ``type``)."""

from __future__ import annotations

from anvil_common.problems import Conflict, NotFound, ValidationFailed

__all__ = [
    "PromptExists",
    "PromptVersionNotFound",
    "InvalidPromptName",
    "InvalidPrompt",
    "PromptTooLarge",
    "UnresolvedPartial",
    "CyclicReference",
    "PromptInUse",
]


class PromptExists(Conflict):
    code, title = "prompt-exists", "Prompt exists"


class PromptVersionNotFound(NotFound):
    """Same ``not-found`` type as every other missing resource."""


class InvalidPromptName(ValidationFailed):
    code, title = "invalid-prompt-name", "Invalid prompt name"


class InvalidPrompt(ValidationFailed):
    code, title = "invalid-prompt", "Invalid prompt content"


class PromptTooLarge(ValidationFailed):
    code, title = "prompt-too-large", "Prompt content too large"


class UnresolvedPartial(ValidationFailed):
    code, title = "unresolved-partial", "Unresolved partial reference"


class CyclicReference(ValidationFailed):
    code, title = "cyclic-reference", "Cyclic partial reference"


class PromptInUse(Conflict):
    code, title = "prompt-in-use", "Prompt in use"
