"""The outreach decision, table-driven: every branch of the guide's steps, then time and history."""

from __future__ import annotations

import itertools
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
    CustomerKind,
    FollowUpChange,
    History,
    OutreachPolicy,
    Trigger,
    assess,
    decide,
)
from tests.builders import (
    ACTIONABLE,
    LAST_INTERACTION,
    PGE,
    SCE,
    SDGE,
    agreements,
    entry,
    snapshot,
    utility,
)

CONNECTED, NOT_CONNECTED, ERROR = wire.UTILITY_CONNECTED, wire.UTILITY_NOT_CONNECTED, wire.UTILITY_ERROR
PARTIAL, ERR = wire.CONNECTION_PARTIAL, wire.CONNECTION_ERROR
ALL_CONNECTED = [utility(status=CONNECTED)]

# (id, entry, expected reason, expected because, utility the message is about)
ASSESS_CASES: list[tuple[str, dict[str, Any], str | None, Because | None, str | None]] = [
    # step 1: connection_status
    ("completed", entry(wire.CONNECTION_COMPLETED, ALL_CONNECTED), None, Because.COMPLETED, None),
    ("not started", entry(wire.CONNECTION_NOT_STARTED), d.NOT_STARTED, None, None),
    (
        "unknown connection status",
        entry("ON_HOLD", [utility()]),
        None,
        Because.UNKNOWN_CONNECTION_STATUS,
        None,
    ),
    ("partial, no utility picked yet", entry(PARTIAL, []), d.UTILITY_NOT_CONNECTED, None, None),
    # step 2: required utilities
    ("required not connected", entry(PARTIAL, [utility()]), d.UTILITY_NOT_CONNECTED, None, SDGE),
    (
        "required in an unknown status",
        entry(PARTIAL, [utility(status="AWAITING_UTILITY")]),
        d.UTILITY_NOT_CONNECTED,
        None,
        SDGE,
    ),
    (
        "error with an unseen code",
        entry(ERR, [utility(status=ERROR, error_code="UTILITY_SAID_NO")]),
        d.UTILITY_ERROR_UNKNOWN,
        None,
        SDGE,
    ),
    ("error without a code", entry(ERR, [utility(status=ERROR)]), d.UTILITY_ERROR_UNKNOWN, None, SDGE),
    (
        "commercial: the one not connected yet",
        entry(PARTIAL, [utility(SDGE, CONNECTED), utility(SCE, NOT_CONNECTED)]),
        d.UTILITY_NOT_CONNECTED,
        None,
        SCE,
    ),
    (
        "commercial: an error comes before a not-connected",
        entry(ERR, [utility(SDGE, NOT_CONNECTED), utility(SCE, ERROR, error_code=wire.ERROR_MFA_FAILED)]),
        "utility_error.MFA_FAILED",
        None,
        SCE,
    ),
    (
        "commercial: a connected extra utility is not 'other utility'",
        entry(PARTIAL, [utility(SDGE), utility(SCE), utility(PGE, CONNECTED, required=False)]),
        d.UTILITY_NOT_CONNECTED,
        None,
        SDGE,
    ),
    (
        "commercial: a failed extra utility is ignored",
        entry(PARTIAL, [utility(SDGE, CONNECTED), utility(SCE, CONNECTED), utility(PGE, ERROR, False, "X")]),
        None,
        Because.NOTHING_OUTSTANDING,
        None,
    ),
    (
        "residential: other utility connected instead",
        entry(PARTIAL, [utility(SDGE), utility(PGE, CONNECTED, required=False)]),
        d.OTHER_UTILITY,
        None,
        SDGE,
    ),
    (
        "residential: other utility connected, the required one failed",
        entry(ERR, [utility(SDGE, ERROR, error_code="X"), utility(PGE, CONNECTED, required=False)]),
        d.OTHER_UTILITY,
        None,
        SDGE,
    ),
    (
        "residential: another utility that failed too is not 'other utility'",
        entry(ERR, [utility(SDGE, NOT_CONNECTED), utility(PGE, ERROR, False, "X")]),
        d.UTILITY_NOT_CONNECTED,
        None,
        SDGE,
    ),
    (
        "nothing requested: none connected yet",
        entry(ERR, [utility(SDGE, ERROR, False, wire.ERROR_INVALID_CREDENTIALS)]),
        "utility_error.INVALID_CREDENTIALS",
        None,
        SDGE,
    ),
    (
        "nothing requested: one connected is enough",
        entry(PARTIAL, [utility(SDGE, ERROR, False, "X"), utility(PGE, CONNECTED, required=False)]),
        None,
        Because.NOTHING_OUTSTANDING,
        None,
    ),
    # step 3: agreements, only once the utilities are connected
    (
        "utilities first, agreements after",
        entry(PARTIAL, [utility()], agreements(prohibited="PENDING")),
        d.UTILITY_NOT_CONNECTED,
        None,
        SDGE,
    ),
    ("agreements all NOT_REQUIRED", entry(PARTIAL, ALL_CONNECTED), None, Because.NOTHING_OUTSTANDING, None),
    (
        "an agreement pending",
        entry(PARTIAL, ALL_CONNECTED, agreements(dr="PENDING")),
        d.AGREEMENT_PENDING,
        None,
        None,
    ),
    (
        "an agreement in a value never seen",
        entry(PARTIAL, ALL_CONNECTED, agreements(prohibited="AWAITING_COUNTERSIGNATURE")),
        d.AGREEMENT_PENDING,
        None,
        None,
    ),
    (
        "an agreement Leap newly lists",
        entry(PARTIAL, ALL_CONNECTED, {**agreements(), "new_form_status": "SENT"}),
        d.AGREEMENT_PENDING,
        None,
        None,
    ),
    (
        "a null agreement status is no status",
        entry(PARTIAL, ALL_CONNECTED, agreements(prohibited=None)),
        None,
        Because.NOTHING_OUTSTANDING,
        None,
    ),
    (
        "no agreements object at all",
        {**entry(PARTIAL, ALL_CONNECTED), wire.ENTRY_AGREEMENTS: None},
        None,
        Because.NOTHING_OUTSTANDING,
        None,
    ),
]


