"""The insight figures (leap_tracker.insight.analysis) on hand-built histories, each figure checked
against a value worked out by hand; properties with hypothesis (funnel totals, shares, intervals)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.insight import analysis
from leap_tracker.insight.analysis import Change, Message, MeterAppearance
from leap_tracker.leap import wire
from leap_tracker.outreach import decision
from tests.builders import SCE, SDGE, entry, utility

T0 = datetime(2025, 3, 5, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def not_started(ref: str, last: datetime, region: str = "CAISO") -> dict[str, Any]:
    return entry(wire.CONNECTION_NOT_STARTED, ref_id=ref, last=last, started=T0, region=region)


def errored(ref: str, last: datetime, code: str = wire.ERROR_INVALID_CREDENTIALS) -> dict[str, Any]:
    failed = utility(SDGE, wire.UTILITY_ERROR, error_code=code)
    return entry(wire.CONNECTION_ERROR, [failed], ref_id=ref, last=last, started=T0)


def completed(ref: str, last: datetime, region: str = "CAISO") -> dict[str, Any]:
    done = utility(SDGE, wire.UTILITY_CONNECTED)
    return entry(wire.CONNECTION_COMPLETED, [done], ref_id=ref, last=last, started=T0, region=region)


def history(*states: tuple[datetime, dict[str, Any]]) -> list[Change]:
    changes, previous = [], None
    for sequence, (at, state) in enumerate(states, start=1):
        changes.append(Change(at, previous, state, sequence))
        previous = state
    return changes


def timelines(changes: dict[str, list[Change]]) -> dict[str, list[analysis.State]]:
    return {key: analysis.timeline(items) for key, items in changes.items()}


# --- stages ------------------------------------------------------------------------------------------


def test_stages_are_outreachs_reasons_and_a_later_step_is_progress() -> None:
    two = [utility(SDGE, wire.UTILITY_CONNECTED), utility(SCE, wire.UTILITY_NOT_CONNECTED)]
    assert analysis.stage_of(not_started("a", T0)) == decision.NOT_STARTED
    assert analysis.stage_of(errored("a", T0)) == "utility_error.INVALID_CREDENTIALS"
    assert analysis.stage_of(errored("a", T0, "NEW_CODE")) == "utility_error.unknown"
    assert analysis.stage_of(completed("a", T0)) == "completed"
    assert analysis.stage_of(entry("SOMETHING_NEW")) == "unknown_connection_status"
    commercial = entry(wire.CONNECTION_PARTIAL, two)
    assert analysis.stage_of(commercial) == decision.UTILITY_NOT_CONNECTED
    # (rank, required utilities connected): one of two connected is further than none, same stage.
    assert analysis.progress_of(commercial, decision.UTILITY_NOT_CONNECTED) == (1, 1)
    assert analysis.progress_of(errored("a", T0), "utility_error.INVALID_CREDENTIALS") == (1, 0)
    assert analysis.progress_of(completed("a", T0), "completed") == (4, 1)


def test_the_first_changes_previous_entry_is_the_state_known_from_before() -> None:
    changes = [Change(T0 + H, not_started("a", T0), errored("a", T0 + H), 7)]
    states = analysis.timeline(changes)
    assert [(s.at, s.stage) for s in states] == [
        (analysis.BEFORE, "not_started"),
        (T0 + H, "utility_error.INVALID_CREDENTIALS"),
    ]
    assert analysis.state_at(states, T0).stage == "not_started"
    assert analysis.state_at(analysis.timeline(history((T0 + H, not_started("b", T0)))), T0) is None


# --- (a) the funnel ----------------------------------------------------------------------------------


def test_the_funnel_counts_each_entry_at_its_status_at_the_end_of_each_period() -> None:
    # a: NOT_STARTED at 00:30, ERROR at 01:30, COMPLETED at 02:30; b (PJM): NOT_STARTED at 01:10.
    changes = {
        "a": history(
            (T0 + H / 2, not_started("a", T0)),
            (T0 + 1.5 * H, errored("a", T0 + H)),
            (T0 + 2.5 * H, completed("a", T0 + 2 * H)),
        ),
        "b": history((T0 + 70 * timedelta(minutes=1), not_started("b", T0, "PJM"))),
    }
    points = analysis.funnel(timelines(changes), T0, T0 + 2 * H + 40 * timedelta(minutes=1), H)
    assert [(p.period, p.at, p.total, p.by_status) for p in points] == [
        ("2025-03-05T00:00:00Z", "2025-03-05T01:00:00Z", 1, {"NOT_STARTED": 1}),
        ("2025-03-05T01:00:00Z", "2025-03-05T02:00:00Z", 2, {"ERROR": 1, "NOT_STARTED": 1}),
        ("2025-03-05T02:00:00Z", "2025-03-05T02:40:00Z", 2, {"COMPLETED": 1, "NOT_STARTED": 1}),
    ]
    assert points[1].by_region == {"CAISO": {"ERROR": 1}, "PJM": {"NOT_STARTED": 1}}
    assert points[1].by_error_code == {"INVALID_CREDENTIALS": {"ERROR": 1}, "none": {"NOT_STARTED": 1}}
    assert points[2].by_error_code == {"none": {"COMPLETED": 1, "NOT_STARTED": 1}}
    daily = analysis.funnel(timelines(changes), T0, T0 + 3 * H, D)
    assert [(p.period, p.at, p.total) for p in daily] == [("2025-03-05T00:00:00Z", "2025-03-05T03:00:00Z", 2)]


# --- (b) stalls --------------------------------------------------------------------------------------


def test_the_stall_map_puts_each_open_entry_at_its_stage_and_time_since_its_last_interaction() -> None:
    now = T0 + 10 * D
    changes = {
        "fresh": history((now - H / 2, not_started("fresh", now - H / 2))),  # 30 min: <1 h
        "day": history((now - 2 * H, not_started("day", now - 2 * H))),  # 2 h: 1-24 h
        "err": history((now - 2 * D, errored("err", now - 2 * D))),  # 2 d: 1-3 d
        "week": history((now - 8 * D, errored("week", now - 8 * D))),  # 8 d: >7 d
        "done": history((now - 8 * D, completed("done", now - 8 * D))),  # completed: not stalled
        "edge": history((now - 3 * D, errored("edge", now - 3 * D))),  # exactly 3 d: 3-7 d
    }
    stalls = analysis.stall_map(timelines(changes), now)
    assert stalls.stages == ["not_started", "utility_error.INVALID_CREDENTIALS"]
    assert stalls.counts == {
        "not_started": {"<1 h": 1, "1-24 h": 1, "1-3 d": 0, "3-7 d": 0, ">7 d": 0},
        "utility_error.INVALID_CREDENTIALS": {"<1 h": 0, "1-24 h": 0, "1-3 d": 1, "3-7 d": 1, ">7 d": 1},
    }
    assert stalls.total == 5


# --- (c) durations -----------------------------------------------------------------------------------


def test_quantiles_interpolate_between_ranks() -> None:
    # [1, 2, 3, 4]: median at rank 1.5 -> 2.5; p90 at rank 2.7 -> 3 + 0.7 = 3.7.
    assert analysis.quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert math.isclose(analysis.quantile([1.0, 2.0, 3.0, 4.0], 0.9), 3.7)
    assert analysis.quantile([5.0], 0.9) == 5.0
    assert analysis.quantile([], 0.5) is None


def test_time_to_complete_runs_from_the_start_to_the_completions_last_interaction() -> None:
    # Entries start at T0 (the builders' started=T0); completions at 2 h, 4 h and 30 h; one never.
    changes = {
        ref: history(
            (T0 + hours * H, not_started(ref, T0)), (T0 + (hours + 1) * H, completed(ref, T0 + hours * H))
        )
        for ref, hours in (("a", 2), ("b", 4), ("c", 30))
    } | {"open": history((T0, not_started("open", T0)))}
    shape = analysis.time_to_complete(timelines(changes))
    # [2, 4, 30]: median 4; p90 at rank 1.8 -> 4 + 0.8 * 26 = 24.8.
    assert shape.count == 3
    assert shape.median_hours == 4.0
    assert math.isclose(shape.p90_hours, 24.8)
    assert shape.histogram == {
        "<1 h": 0,
        "1-6 h": 2,
        "6-24 h": 0,
        "1-3 d": 1,
        "3-7 d": 0,
        "7-14 d": 0,
        ">14 d": 0,
    }


def test_time_to_meter_runs_from_the_completion_to_the_watch_seeing_the_meter() -> None:
    shape = analysis.time_to_meter([MeterAppearance(T0, T0 + 2 * D), MeterAppearance(T0, T0 + 4 * D)])
    assert (shape.count, shape.median_hours, shape.p90_hours) == (2, 72.0, 48 + 0.9 * 48)


# --- (d) outreach ------------------------------------------------------------------------------------


def test_wilson_interval_matches_the_hand_computed_one() -> None:
    # 8 of 20, z = 1.96: centre (0.4 + 0.09604) / 1.19208 = 0.41612; half 0.20423 -> [0.2188, 0.6134].
    low, high = analysis.wilson(8, 20)
    assert math.isclose(low, 0.21879, abs_tol=1e-4)
    assert math.isclose(high, 0.61340, abs_tol=1e-4)
    assert analysis.wilson(0, 0) is None
    assert analysis.wilson(0, 5)[0] == 0.0
    assert analysis.wilson(5, 5)[1] == 1.0


def stuck_then(ref: str, stuck_at: datetime, done_after: timedelta | None) -> list[Change]:
    """ERROR (INVALID_CREDENTIALS) from ``stuck_at``; COMPLETED ``done_after`` later (or never)."""
    states = [(stuck_at, errored(ref, stuck_at))]
    if done_after is not None:
        states.append((stuck_at + done_after, completed(ref, stuck_at + done_after)))
    return history(*states)


def test_outreach_compares_the_messaged_with_customers_stuck_at_the_same_stage_from_the_same_moment() -> None:
    reason = "utility_error.INVALID_CREDENTIALS"
    sent_at = T0 + 2 * H
    now = T0 + 5 * D  # 1 and 3 day windows are over, 7 days are not
    changes: dict[str, list[Change]] = {}
    messages: dict[str, list[Message]] = {}
    # 25 messaged at T0+2h: 10 complete 12 h after the message, 5 more after 2 days, 10 never.
    for i in range(25):
        ref = f"m{i}"
        done = 14 * H if i < 10 else (2 * D + 2 * H if i < 15 else None)
        changes[ref] = stuck_then(ref, T0, done)
        messages[ref] = [Message(sent_at, reason, 1)]
    # 22 stuck at the same stage at T0, never messaged: 2 complete 12 h after T0+2h, the rest never.
    for i in range(22):
        ref = f"c{i}"
        changes[ref] = stuck_then(ref, T0, 14 * H if i < 2 else None)
    # Not comparable at T0+2h: stuck at T0+1h30 (not stalled an hour yet: it is at "early"'s moment,
    # T0+3d), at another stage, or messaged before.
    changes["fresh"] = stuck_then("fresh", T0 + 1.5 * H, None)
    changes["other"] = history((T0, not_started("other", T0)))
    changes["early"] = stuck_then("early", T0, None)
    messages["early"] = [Message(T0 + H, "not_started", 1), Message(T0 + 3 * D, reason, 2)]

    effects = analysis.outreach_effects(timelines(changes), messages, now)
    by_reason = {e.reason: e for e in effects}
    effect = by_reason[reason]
    # "early"'s first message of this reason (T0+3d) counts it as messaged: 26; comparable: the 22
    # from T0+2h and "fresh" from T0+3d.
    assert (effect.messaged, effect.comparison) == (26, 23)
    one, three, seven = effect.windows
    # 1 day: messaged 10 of 26 completed (early's window ends at T0+4d < now); comparison 2 of 23.
    assert (one.messaged.observed, one.messaged.completed.count) == (26, 10)
    assert (one.comparison.observed, one.comparison.completed.count) == (23, 2)
    assert math.isclose(one.messaged.completed.share, 10 / 26)
    assert one.messaged.progressed.count == 10  # completing is progress; nobody else moved
    # Wilson 10/26 = [0.2243, 0.5747]; 2/23 = [0.0242, 0.2679]: they overlap.
    assert one.completed_verdict == "no clear difference"
    # 3 days: early's and fresh's windows (T0+3d .. T0+6d) are not over: 25 and 22 observed.
    assert (three.messaged.observed, three.messaged.completed.count) == (25, 15)
    assert (three.comparison.observed, three.comparison.completed.count) == (22, 2)
    # 15/25 = [0.4074, 0.7660] above 2/22's [0.0253, 0.2781].
    assert three.completed_verdict == "messaged higher"
    assert (seven.messaged.observed, seven.comparison.observed) == (0, 0)
    assert seven.completed_verdict == analysis.TOO_FEW
    # not_started: only "early" messaged; "other" stood there stalled and unmessaged at T0+1h.
    small = by_reason["not_started"]
    assert (small.messaged, small.comparison) == (1, 1)
    assert small.windows[0].progressed_verdict == analysis.TOO_FEW


def test_a_comparison_customer_is_followed_from_the_first_moment_it_qualifies_once() -> None:
    reason = "utility_error.INVALID_CREDENTIALS"
    changes = {"m1": stuck_then("m1", T0, None), "m2": stuck_then("m2", T0, None)}
    changes["c"] = stuck_then("c", T0 + 3 * H, 5 * H)  # stalled from T0+4h, completed at T0+8h
    messages = {
        "m1": [Message(T0 + 2 * H, reason, 1)],  # c is not stuck yet
        "m2": [Message(T0 + 5 * H, reason, 1)],  # c qualifies here
    }
    effect = analysis.outreach_effects(timelines(changes), messages, T0 + 10 * D)[0]
    # m2, not yet messaged at T0+2h, is followed from there; c from T0+5h, once.
    assert effect.comparison == 2
    assert effect.windows[0].comparison.observed == 2
    assert effect.windows[0].comparison.completed.count == 1  # c, 3 h after T0+5h


def test_a_comparison_customer_is_followed_only_until_it_is_messaged() -> None:
    reason = "utility_error.INVALID_CREDENTIALS"
    changes = {"m": stuck_then("m", T0, None), "c": stuck_then("c", T0, 10 * H)}  # c completes T0+10h
    messages = {
        "m": [Message(T0 + 2 * H, reason, 1)],
        "c": [Message(T0 + 6 * H, reason, 1)],  # inside c's comparison window (from T0+2h)
    }
    effect = analysis.outreach_effects(timelines(changes), messages, T0 + 10 * D)[0]
    one = effect.windows[0]
    # c is compared from T0+2h and censored at T0+6h: its completion after the message is not counted.
    assert (one.comparison.observed, one.comparison.completed.count, one.comparison.progressed.count) == (
        1,
        0,
        0,
    )
    assert (one.messaged.observed, one.messaged.completed.count) == (2, 1)  # c's own message did count


def test_newcombe_interval_matches_newcombes_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10 (hybrid score).
    for (a, n_a, b, n_b), (low, high) in {
        (56, 70, 48, 80): (0.0524, 0.3339),
        (9, 10, 3, 10): (0.1705, 0.8090),
        (5, 56, 0, 29): (-0.0381, 0.1926),
    }.items():
        found = analysis.newcombe(a, n_a, b, n_b)
        assert found is not None
        assert math.isclose(found[0], low, abs_tol=1e-4)
        assert math.isclose(found[1], high, abs_tol=1e-4)
    assert analysis.newcombe(1, 2, 0, 0) is None


# --- properties --------------------------------------------------------------------------------------

_STATES = st.sampled_from(["not_started", "errored", "completed"])


@st.composite
def histories(draw: st.DrawFn) -> dict[str, list[Change]]:
    made = {}
    for index in range(draw(st.integers(1, 8))):
        ref = f"e{index}"
        steps = draw(st.lists(st.tuples(st.integers(0, 200), _STATES), min_size=1, max_size=4))
        at, states = T0, []
        for minutes, kind in steps:
            at += timedelta(minutes=minutes * 10)
            build = {"not_started": not_started, "errored": errored, "completed": completed}[kind]
            states.append((at, build(ref, at)))
        made[ref] = history(*states)
    return made


@settings(max_examples=60, deadline=None)
@given(histories(), st.integers(1, 400))
def test_funnel_totals_equal_the_entries_known_at_each_moment(
    changes: dict[str, list[Change]], hours: int
) -> None:
    now = T0 + hours * H
    for point in analysis.funnel(timelines(changes), T0, now, H):
        moment = datetime.fromisoformat(point.at)
        known = sum(1 for items in changes.values() if min(c.written_at for c in items) <= moment)
        assert point.total == known == sum(point.by_status.values())
        assert sum(sum(v.values()) for v in point.by_region.values()) == known
        assert sum(sum(v.values()) for v in point.by_error_code.values()) == known


@settings(max_examples=60, deadline=None)
@given(histories(), st.lists(st.integers(0, 300), max_size=8), st.integers(1, 40))
def test_outreach_shares_are_within_0_and_1_and_their_intervals_contain_them(
    changes: dict[str, list[Change]], offsets: list[int], days: int
) -> None:
    refs = sorted(changes)
    messages = {
        refs[i % len(refs)]: [Message(T0 + offset * H, "utility_error.INVALID_CREDENTIALS", 1)]
        for i, offset in enumerate(offsets)
    }
    for effect in analysis.outreach_effects(timelines(changes), messages, T0 + days * D):
        for window in effect.windows:
            for outcome in (window.messaged, window.comparison):
                for figure in (outcome.progressed, outcome.completed):
                    assert figure.count <= outcome.observed
                    if outcome.observed == 0:
                        assert figure.share is None
                        continue
                    assert 0 <= figure.low <= figure.share <= figure.high <= 1


@given(st.integers(0, 500), st.integers(1, 500))
def test_the_wilson_interval_contains_the_share(successes: int, n: int) -> None:
    successes = min(successes, n)
    low, high = analysis.wilson(successes, n)
    assert 0 <= low <= successes / n <= high <= 1


# --- message variants --------------------------------------------------------------------------------


def test_variants_of_a_reason_are_compared_with_each_other_by_each_customers_first_message() -> None:
    reason = "utility_error.INVALID_CREDENTIALS"
    sent_at = T0 + 2 * H
    now = T0 + 5 * D  # 1 and 3 day windows are over, 7 days are not
    changes: dict[str, list[Change]] = {}
    messages: dict[str, list[Message]] = {}
    # "a": 30 customers, 24 complete 12 h after the message; "b": 30, 3 complete; "c": 5, none.
    for name, count, completing in (("a", 30, 24), ("b", 30, 3), ("c", 5, 0)):
        for i in range(count):
            ref = f"{name}{i}"
            changes[ref] = stuck_then(ref, T0, 14 * H if i < completing else None)
            messages[ref] = [Message(sent_at, reason, 1, name)]
    # A reminder of another variant (a redeploy added one) leaves the customer in its first arm.
    changes["moved"] = stuck_then("moved", T0, None)
    messages["moved"] = [Message(sent_at, reason, 1, "a"), Message(sent_at + 2 * D, reason, 2, "b")]
    # Another reason with one variant only: nothing to compare it with.
    changes["alone"] = history((T0, not_started("alone", T0)))
    messages["alone"] = [Message(T0 + 2 * H, decision.NOT_STARTED, 1, "a")]

    effects = analysis.variant_effects(timelines(changes), messages, now)

    by_key = {(e.reason, e.variant): e for e in effects}
    assert list(by_key) == [("not_started", "a"), (reason, "a"), (reason, "b"), (reason, "c")]
    a, b, c = by_key[(reason, "a")], by_key[(reason, "b")], by_key[(reason, "c")]
    assert (a.messaged, b.messaged, c.messaged) == (31, 30, 5)
    one = a.windows[0]
    assert (one.days, one.variant.observed, one.variant.completed.count) == (1, 31, 24)
    assert (one.others.observed, one.others.completed.count) == (35, 3)  # b and c together
    assert math.isclose(one.variant.completed.share, 24 / 31)
    assert (one.variant.completed.low, one.variant.completed.high) == analysis.wilson(24, 31)
    # Wilson 24/31 = [0.602, 0.886] above 3/35's [0.030, 0.224]; b's 3/30 [0.035, 0.256] below 24/36's.
    assert one.completed_verdict == one.progressed_verdict == "this variant higher"
    assert b.windows[0].completed_verdict == "this variant lower"
    assert (b.windows[0].others.observed, b.windows[0].others.completed.count) == (36, 24)
    assert c.windows[0].completed_verdict == analysis.TOO_FEW  # 5 < 20
    assert a.windows[2].variant.observed == 0  # 7 days are not over
    assert a.windows[2].completed_verdict == analysis.TOO_FEW
    alone = by_key[("not_started", "a")]
    assert alone.messaged == 1
    assert alone.windows[0].completed_verdict == analysis.NO_OTHER_VARIANT


def test_messages_without_a_recorded_variant_form_their_own_group() -> None:
    reason = "utility_error.INVALID_CREDENTIALS"
    changes = {"old": stuck_then("old", T0, None), "new": stuck_then("new", T0, None)}
    messages = {"old": [Message(T0 + 2 * H, reason, 1)], "new": [Message(T0 + 2 * H, reason, 1, "a")]}

    effects = analysis.variant_effects(timelines(changes), messages, T0 + 10 * D)

    assert [(e.variant, e.messaged) for e in effects] == [("a", 1), (analysis.UNRECORDED_VARIANT, 1)]
