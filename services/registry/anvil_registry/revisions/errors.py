from __future__ import annotations

from anvil_common.problems import Conflict, Gone, NotFound, ValidationFailed

# One class per problem type: partial errors are raised at version creation and at publish.
from ..prompts.errors import CyclicReference, UnresolvedPartial

__all__ = ["CyclicReference", "UnresolvedPartial"]


class InvalidPartial(ValidationFailed):
    code, title = "invalid-partial", "Partial is not a text template"


class UnknownPrompt(ValidationFailed):
    code, title = "unknown-prompt", "Unknown prompt or version"


class ArchivedPrompt(ValidationFailed):
    code, title = "archived-prompt", "Archived prompts cannot be published"


class RevisionNotFound(NotFound):
    code, title = "revision-not-found", "Revision not found"


class NoRevision(NotFound):
    code, title = "no-revision", "Nothing published yet"


class EnvironmentArchived(Gone):
    code, title = "environment-archived", "Environment archived"


class IdempotencyKeyReused(ValidationFailed):
    code, title = "idempotency-key-reused", "Idempotency-Key reused with a different request"


class CrossProjectPromotion(Conflict):
    code, title = "cross-project-promotion", "Promotion stays within a project"


class InvalidRollbackTarget(ValidationFailed):
    code, title = "invalid-rollback-target", "Invalid rollback target"


class PartialsTooDeep(ValidationFailed):
    code, title = "partials-too-deep", "Partials nest too deep"