@pytest.mark.parametrize(
    ("raw", "reason", "because", "about"),
    [case[1:] for case in ASSESS_CASES],
    ids=[c[0] for c in ASSESS_CASES],
)
def test_assess_follows_the_guide(
    raw: dict[str, Any], reason: str | None, because: Because | None, about: str | None
) -> None:
    need = assess(raw)

    assert (need.reason, need.because) == (reason, because)
    assert (need.utility or {}).get(wire.UTILITY_NAME) == about


@pytest.mark.parametrize("code", sorted(wire.KNOWN_ERROR_CODES))
def test_each_known_error_code_gets_its_own_reason(code: str) -> None:
    need = assess(entry(ERR, [utility(status=ERROR, error_code=code)]))

    assert need.reason == f"utility_error.{code}"
    assert need.reason in d.ALL_REASONS


@pytest.mark.parametrize("done", sorted(wire.DEFAULT_AGREEMENT_DONE_STATUSES))
def test_done_agreement_statuses_count_as_signed(done: str) -> None:
    assert (
        assess(entry(PARTIAL, ALL_CONNECTED, agreements(done, done))).because is Because.NOTHING_OUTSTANDING
    )


def test_which_agreement_values_are_done_is_configuration() -> None:
    raw = entry(PARTIAL, ALL_CONNECTED, agreements("SIGNED", "DONE"))

    need = assess(raw, frozenset({"DONE"}))

    assert need.reason == d.AGREEMENT_PENDING
    assert need.pending_agreements == (wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION,)


def test_pending_agreements_are_listed_by_name() -> None:
    need = assess(entry(PARTIAL, ALL_CONNECTED, agreements("PENDING", "PENDING")))

    assert need.pending_agreements == tuple(sorted(wire.KNOWN_AGREEMENTS))


