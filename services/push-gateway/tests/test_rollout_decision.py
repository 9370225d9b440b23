"""Rollout decisions (anvil_push_gateway.rollout.decision), pure: when a revision is pending,
healthy or failing under a policy, and to which earlier revision a failing one is rolled back."""

from __future__ import annotations

import pytest

from anvil_push_gateway.rollout.decision import (
    Decision,
    Policy,
    RevisionCounts,
    decide,
    last_good,
    verdict_of,
)

POLICY = Policy(max_nack_ratio=0.5, min_reports=5)


def counts(revision: int, acks: int, nacks: int, rollback_of: int | None = None) -> RevisionCounts:
    return RevisionCounts(revision=revision, rollback_of=rollback_of, acks=acks, nacks=nacks)


GOOD_1 = counts(1, acks=6, nacks=0)
BAD_2 = counts(2, acks=0, nacks=6)


def decide_on(
    candidate: RevisionCounts,
    history: list[RevisionCounts],
    policy: Policy = POLICY,
    *,
    latest: int | None = None,
    handled: bool = False,
) -> Decision:
    return decide(
        policy, candidate, history, latest=candidate.revision if latest is None else latest, handled=handled
    )


# -- verdicts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acks", "nacks", "policy", "verdict"),
    [
        (0, 0, POLICY, "pending"),
        (0, 4, POLICY, "pending"),  # below min_reports, however bad
        (4, 0, POLICY, "pending"),
        (5, 0, POLICY, "healthy"),
        (3, 2, POLICY, "healthy"),
        (5, 5, POLICY, "healthy"),  # exactly at the threshold passes
        (4, 5, POLICY, "failing"),
        (0, 5, POLICY, "failing"),
        (7, 3, Policy(0.3, 10), "healthy"),  # 3 / 10 is exactly 0.3, whatever 0.3 * 10 rounds to
        (6, 4, Policy(0.3, 10), "failing"),
        (9, 1, Policy(0.1, 10), "healthy"),
        (8, 2, Policy(0.1, 10), "failing"),
        (2, 1, Policy(1 / 3, 3), "healthy"),
        (0, 10, Policy(1.0, 1), "healthy"),  # a ratio of 1 never fails
        (0, 1, Policy(0.5, 1), "failing"),
    ],
)
def test_a_revision_is_pending_below_min_reports_and_fails_only_above_the_ratio(acks, nacks, policy, verdict):
    assert verdict_of(policy, counts(3, acks, nacks)) == verdict


# -- deciding on the current revision ----------------------------------------------------------


def test_a_revision_with_too_few_reports_waits_even_if_every_report_is_a_nack():
    decision = decide_on(counts(2, acks=0, nacks=4), [GOOD_1])
    assert decision == Decision(
        "wait", "pending", "too-few-reports", "4 of 5 reports needed for revision 2", None
    )


def test_a_revision_with_no_reports_waits():
    decision = decide_on(counts(2, acks=0, nacks=0), [GOOD_1])
    assert (decision.action, decision.why) == ("wait", "too-few-reports")


def test_a_revision_exactly_at_the_threshold_is_healthy_and_left_alone():
    decision = decide_on(counts(2, acks=3, nacks=3), [GOOD_1])
    assert decision == Decision(
        "none", "healthy", "healthy", "3 of 6 clients nacked revision 2: within the policy", None
    )


def test_a_failing_revision_is_rolled_back_to_the_last_revision_that_met_the_policy():
    decision = decide_on(counts(2, acks=2, nacks=4), [GOOD_1])
    assert decision == Decision(
        "rollback", "failing", "failing", "4 of 6 clients nacked revision 2: rolling back to revision 1", 1
    )


def test_the_target_is_the_newest_good_revision_before_the_candidate():
    history = [GOOD_1, counts(2, acks=5, nacks=1), counts(3, acks=10, nacks=0)]
    assert decide_on(counts(4, acks=0, nacks=5), history).to_revision == 3
    # History is a set of revisions: its order does not matter.
    assert decide_on(counts(4, acks=0, nacks=5), list(reversed(history))).to_revision == 3


def test_revisions_that_failed_waited_or_were_never_counted_are_not_targets():
    history = [
        counts(1, acks=5, nacks=0),
        counts(2, acks=1, nacks=9),  # failed
        counts(3, acks=2, nacks=0),  # pending when it was replaced
        # 4 was never counted (published and replaced before any check saw it)
    ]
    assert decide_on(counts(5, acks=0, nacks=8), history).to_revision == 1


