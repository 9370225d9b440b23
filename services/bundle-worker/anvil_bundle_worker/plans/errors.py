"""Plan problems (problem+json types)."""

from __future__ import annotations

from anvil_common.problems import Conflict, Gone, NotFound

__all__ = [
    "PlanNotFound",
    "PlanExpired",
    "PlanNotApplicable",
    "PlanNotOpen",
    "PlanAlreadyApplied",
    "ImportTargetChanged",
]


class PlanNotFound(NotFound):
    code, title = "plan-not-found", "Plan not found"


class PlanExpired(Gone):
    code, title = "plan-expired", "Plan expired"


class PlanNotApplicable(Conflict):
    """The plan has unresolved problems (``blocked`` lists them); re-plan with another strategy."""

    code, title = "plan-not-applicable", "Plan cannot be applied"


class PlanNotOpen(Conflict):
    """The plan was rejected, went stale or failed: it can be neither applied nor rejected."""

    code, title = "plan-not-open", "Plan is closed"


class PlanAlreadyApplied(Conflict):
    code, title = "plan-already-applied", "Plan already applied"


class ImportTargetChanged(Conflict):
    """The registry refused the apply: the target changed since the plan read it (now stale)."""

    code, title = "import-target-changed", "The target changed since the plan was made"