def test_every_pending_required_utility_is_listed() -> None:
    need = assess(entry(PARTIAL, [utility(SDGE), utility(SCE, CONNECTED), utility(PGE, ERROR, True, "X")]))

    assert [u[wire.UTILITY_NAME] for u in need.pending_utilities] == [SDGE, PGE]
    assert need.utility is not None
    assert need.utility[wire.UTILITY_NAME] == PGE


@pytest.mark.parametrize(
    ("utilities", "kind"),
    [
        ([], CustomerKind.RESIDENTIAL),
        ([utility(SDGE)], CustomerKind.RESIDENTIAL),
        ([utility(SDGE), utility(PGE, required=False)], CustomerKind.RESIDENTIAL),
        ([utility(SDGE), utility(SCE)], CustomerKind.COMMERCIAL),
    ],
)
def test_customer_kind_is_inferred_from_the_required_utilities(utilities: list, kind: CustomerKind) -> None:
    assert d.customer_kind(entry(PARTIAL, utilities)) is kind


# --- time and history -------------------------------------------------------------------------------

# No holdout here: these cases are about the guide's steps and pacing (test_outreach_holdout.py).
POLICY = OutreachPolicy(cooldown=timedelta(hours=48), max_attempts=3, holdout_percent=0)
STUCK = snapshot(entry(PARTIAL, [utility()]))
NOW = ACTIONABLE + timedelta(minutes=5)


def sent_before(hours_ago: float, attempts: int = 1, same_state: bool = True, **extra: Any) -> History:
    last = NOW - timedelta(hours=hours_ago)
    return History(
        attempts=attempts,
        last_sent_at=last,
        last_reason=d.UTILITY_NOT_CONNECTED,
        last_state=STUCK.content_hash if same_state else "older-state",
        state_sends=1,
        follow_up_at=last + POLICY.cooldown if attempts < POLICY.max_attempts else None,
        **extra,
    )


def test_a_first_message_goes_once_actionable() -> None:
    result = decide(STUCK, History(), POLICY, NOW, Trigger.EVENT)

    assert result.action is Action.SEND
    assert (result.attempt, result.state_sends) == (1, 1)
    assert result.dedupe_key == f"utility_not_connected#{STUCK.content_hash}#1"
    assert result.follow_up == FollowUpChange(NOW + POLICY.cooldown)


def test_actionable_exactly_one_hour_after_the_last_interaction() -> None:
    assert decide(STUCK, History(), POLICY, ACTIONABLE, Trigger.EVENT).action is Action.SEND
    early = decide(STUCK, History(), POLICY, ACTIONABLE - timedelta(seconds=1), Trigger.EVENT)
    assert (early.action, early.until, early.follow_up) == (Action.DEFER, ACTIONABLE, None)


def test_the_actionable_delay_is_configuration() -> None:
    policy = replace(POLICY, actionable_delay=timedelta(minutes=90))

    assert decide(STUCK, History(), policy, NOW, Trigger.EVENT).until == LAST_INTERACTION + timedelta(
        minutes=90
    )


def test_a_sweep_that_finds_an_active_customer_looks_again_when_actionable() -> None:
    result = decide(STUCK, sent_before(50), POLICY, LAST_INTERACTION, Trigger.FOLLOW_UP)

    assert (result.action, result.follow_up) == (Action.DEFER, FollowUpChange(ACTIONABLE))


def test_completed_suppresses_forever_and_leaves_the_sweep() -> None:
    done = snapshot(entry(wire.CONNECTION_COMPLETED, ALL_CONNECTED))

    result = decide(done, sent_before(1), POLICY, LAST_INTERACTION, Trigger.EVENT)  # even before actionable

    assert (result.action, result.because, result.mark_completed) == (
        Action.SUPPRESS,
        Because.COMPLETED,
        True,
    )
    assert result.follow_up == FollowUpChange(None)