def test_history_is_judged_under_the_current_policy():
    history = [counts(1, acks=5, nacks=0), counts(2, acks=3, nacks=0)]
    assert decide_on(counts(3, acks=0, nacks=5), history).to_revision == 1
    lenient = Policy(max_nack_ratio=0.5, min_reports=3)
    assert decide_on(counts(3, acks=0, nacks=5), history, lenient).to_revision == 2


def test_revisions_at_or_after_the_candidate_are_never_targets():
    history = [GOOD_1, counts(2, acks=9, nacks=0), counts(3, acks=9, nacks=0)]
    assert last_good(POLICY, history, before=2) == 1
    decision = decide_on(counts(2, acks=0, nacks=9), history, latest=2)
    assert decision.to_revision == 1


def test_a_good_rollback_revision_resolves_to_the_revision_whose_content_it_restores():
    # 2 failed and was rolled back to 1 as revision 3, which the fleet took well: 1's content is
    # the last good one, and the registry's history names 1, not 3.
    history = [GOOD_1, counts(2, acks=0, nacks=6), counts(3, acks=6, nacks=0, rollback_of=1)]
    decision = decide_on(counts(4, acks=1, nacks=5), history)
    assert (decision.action, decision.to_revision) == ("rollback", 1)


def test_a_chain_of_rollbacks_resolves_to_the_original_revision():
    history = [
        counts(1, acks=6, nacks=0),
        counts(3, acks=6, nacks=0, rollback_of=1),
        counts(5, acks=6, nacks=0, rollback_of=3),
    ]
    assert last_good(POLICY, history, before=6) == 1


def test_a_good_rollback_whose_original_was_never_counted_still_names_the_original():
    # An operator rolled 2 back to 1 (never counted by the gateway) as 3, which met the policy.
    history = [counts(2, acks=0, nacks=6), counts(3, acks=6, nacks=0, rollback_of=1)]
    assert decide_on(counts(4, acks=0, nacks=6), history).to_revision == 1


def test_a_rollback_of_which_the_history_makes_no_sense_ends_the_walk():
    # rollback_of at or above the revision cannot be in a signed manifest; it must not loop.
    assert last_good(POLICY, [counts(3, acks=6, nacks=0, rollback_of=3)], before=4) == 3
    assert last_good(POLICY, [counts(3, acks=6, nacks=0, rollback_of=7)], before=4) == 3


def test_a_failing_rollback_revision_is_not_rolled_back_again():
    # Rolling 3 (1's content) back would go to 1 again: the same content, failing the same way.
    history = [GOOD_1, counts(2, acks=0, nacks=6)]
    decision = decide_on(counts(3, acks=0, nacks=6, rollback_of=1), history)
    assert decision == Decision(
        "none",
        "failing",
        "is-rollback",
        "6 of 6 clients nacked revision 3, but it is a rollback to revision 1: "
        "a failing rollback is not rolled back automatically",
        None,
    )


def test_a_decision_about_a_revision_that_is_no_longer_current_is_none():
    decision = decide_on(BAD_2, [GOOD_1], latest=3)
    assert decision == Decision("none", "failing", "stale", "revision 2 is no longer current (3 is)", None)


def test_a_revision_already_rolled_back_is_not_rolled_back_twice():
    decision = decide_on(BAD_2, [GOOD_1], handled=True)
    assert (decision.action, decision.verdict, decision.why) == ("none", "failing", "handled")


def test_a_failing_revision_is_left_alone_when_automatic_rollback_is_off():
    decision = decide_on(BAD_2, [GOOD_1], Policy(0.5, 5, auto_rollback=False))
    assert decision == Decision(
        "none", "failing", "auto-rollback-off", "6 of 6 clients nacked revision 2; automatic rollback is off"
    )


@pytest.mark.parametrize(
    "history",
    [
        [],
        [counts(1, acks=2, nacks=0)],  # pending
        [counts(1, acks=0, nacks=5)],  # failed
    ],
)
def test_nothing_is_rolled_back_when_no_earlier_revision_met_the_policy(history):
    decision = decide_on(BAD_2, history)
    assert decision == Decision(
        "none",
        "failing",
        "no-good-revision",
        "6 of 6 clients nacked revision 2, and no earlier revision met the policy: nothing to roll back to",
    )


def test_only_the_candidates_own_counts_decide_its_verdict():
    # The candidate's counts are revision_counts(N): clients whose last ack is N, and standing
    # nacks of N. A fleet that nacked the previous revision does not make N fail.
    previous = counts(1, acks=1, nacks=9)
    decision = decide_on(counts(2, acks=6, nacks=0), [previous])
    assert (decision.action, decision.verdict) == ("none", "healthy")
