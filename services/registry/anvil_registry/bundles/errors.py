"""Bundle endpoint errors, rendered as problem+json (docs/api.md section 7)."""

from __future__ import annotations

from anvil_common.problems import Conflict, ValidationFailed

__all__ = [
    "ImportTargetChanged",
    "ImportIdReused",
    "DigestMismatch",
    "InvalidImport",
    "PromptWithoutVersions",
]


class ImportTargetChanged(Conflict):
    """An expectation of the plan no longer holds; ``changes`` lists each difference."""

    code, title = "import-target-changed", "Import target changed since the plan"


class ImportIdReused(Conflict):
    code, title = "import-id-reused", "Import id already used for another import"


class DigestMismatch(ValidationFailed):
    code, title = "digest-mismatch", "Content does not match its digest"


class InvalidImport(ValidationFailed):
    code, title = "invalid-import", "Import cannot be applied as written"


class PromptWithoutVersions(Conflict):
    code, title = "prompt-without-versions", "Prompt has no version to export"
