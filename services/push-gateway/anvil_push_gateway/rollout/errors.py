"""Rollout problems (problem+json types)."""

from __future__ import annotations

from anvil_common.problems import NotFound

__all__ = ["NoRolloutPolicy"]


class NoRolloutPolicy(NotFound):
    """The environment exists and has no rollout policy."""

    code, title = "no-rollout-policy", "No rollout policy"
