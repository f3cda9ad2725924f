"""make demo (devtools/demo/) at a small size: every ground-truth check passes, the same seed gives the
same report, and the checks do fail when what they compare disagrees."""

from __future__ import annotations

import io
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools import demo
from devtools.demo import checks, cli, effect, insight
from devtools.demo.recovery import Recovery, recovery_check
from devtools.demo.world import DEMO_HOLDOUT_PERCENT
from devtools.local_runner import PartnerMessage
from leap_tracker.config import MeterWatchSettings
from leap_tracker.events.diff import DEFAULT_RULES, change_events
from leap_tracker.leap import wire
from leap_tracker.timeutil import format_instant
from subscriber.filter_policies import named_policy
from tests.builders import entry

# 25 customers, 2 simulated days, joining the campaign 2 days in: seed 99 gives meters appearing for 8
# customers (6 early enough that a sweep must find them) and 2 meter.overdue, so every check has
# something to hold, in about 15 s a run.
SMALL = {"seed": 99, "customers": 25, "days": 2, "start_offset_hours": 48}
CHECKS = [
    "clean run",
    "funnel = ground truth",
    "dashboard funnel = ground truth",
    "snapshots = ground truth",
    "events = ground truth",
    "filter policy",
    "meter.appeared",
    "meter.overdue",
    "outreach delivery",
    "outreach timing",
    "stalled customers considered",
    "recovery",
    "outreach effect = ground truth",
    "report funnel = ground truth",
    "lift = planted effect",
    "meter webhooks",
]
T0 = datetime(2025, 1, 8, tzinfo=UTC)


def run_small(report_dir: Path) -> demo.DemoResult:
    return demo.run_demo(
        SMALL["seed"],
        SMALL["customers"],
        SMALL["days"],
        io.StringIO(),
        start_offset_hours=SMALL["start_offset_hours"],
        report_dir=report_dir,
    )


def test_every_ground_truth_check_passes_and_the_same_seed_gives_the_same_report(tmp_path: Path) -> None:
    first, second = run_small(tmp_path / "first"), run_small(tmp_path / "first")

    assert [check.name for check in first.checks] == CHECKS
    assert first.failed == [], "\n".join(check.line() for check in first.failed)
    assert first.report == second.report
    assert "2 overdue by the rules" in first.report  # the meter rules had something to hold
    # The webhook check had something to hold: meters reported through their webhook, a wrong secret.
    assert re.search(r"reported once each where delivered \([1-9]\d*\)", first.report), first.report
    assert re.search(r"; [1-9]\d* wrong-secret calls refused 401", first.report)
    assert first.report.count("\nPASS  ") == len(CHECKS)
    assert (tmp_path / "first" / "report.html").is_file()
    assert f"{tmp_path / 'first' / 'report.html'}" in first.report.splitlines()[-3]


