"""The measurement holdout: a stable share of never-messaged customers get their first message later."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.leap import wire
from leap_tracker.outreach import decision as d
from leap_tracker.outreach.decision import (
    Action,
    Because,
    FollowUpChange,
    History,
    OutreachPolicy,
    Trigger,
    decide,
    in_holdout,
)
from leap_tracker.outreach.templates import choose_variant
from tests.builders import ACTIONABLE, LAST_INTERACTION, entry, snapshot, utility

POLICY = OutreachPolicy(holdout_percent=10, holdout=timedelta(hours=168))
REASON = d.UTILITY_NOT_CONNECTED
IDS = [f"CAISO_{n:08d}_ref-{n}" for n in range(10_000)]


def stuck(ref_id: str, **changes: Any) -> Any:
    return snapshot(entry(wire.CONNECTION_PARTIAL, [utility()], ref_id=ref_id, **changes))


def _ref(held: bool, percent: int = POLICY.holdout_percent) -> str:
    """A Reference ID whose entry is (or is not) in the holdout for REASON."""
    return next(
        ref
        for ref in (f"ref-{n}" for n in itertools.count())
        if in_holdout(stuck(ref).entry_id, REASON, percent) is held
    )


HELD, NOT_HELD = stuck(_ref(True)), stuck(_ref(False))


@pytest.mark.parametrize("percent", [1, 10, 25, 50])
def test_the_holdout_takes_the_configured_share(percent: int) -> None:
    held = sum(in_holdout(entry_id, REASON, percent) for entry_id in IDS)

    assert abs(held - percent * len(IDS) / 100) <= 3 * (len(IDS) * percent / 100) ** 0.5


def test_zero_holds_nobody_out() -> None:
    assert not any(in_holdout(entry_id, REASON, 0) for entry_id in IDS)


def test_each_reason_has_its_own_holdout() -> None:
    by_reason = {r: {e for e in IDS if in_holdout(e, r, 10)} for r in (d.NOT_STARTED, REASON)}

    both = by_reason[d.NOT_STARTED] & by_reason[REASON]
    assert 0 < len(both) < min(map(len, by_reason.values())) / 2  # about 1% of all, not 10%


def test_the_holdout_takes_an_even_share_of_every_variant() -> None:
    """Independent of the variant hash: otherwise one variant's customers would be the control."""
    variants = Counter(choose_variant(e, REASON, "abc") for e in IDS if in_holdout(e, REASON, 30))

    assert sorted(variants) == ["a", "b", "c"]
    assert max(variants.values()) - min(variants.values()) < 0.15 * sum(variants.values())


def test_a_held_out_customer_is_suppressed_until_the_release() -> None:
    release = ACTIONABLE + POLICY.holdout

    result = decide(HELD, History(), POLICY, ACTIONABLE, Trigger.EVENT)

    assert (result.action, result.because) == (Action.SUPPRESS, Because.HOLDOUT)
    assert result.next_attempt_at == release
    assert result.follow_up == FollowUpChange(release, create=True)  # the sweep sends it then
    assert decide(HELD, History(), POLICY, release - timedelta(seconds=1), Trigger.FOLLOW_UP).because is (
        Because.HOLDOUT
    )


def test_the_release_sends_the_first_message() -> None:
    release = ACTIONABLE + POLICY.holdout

    result = decide(HELD, History(follow_up_at=release), POLICY, release, Trigger.FOLLOW_UP)

    assert (result.action, result.attempt) == (Action.SEND, 1)


def test_a_sweep_at_the_scheduled_follow_up_changes_nothing_until_the_release() -> None:
    release = ACTIONABLE + POLICY.holdout

    result = decide(HELD, History(follow_up_at=release), POLICY, ACTIONABLE, Trigger.FOLLOW_UP)

    assert (result.because, result.follow_up) == (Because.HOLDOUT, None)


def test_the_others_are_messaged_as_before() -> None:
    assert decide(NOT_HELD, History(), POLICY, ACTIONABLE, Trigger.EVENT).action is Action.SEND
    assert decide(HELD, History(), replace(POLICY, holdout_percent=0), ACTIONABLE, Trigger.EVENT).action is (
        Action.SEND
    )


def test_a_customer_messaged_before_is_not_held_out() -> None:
    """The report's comparison cohort is customers not messaged yet: holding out later messages would
    delay reminders without measuring anything."""
    history = History(attempts=1, last_sent_at=ACTIONABLE - timedelta(days=3), last_reason=d.NOT_STARTED)

    assert decide(HELD, history, POLICY, ACTIONABLE, Trigger.EVENT).action is Action.SEND


def test_a_new_interaction_restarts_the_delay() -> None:
    later = LAST_INTERACTION + timedelta(days=2)
    active = stuck(HELD.ref_id, last=later)

    result = decide(active, History(), POLICY, later + timedelta(hours=1), Trigger.EVENT)

    assert result.next_attempt_at == later + timedelta(hours=1) + POLICY.holdout


def test_completion_still_wins_over_the_holdout() -> None:
    done = snapshot(
        entry(wire.CONNECTION_COMPLETED, [utility(status=wire.UTILITY_CONNECTED)], ref_id=HELD.ref_id)
    )

    assert decide(done, History(), POLICY, ACTIONABLE, Trigger.EVENT).because is Because.COMPLETED


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=400),
    st.lists(st.integers(min_value=0, max_value=48), min_size=1, max_size=30),
)
def test_a_held_out_first_message_never_goes_before_the_release(
    percent: int, ref_number: int, gaps_hours: list[int]
) -> None:
    snap = stuck(f"ref-{ref_number}")
    policy = replace(POLICY, holdout_percent=percent)
    held = in_holdout(snap.entry_id, REASON, percent)
    now, first = ACTIONABLE, None
    for step, gap in enumerate(gaps_hours):
        now += timedelta(hours=gap)
        result = decide(snap, History(), policy, now, Trigger.FOLLOW_UP if step % 2 else Trigger.EVENT)
        if result.action is Action.SEND:
            first = now
            break
        assert result.because is Because.HOLDOUT
    if first is not None:
        assert not held or first >= ACTIONABLE + policy.holdout
        assert held or first == ACTIONABLE + timedelta(hours=gaps_hours[0])
