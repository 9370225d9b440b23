"""What the import job reads of the target registry: its import state (B2), asked for until the
planner needs nothing more, and the contents of the target heads that the plan's diffs show."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ..planning import merge_state, needed_target_digests, state_query
from ..registry_client import RegistryClient, RegistryProblem

__all__ = ["MAX_STATE_ROUNDS", "MAX_DIFFS", "StateIncomplete", "read_target_state", "read_target_contents"]

# Each round answers what the previous one revealed (rename candidates, ...): a handful at most.
MAX_STATE_ROUNDS = 20
# Diffs beyond this many changed prompts show only the two digests (the plan stays complete).
MAX_DIFFS = 200
_FETCHES_AT_ONCE = 8


class StateIncomplete(Exception):
    """The registry kept answering without covering what the planner asked for."""


async def read_target_state(
    registry: RegistryClient,
    manifest: Mapping[str, Any],
    *,
    organisation: str,
    limit: str | None,
    strategy: str,
    overrides: Mapping[str, str],
) -> dict[str, Any]:
    """The target's import state for everything planning ``manifest`` looks at."""
    state: dict[str, Any] | None = None
    for _ in range(MAX_STATE_ROUNDS):
        query = state_query(manifest, state, strategy=strategy, overrides=overrides)
        if state is not None and not query["projects"]:
            return state
        more = await registry.read_import_state(organisation, query, project=limit)
        state = more if state is None else merge_state(state, more)
    raise StateIncomplete(f"the registry's import state was still incomplete after {MAX_STATE_ROUNDS} rounds")


async def read_target_contents(
    registry: RegistryClient,
    manifest: Mapping[str, Any],
    state: Mapping[str, Any],
    *,
    organisation: str,
    limit: str | None,
) -> dict[str, dict[str, Any]]:
    """Contents of the target heads the diffs compare with (fast-forward and conflict prompts).

    A head that moved or vanished since the state was read is left out (its diff shows digests
    only; the apply's expectations catch the move anyway).
    """
    needed = set(needed_target_digests(manifest, state))
    heads: list[tuple[str, str, int, str]] = []
    for slug, project in sorted((state.get("projects") or {}).items()):
        for name, prompt in sorted(((project or {}).get("prompts") or {}).items()):
            if prompt and prompt["versions"] and prompt["versions"][-1] in needed:
                heads.append((slug, name, int(prompt["head"]), prompt["versions"][-1]))
                needed.discard(prompt["versions"][-1])  # one fetch per content
    gate = asyncio.Semaphore(_FETCHES_AT_ONCE)

    async def fetch(slug: str, name: str, number: int, digest: str) -> tuple[str, dict[str, Any]] | None:
        async with gate:
            try:
                version = await registry.get_prompt_version(organisation, slug, name, number, limit=limit)
            except RegistryProblem as exc:
                if exc.status == 404:
                    return None
                raise
        content = version.get("content")
        if version.get("content_hash") != digest or not isinstance(content, dict):
            return None
        return digest, content

    # A TaskGroup: when one fetch fails, the others are cancelled, not left running.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(fetch(*head)) for head in heads[:MAX_DIFFS]]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return dict(item for item in (task.result() for task in tasks) if item is not None)
