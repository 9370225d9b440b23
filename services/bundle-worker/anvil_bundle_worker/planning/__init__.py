"""Import planning: what applying a bundle would do to a target organisation (pure; no I/O).

The worker asks the registry for the target's state (``state_query`` gives the import-state
body; ask again with the merged answer until it returns no projects, merging with
``merge_state``), fetches the contents of the target heads the diffs need
(``needed_target_digests``), then calls ``plan_import``. ``plan_to_apply`` turns an applicable
plan into the apply body, whose ``expect`` holds every head the plan read, so a target that
changed since makes the apply fail. ``Plan.to_json`` is the stored and served form;
``plan_from_json`` reads it back. docs/import-planning.md is the normative description.

Rules (the doc states these):

- Prompts are matched by project slug and name. **new**: absent on the target (action
  ``create``, every listed version). **identical**: the bundle's latest digest is any version of
  the target (``none``), also an older one. **fast-forward**: the target head's digest is in the
  bundle prompt's ``ancestors`` or ``versions``, or the target prompt has no version yet
  (``append`` the listed versions after the head's last position there). **conflict**: anything
  else (diverged).
- Strategies decide conflicts only: ``fail`` (action ``blocked``: the plan is not applicable),
  ``skip``, ``overwrite`` (append the bundle's latest on top of the target head) and ``rename``.
  Per-object overrides ``{"project/name": strategy}`` beat the strategy; an override naming no
  prompt of the bundle is a ``PlanError``. An override ``skip`` also leaves a new or fast-forward
  prompt untouched (the only way to exclude one); the other overrides only matter for conflicts.
- Rename: the prompt is imported as a new prompt ``<name>.import-<first 8 hex of the bundle's
  latest digest>``, with every listed version; if that name is taken on the target or by another
  prompt of the bundle or plan, ``-2``, ``-3``, ... is appended. When the name would break the
  grammar (segment of at most 63 characters, name of at most 200), the last segment of the
  original name is shortened to fit. A candidate that already holds the bundle's latest digest
  (an earlier import renamed it) is reused with action ``none``, so re-planning is a no-op.
- Archived objects are read-only on the target: versions for an archived prompt, a change to an
  archived set or environment, any write into an archived project, an archived set member are
  problems. A prompt the import creates is archived when it is archived on the exporter.
- Partials keep their text. A reference to a renamed prompt keeps pointing at the original name,
  which exists on the target (rename happens only on conflict): a warning says so. A reference
  to a prompt that will not exist (an override ``skip`` of a new prompt) is a dangling
  reference: the dependent is not applicable. A pinned reference ``name@N`` whose version N will
  not exist on the target is a problem; one whose version N will hold other content is a warning.
- Prompt sets: ``create``, ``update`` (members or description differ; the set is replaced,
  never a conflict, whatever the strategy) or ``none``. Every member must exist after the apply.
- Environments (with ``options.environments``): a new one replays every bundle revision in
  order (a restore reproduces the history, renumbered from 1); an existing one gets the bundle's
  current revision as one new revision (N to N+1) when the served prompt -> digest mapping
  differs, else nothing. Every served digest must be a version of that prompt after the apply;
  a served version keeps its number where the target's version of that number has the digest,
  and a replayed rollback keeps its kind when its source revision is replayed too.
- Diffs (fast-forward and conflict) compare the target head with the bundle's latest as
  pretty JSON (sorted keys, 2-space indent), when both contents are given; otherwise the plan
  shows only the two digests.
"""

from __future__ import annotations

from .apply import plan_to_apply
from .codec import plan_from_json
from .model import (
    STRATEGIES,
    EnvironmentPlan,
    Head,
    Plan,
    PlanError,
    PlanNotApplicable,
    ProjectHeads,
    ProjectPlan,
    PromptPlan,
    RevisionPlan,
    SetPlan,
    VersionRef,
)
from .plan import bundle_digest, needed_target_digests, plan_import, state_query
from .prompts import RENAME_INFIX, content_diff, rename_candidates
from .state import merge_state

__all__ = [
    "RENAME_INFIX",
    "STRATEGIES",
    "EnvironmentPlan",
    "Head",
    "Plan",
    "PlanError",
    "PlanNotApplicable",
    "ProjectHeads",
    "ProjectPlan",
    "PromptPlan",
    "RevisionPlan",
    "SetPlan",
    "VersionRef",
    "bundle_digest",
    "content_diff",
    "merge_state",
    "needed_target_digests",
    "plan_from_json",
    "plan_import",
    "plan_to_apply",
    "rename_candidates",
    "state_query",
]