def test_main_exits_1_when_a_check_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = demo.DemoResult(
        demo.DemoConfig(), "", (demo.Check("funnel = ground truth", False, "1 problem(s)"),)
    )
    monkeypatch.setattr(cli, "run_demo", lambda *_args, **_kwargs: failing)

    assert cli.main(["--days", "1"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("wall time: ")


# --- the checks fail when what they compare disagrees ---------------------------------------------


def test_the_funnel_check_names_the_poll_where_table_and_leap_differ() -> None:
    run = demo.Run()
    run.funnels = [
        (T0, Counter({"PARTIAL": 2}), Counter({"PARTIAL": 2})),
        (T0 + timedelta(hours=1), Counter({"PARTIAL": 1}), Counter({"PARTIAL": 1, "COMPLETED": 1})),
    ]

    check = checks._funnel_matches(run)

    assert not check.passed
    assert "2025-01-08 01:00" in check.detail


def test_the_events_check_catches_a_missing_a_duplicate_and_an_altered_event() -> None:
    run = demo.Run()
    started = datetime(2025, 1, 7, tzinfo=UTC)
    history = [
        entry(wire.CONNECTION_NOT_STARTED, [], {}, ref_id="ref-1", last=started, started=started),
        entry(
            wire.CONNECTION_PARTIAL,
            [],
            {},
            ref_id="ref-1",
            last=started + timedelta(minutes=5),
            started=started,
        ),
    ]
    run.histories["ref-1"] = history
    first, later = change_events(None, history[0], 1), change_events(history[0], history[1], 2)
    altered = {**later[0], "time": "2025-01-07T09:00:00Z"}
    delivered = [first[0], first[0], altered]  # first[1] (connection.not_started) never arrives
    run.inbox = [demo.Received(T0, PartnerMessage(event, {}, str(n))) for n, event in enumerate(delivered)]

    check = checks._events_match(run, DEFAULT_RULES, None)

    assert not check.passed
    assert "delivered 2 times" in check.detail
    assert "differs" in check.detail
    assert "missing" in check.detail


def test_the_dashboard_funnel_check_names_the_poll_where_the_counts_differ() -> None:
    run = demo.Run()
    truth = Counter({"COMPLETED": 2, "PARTIAL": 1})
    run.funnels = [(T0, truth, truth), (T0 + timedelta(hours=1), truth, truth)]
    run.counted_funnels = [(T0, Counter({"COMPLETED": 2, "PARTIAL": 1})), (T0 + timedelta(hours=1), None)]
    assert not checks._counted_funnel_matches(run).passed  # a poll that did not count
    run.counted_funnels[1] = (T0 + timedelta(hours=1), Counter({"COMPLETED": 3}))
    check = checks._counted_funnel_matches(run)
    assert not check.passed
    assert "2025-01-08 01:00" in check.detail
    run.counted_funnels[1] = (T0 + timedelta(hours=1), Counter({"COMPLETED": 2, "PARTIAL": 1}))
    assert checks._counted_funnel_matches(run).passed


def test_the_recovery_check_fails_when_the_replay_missed_or_repeated_an_event() -> None:
    recovery = Recovery(planted_at=T0, failure_messages=1, status=0)
    recovery.refusal.refused_ids = {"a", "b"}
    recovery.replayed_ids = ["a", "b"]
    assert recovery_check(recovery).passed
    recovery.replayed_ids = ["a"]
    assert not recovery_check(recovery).passed
    recovery.replayed_ids = ["a", "b", "b"]
    assert "replayed 2 times" in recovery_check(recovery).detail
    recovery.replayed_ids, recovery.status = ["a", "b"], 1
    assert not recovery_check(recovery).passed


def test_a_duplicate_is_excused_only_in_the_planted_hour() -> None:
    run = demo.Run()
    started = datetime(2025, 1, 7, tzinfo=UTC)
    history = [entry(wire.CONNECTION_NOT_STARTED, [], {}, ref_id="ref-1", last=started, started=started)]
    run.histories["ref-1"] = history
    first, *rest = change_events(None, history[0], 1)
    delivered = [first, first, *rest]  # every event, the first twice
    run.inbox = [demo.Received(T0, PartnerMessage(event, {}, str(n))) for n, event in enumerate(delivered)]
    assert checks._events_match(run, DEFAULT_RULES, T0).passed
    assert not checks._events_match(run, DEFAULT_RULES, T0 + timedelta(hours=1)).passed
    assert not checks._events_match(run, DEFAULT_RULES, None).passed


RULES = MeterWatchSettings()  # first check 24 h, overdue 72 h, waits up to 24 h, horizon 14 days
HOURLY = [T0 + timedelta(hours=n) for n in range(1, 24 * 6)]


@pytest.mark.parametrize(
    ("appear_after", "expected"),
    [
        (None, True),  # never
        (timedelta(hours=80), True),  # after the check at 72 h
        (timedelta(hours=72), False),  # there for the check at 72 h
        (timedelta(hours=30), False),
    ],
)
def test_meter_overdue_is_expected_exactly_when_the_first_check_from_72_h_finds_nothing(
    appear_after: timedelta | None, expected: bool
) -> None:
    completed = T0
    appear = None if appear_after is None else completed + appear_after
    first_check = completed + timedelta(hours=24)

    assert checks._overdue_expected(completed, first_check, appear, HOURLY, RULES) is expected


def test_meters_are_certainly_found_only_once_the_longest_wait_has_passed() -> None:
    completed, first_check = T0, T0 + timedelta(hours=24)
    last_sweep = HOURLY[-1]

    assert checks._certainly_found(completed, first_check, last_sweep - timedelta(hours=24), HOURLY, RULES)
    assert not checks._certainly_found(
        completed, first_check, last_sweep - timedelta(hours=23), HOURLY, RULES
    )
    assert not checks._certainly_found(completed, first_check, None, HOURLY, RULES)


def test_the_demo_reads_its_filter_policy_and_schedule_rates_from_the_sources() -> None:
    # The filtered partner queue is a subscriber stack given this ready policy's name.
    policy = named_policy(demo.FILTERED_POLICY)

    assert policy.scope == "MessageAttributes"  # what the demo's own matching (checks._matches) reads
    assert set(policy.policy) == {"type", "transmission_region"}
    assert demo.schedule_rate("rate(1 hour)") == timedelta(hours=1)
    assert demo.schedule_rate("rate(2 days)") == timedelta(days=2)
    with pytest.raises(ValueError, match="one simulated hour"):
        demo.schedule_rate("rate(30 minutes)")
    with pytest.raises(ValueError, match="rate"):
        demo.schedule_rate("cron(0 * * * ? *)")


# --- the outreach effect check fails when the report and the simulator disagree -------------------


def _outcome(observed: int, progressed: int, completed: int) -> dict[str, object]:
    return {
        "observed": observed,
        "progressed": {"count": progressed, "share": progressed / observed if observed else None},
        "completed": {"count": completed, "share": completed / observed if observed else None},
    }


def _reason_effect(reason: str, messaged: int, windows: dict[int, tuple[int, int, int]]) -> dict[str, object]:
    return {
        "reason": reason,
        "messaged": messaged,
        "windows": [{"days": d, "messaged": _outcome(*windows[d])} for d in sorted(windows)],
    }


def _arm(nudge: float, messaged: int, windows: dict[int, tuple[int, int, int]]) -> effect.Arm:
    return effect.Arm(
        nudge,
        messaged,
        observed={d: w[0] for d, w in windows.items()},
        completed={d: w[2] for d, w in windows.items()},
    )


def test_the_outreach_effect_check_holds_counts_exactly_and_shares_to_the_nudges_direction() -> None:
    strong = {1: (30, 18, 12), 3: (25, 20, 15)}  # (observed, progressed, completed)
    weak = {1: (40, 8, 2), 3: (35, 9, 4)}
    truth = effect.EffectTruth(
        reasons={"agreement_pending": _arm(0.6, 32, strong), "not_started": _arm(0.15, 44, weak)}
    )
    document = {
        "outreach": [
            _reason_effect("agreement_pending", 32, strong),
            _reason_effect("not_started", 44, weak),
        ],
        "variants": [],
    }
    check = effect.effect_check(document, truth)
    assert check.passed, check.detail
    assert "agreement_pending (nudge 60%) progressed 60%" in check.detail

    miscounted = {
        **document,
        "outreach": [
            _reason_effect("agreement_pending", 32, {**strong, 3: (25, 20, 14)}),
            document["outreach"][1],
        ],
    }
    check = effect.effect_check(miscounted, truth)
    assert not check.passed
    assert "agreement_pending, 3 d: observed/completed 25/14, the simulator 25/15" in check.detail

    assert not effect.effect_check({**document, "outreach": document["outreach"][:1]}, truth).passed

    backwards = {1: (30, 5, 12), 3: (25, 20, 15)}  # the strong nudge's customers progressed least
    turned = {
        **document,
        "outreach": [_reason_effect("agreement_pending", 32, backwards), document["outreach"][1]],
    }
    check = effect.effect_check(turned, truth)
    assert not check.passed
    assert "progressed 17% within 1 d, not_started (nudge 15%) 20%" in check.detail


def test_the_effect_truth_follows_each_first_message_as_the_report_does() -> None:
    polls = [T0 + timedelta(hours=n) for n in range(0, 24 * 3 + 1)]
    assert effect._stored_at(polls, T0 + timedelta(minutes=30)) == T0 + timedelta(hours=1)
    assert effect._stored_at(polls, T0 + timedelta(hours=2)) == T0 + timedelta(hours=2)
    assert effect._stored_at(polls, polls[-1] + timedelta(seconds=1)) is None
    assert effect._stored_at(polls, None) is None


def test_the_report_funnel_check_names_the_poll_where_the_report_and_leap_differ() -> None:
    hour = timedelta(hours=1)
    funnels = [
        (T0 + n * hour, Counter(), Counter({"PARTIAL": 2 - min(n, 2), "COMPLETED": min(n, 2)}))
        for n in range(4)
    ]
    # The report counts each hour at its end: its first point is the second poll's.
    points = [
        {"period": format_instant(at - hour), "at": format_instant(at), "by_status": dict(+truth)}
        for at, _, truth in funnels[1:]
    ]
    check = insight.report_funnel_check({"funnel_hourly": points}, funnels)
    assert check.passed, check.detail
    assert "at all 3 polls" in check.detail

    doctored = [*points[:1], {**points[1], "by_status": {"PARTIAL": 1, "COMPLETED": 1}}, *points[2:]]
    check = insight.report_funnel_check({"funnel_hourly": doctored}, funnels)
    assert not check.passed
    assert "2025-01-08 02:00: report {'PARTIAL': 1, 'COMPLETED': 1} != Leap {'COMPLETED': 2}" in check.detail

    check = insight.report_funnel_check({"funnel_hourly": [points[0], points[2]]}, funnels)
    assert not check.passed
    assert "2025-01-08 02:00: no hourly point" in check.detail
    assert not insight.report_funnel_check({"funnel_hourly": []}, funnels).passed


HOLDOUT = DEMO_HOLDOUT_PERCENT


def _lift_effect(reason: str, messaged: tuple[int, int], comparison: tuple[int, int]) -> dict[str, object]:
    """One reason's 1-day window: (observed, progressed) of each group."""

    def outcome(observed: int, progressed: int) -> dict[str, object]:
        share = progressed / observed if observed else None
        return {"observed": observed, "progressed": {"count": progressed, "share": share}}

    window = {"days": 1, "messaged": outcome(*messaged), "comparison": outcome(*comparison)}
    return {"reason": reason, "messaged": messaged[0], "windows": [window]}


def test_the_lift_check_holds_the_planted_effect_to_the_measured_lifts_interval() -> None:
    # 40 messaged, 24 progressed (60%); 40 compared, 8 (20%): lift 40%, Newcombe [+19%, +57%].
    truth = effect.EffectTruth(reasons={"agreement_pending": effect.Arm(0.6, 40, moved_within={1: 16})})
    document = {"outreach": [_lift_effect("agreement_pending", (40, 24), (40, 8))]}
    check = effect.lift_check(document, truth, HOLDOUT)
    assert check.passed, check.detail
    assert "agreement_pending 1 d: planted 40%, lift +40% (40 messaged, 40 compared)" in check.detail

    planted_more = effect.EffectTruth(
        reasons={"agreement_pending": effect.Arm(0.6, 40, moved_within={1: 26})}
    )
    check = effect.lift_check(document, planted_more, HOLDOUT)  # 65%: above the interval
    assert not check.passed
    assert "planted 65%, lift +40% (40 messaged, 40 compared) outside its 95% interval" in check.detail

    inflated_control = {"outreach": [_lift_effect("agreement_pending", (40, 24), (40, 22))]}
    assert not effect.lift_check(inflated_control, truth, HOLDOUT).passed  # lift 5%: [-16%, +25%]

    few = {"outreach": [_lift_effect("agreement_pending", (40, 24), (19, 2))]}
    check = effect.lift_check(few, planted_more, HOLDOUT)
    assert check.passed
    assert check.detail.startswith("too few to conclude")


def test_the_lift_check_fails_when_the_holdout_leaves_the_comparison_empty() -> None:
    """What the demo looked like before the holdout: every stalled customer messaged at once."""
    truth = effect.EffectTruth(reasons={"not_started": effect.Arm(0.15, 40, moved_within={1: 6})})
    empty = {"outreach": [_lift_effect("not_started", (40, 16), (0, 0))]}

    check = effect.lift_check(empty, truth, HOLDOUT)
    assert not check.passed
    assert "not_started 1 d: 40 messaged, no comparison customer" in check.detail
    assert effect.lift_check(empty, truth, 0).detail.startswith("too few to conclude")  # no holdout asked