def test_nothing_is_sent_after_a_completion_even_if_leap_goes_back() -> None:
    history = History(completed_at=NOW - timedelta(days=3))

    result = decide(STUCK, history, POLICY, NOW, Trigger.FOLLOW_UP)

    assert (result.action, result.because, result.mark_completed) == (
        Action.SUPPRESS,
        Because.COMPLETED,
        False,
    )


@pytest.mark.parametrize(
    ("raw", "because"),
    [
        (entry(PARTIAL, ALL_CONNECTED), Because.NOTHING_OUTSTANDING),
        (entry("ON_HOLD"), Because.UNKNOWN_CONNECTION_STATUS),
        (entry(PARTIAL, [utility(SDGE), utility(PGE, CONNECTED, required=False)]), Because.OTHER_UTILITY),
    ],
)
def test_no_message_needed_leaves_the_sweep_only_when_sweeping(raw: dict, because: Because) -> None:
    history = sent_before(60)

    on_event = decide(snapshot(raw), history, POLICY, NOW, Trigger.EVENT)
    on_sweep = decide(snapshot(raw), history, POLICY, NOW, Trigger.FOLLOW_UP)

    assert (on_event.action, on_event.because, on_event.follow_up) == (Action.SUPPRESS, because, None)
    assert (on_sweep.because, on_sweep.follow_up) == (because, FollowUpChange(None))


def test_other_utility_is_messaged_when_configured() -> None:
    raw = entry(PARTIAL, [utility(SDGE), utility(PGE, CONNECTED, required=False)])

    result = decide(snapshot(raw), History(), replace(POLICY, notify_other_utility=True), NOW, Trigger.EVENT)

    assert (result.action, result.need.reason) == (Action.SEND, d.OTHER_UTILITY)
    assert result.need.other_utility is not None
    assert result.need.other_utility[wire.UTILITY_NAME] == PGE


def test_the_same_state_is_never_messaged_twice_from_events() -> None:
    for hours_ago in (1, 49, 500):  # within the cooldown or long after: a replay is a replay
        result = decide(STUCK, sent_before(hours_ago), POLICY, NOW, Trigger.EVENT)
        assert (result.action, result.because) == (Action.SUPPRESS, Because.ALREADY_SENT)


def test_a_duplicate_wins_over_max_attempts_so_it_is_not_audited() -> None:
    result = decide(STUCK, sent_before(1, attempts=3), POLICY, NOW, Trigger.EVENT)

    assert result.because is Because.ALREADY_SENT


def test_the_sweep_sends_a_reminder_for_an_unchanged_state_after_the_cooldown() -> None:
    result = decide(STUCK, sent_before(48), POLICY, NOW, Trigger.FOLLOW_UP)

    assert result.action is Action.SEND
    assert (result.attempt, result.state_sends) == (2, 2)
    assert result.dedupe_key == f"utility_not_connected#{STUCK.content_hash}#2"


def test_a_new_state_within_the_cooldown_waits_for_it() -> None:
    history = sent_before(10, same_state=False)

    result = decide(STUCK, history, POLICY, NOW, Trigger.EVENT)

    assert (result.action, result.because) == (Action.SUPPRESS, Because.COOLDOWN)
    assert result.next_attempt_at == NOW + timedelta(hours=38)
    assert result.follow_up is None  # already due then


def test_a_cooldown_suppression_puts_the_customer_back_in_the_sweep() -> None:
    history = replace(sent_before(10, same_state=False), follow_up_at=None)

    result = decide(STUCK, history, POLICY, NOW, Trigger.EVENT)

    assert result.follow_up == FollowUpChange(NOW + timedelta(hours=38))


def test_a_new_state_after_the_cooldown_gets_its_first_message() -> None:
    result = decide(STUCK, sent_before(48, same_state=False), POLICY, NOW, Trigger.EVENT)

    assert (result.action, result.attempt, result.state_sends) == (Action.SEND, 2, 1)


def test_never_more_than_max_attempts() -> None:
    result = decide(STUCK, sent_before(100, attempts=3, same_state=False), POLICY, NOW, Trigger.FOLLOW_UP)

    assert (result.action, result.because) == (Action.SUPPRESS, Because.MAX_ATTEMPTS)


def test_the_last_allowed_message_ends_the_follow_ups() -> None:
    result = decide(STUCK, sent_before(48, attempts=2), POLICY, NOW, Trigger.FOLLOW_UP)

    assert (result.action, result.attempt, result.follow_up) == (Action.SEND, 3, FollowUpChange(None))


@pytest.mark.parametrize(
    ("history", "trigger"),
    [(History(), Trigger.EVENT), (sent_before(48, attempts=2), Trigger.FOLLOW_UP)],
    ids=["first message", "last allowed message"],
)
def test_a_message_with_no_channel_is_decided_again_an_hour_later(history: History, trigger: Trigger) -> None:
    due = decide(STUCK, history, POLICY, NOW, trigger)

    result = d.without_channel(due, NOW)

    assert (result.action, result.because, result.attempt) == (Action.SUPPRESS, Because.NO_CHANNEL, None)
    assert result.need == due.need
    # created even for a customer never stored, and kept when the message due was the last allowed one
    assert result.follow_up == FollowUpChange(NOW + timedelta(hours=1), create=True)


def test_a_zero_cooldown_allows_the_next_message_at_once() -> None:
    policy = replace(POLICY, cooldown=timedelta(0))

    assert decide(STUCK, sent_before(0, same_state=False), policy, NOW, Trigger.EVENT).action is Action.SEND


# --- properties -------------------------------------------------------------------------------------

statuses = st.sampled_from([*sorted(wire.KNOWN_CONNECTION_STATUSES), "ON_HOLD"])
utility_statuses = st.sampled_from([*sorted(wire.KNOWN_UTILITY_STATUSES), "AWAITING"])
codes = st.sampled_from([None, *sorted(wire.KNOWN_ERROR_CODES), "NEW_CODE"])
agreement_values = st.sampled_from([None, wire.AGREEMENT_NOT_REQUIRED, "PENDING", "SIGNED", "NEW_VALUE"])
utilities = st.lists(
    st.builds(utility, st.sampled_from([SDGE, SCE, PGE]), utility_statuses, st.booleans(), codes), max_size=4
)
entries = st.builds(entry, statuses, utilities, st.builds(agreements, agreement_values, agreement_values))


@settings(max_examples=300, deadline=None)
@given(entries)
def test_assess_always_gives_a_known_reason_or_a_cause(raw: dict[str, Any]) -> None:
    need = assess(raw)

    assert (need.reason is None) == (need.because is not None)
    assert need.reason is None or need.reason in d.ALL_REASONS
    if raw[wire.ENTRY_CONNECTION_STATUS] == wire.CONNECTION_COMPLETED:
        assert need.because is Because.COMPLETED


@settings(max_examples=200, deadline=None)
@given(entries, st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=40))
def test_a_customer_never_gets_more_than_max_messages_nor_two_within_the_cooldown(
    raw: dict[str, Any], gaps_hours: list[int]
) -> None:
    """Replay one snapshot through events and sweeps at random times, applying each SEND."""
    snap = snapshot(raw)
    history, now, sent_at = History(), ACTIONABLE, []
    for step, gap in enumerate(gaps_hours):
        now += timedelta(hours=gap)
        trigger = Trigger.EVENT if step % 2 else Trigger.FOLLOW_UP
        result = decide(snap, history, POLICY, now, trigger)
        if result.action is Action.SEND:
            sent_at.append(now)
            history = replace(
                history,
                attempts=int(result.attempt or 0),
                last_sent_at=now,
                last_reason=result.need.reason,
                last_state=snap.content_hash,
                state_sends=int(result.state_sends or 0),
            )
    assert len(sent_at) <= POLICY.max_attempts
    assert all(b - a >= POLICY.cooldown for a, b in itertools.pairwise(sent_at))
    if raw[wire.ENTRY_CONNECTION_STATUS] == wire.CONNECTION_COMPLETED:
        assert sent_at == []
