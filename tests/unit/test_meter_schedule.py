"""The meter watch schedule: when checks happen, when overdue and expiry are published (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.config import ConfigError, MeterWatchSettings, load_settings
from leap_tracker.events import catalog
from leap_tracker.meters import schedule
from leap_tracker.meters.model import ClosedReason, MeterWatch, WatchStatus

COMPLETED = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
DEFAULTS = MeterWatchSettings()
HOUR = timedelta(hours=1)


def watch_for(
    completed_at: datetime = COMPLETED, rules: MeterWatchSettings = DEFAULTS, **changes
) -> MeterWatch:
    watch = schedule.new_watch(
        entry_id="CAISO_e1_ref-1",
        ref_id="ref-1",
        transmission_region="CAISO",
        completed_at=completed_at,
        sequence=4,
        now=completed_at,
        settings=rules,
    )
    return replace(watch, **changes)


@dataclass
class Run:
    """What happened to one watch across a series of sweeps."""

    watch: MeterWatch
    checks_at: list[datetime] = field(default_factory=list)
    dues: list[datetime] = field(default_factory=list)
    published: list[tuple[datetime, str]] = field(default_factory=list)


def sweep_through(
    watch: MeterWatch,
    sweep_times: list[datetime],
    rules: MeterWatchSettings,
    meters_at: datetime | None = None,
) -> Run:
    """Play sweeps at the given times: each checks the watch if it is open and due."""
    run = Run(watch, dues=[watch.due_at] if watch.due_at else [])
    for now in sweep_times:
        if not run.watch.is_open or run.watch.due_at is None or run.watch.due_at > now:
            continue
        found = ["m-1"] if meters_at is not None and meters_at <= now else []
        outcome = schedule.after_check(run.watch, found, now, rules)
        run.checks_at.append(now)
        if outcome.publish:
            run.published.append((now, outcome.publish))
        run.watch = outcome.watch
        if outcome.watch.due_at is not None:
            run.dues.append(outcome.watch.due_at)
    return run


def hourly(start: datetime, hours: int) -> list[datetime]:
    return [start + n * HOUR for n in range(hours + 1)]


# --- the default timeline, spelled out ---------------------------------------------------------------


def test_default_timeline_backs_off_then_slows_after_overdue_then_expires() -> None:
    run = sweep_through(watch_for(), hourly(COMPLETED, 15 * 24), DEFAULTS)

    hours_after_completion = [int((t - COMPLETED) / HOUR) for t in run.checks_at]
    assert hours_after_completion == [24, 25, 27, 31, 39, 51, 63, 72, *range(96, 337, 24)]
    assert run.published == [
        (COMPLETED + 72 * HOUR, catalog.METER_OVERDUE),
        (COMPLETED + 14 * 24 * HOUR, catalog.METER_WATCH_EXPIRED),
    ]
    assert run.watch.status is WatchStatus.CLOSED
    assert run.watch.closed_reason is ClosedReason.EXPIRED
    assert run.watch.checks == 19
    assert run.watch.due_at is None


def test_meters_found_close_the_watch_with_appeared_and_their_ids() -> None:
    watch = watch_for()
    outcome = schedule.after_check(watch, ["m-1", "m-2"], COMPLETED + 24 * HOUR, DEFAULTS)

    assert outcome.publish == catalog.METER_APPEARED
    assert outcome.watch.closed_reason is ClosedReason.APPEARED
    assert outcome.watch.meter_ids == ("m-1", "m-2")
    assert outcome.watch.checks == 1
    assert outcome.watch.due_at is None


def test_late_meters_get_overdue_then_appeared() -> None:
    meters_at = COMPLETED + 5 * 24 * HOUR
    run = sweep_through(watch_for(), hourly(COMPLETED, 15 * 24), DEFAULTS, meters_at=meters_at)

    assert [kind for _, kind in run.published] == [catalog.METER_OVERDUE, catalog.METER_APPEARED]
    assert run.published[1][0] == COMPLETED + 120 * HOUR  # the first daily check after they came


def test_a_watch_opened_after_the_horizon_is_checked_once_and_only_expires() -> None:
    completed = COMPLETED - 30 * 24 * HOUR
    watch = watch_for(completed_at=completed)
    assert watch.due_at == completed + 24 * HOUR  # long past: due at the next sweep

    outcome = schedule.after_check(watch, [], COMPLETED, DEFAULTS)

    assert outcome.publish == catalog.METER_WATCH_EXPIRED
    assert not outcome.watch.overdue_published


def test_a_check_at_the_horizon_that_finds_meters_is_appeared_not_expired() -> None:
    watch = watch_for(checks=18, overdue_published=True)
    outcome = schedule.after_check(watch, ["m-1"], COMPLETED + 14 * 24 * HOUR, DEFAULTS)
    assert outcome.publish == catalog.METER_APPEARED


def test_backoff_is_capped_and_cannot_overflow() -> None:
    moments = schedule.timeline(COMPLETED, DEFAULTS)
    now = COMPLETED + 24 * HOUR
    assert schedule.next_check_at(10**9, now, moments, DEFAULTS) == now + 12 * HOUR


# --- reopening ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "sequence", "expected"),
    [
        (WatchStatus.OPEN, None, 9, False),  # still waiting on the first completion
        (WatchStatus.CLOSED, ClosedReason.APPEARED, 9, False),  # one meter.appeared per Reference ID
        (WatchStatus.CLOSED, ClosedReason.EXPIRED, 9, True),  # completed again after giving up
        (WatchStatus.CLOSED, ClosedReason.CONNECTION_GONE, 9, True),
        (WatchStatus.CLOSED, ClosedReason.EXPIRED, 4, False),  # a replay of the same completion
        (WatchStatus.CLOSED, ClosedReason.EXPIRED, 3, False),  # an older one
    ],
)
def test_only_a_later_completion_over_a_watch_closed_without_meters_starts_a_new_watch(
    status: WatchStatus, reason: ClosedReason | None, sequence: int, expected: bool
) -> None:
    existing = watch_for(status=status, closed_reason=reason)
    assert schedule.supersedes(existing, sequence) is expected


# --- configuration -----------------------------------------------------------------------------------


def test_meter_settings_come_from_meter_variables() -> None:
    loaded = load_settings(
        {"METER_FIRST_CHECK_HOURS": "12", "METER_OVERDUE_HOURS": "48", "METER_GIVE_UP_DAYS": "7"}
    ).meters
    assert (loaded.first_check_hours, loaded.overdue_hours, loaded.give_up_days) == (12, 48, 7)


@pytest.mark.parametrize("variable", ["METER_OVERDUE_HOURS", "METER_FIRST_CHECK_HOURS"])
def test_a_moment_at_or_past_the_horizon_is_a_config_error(variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: "48", "METER_GIVE_UP_DAYS": "2"})


# --- properties --------------------------------------------------------------------------------------


@st.composite
def meter_settings(draw: st.DrawFn) -> MeterWatchSettings:
    overdue_hours = draw(st.integers(1, 240))
    first_check_hours = draw(st.integers(0, 96))
    return MeterWatchSettings(
        first_check_hours=first_check_hours,
        overdue_hours=overdue_hours,
        # what load_settings accepts: both moments before the horizon
        give_up_days=draw(st.integers(max(overdue_hours, first_check_hours) // 24 + 1, 30)),
        retry_minutes=draw(st.integers(1, 240)),
        max_retry_hours=draw(st.integers(1, 48)),
        overdue_retry_hours=draw(st.integers(1, 72)),
    )


gaps = st.lists(st.integers(1, 36 * 60), min_size=1, max_size=400)  # minutes between sweeps
completion_lag = st.integers(0, 40 * 24 * 60)  # minutes from completion to the watch opening


def sweep_times(start: datetime, gap_minutes: list[int]) -> list[datetime]:
    times, now = [], start
    for gap in gap_minutes:
        now += timedelta(minutes=gap)
        times.append(now)
    return times


@settings(max_examples=300, deadline=None)
@given(rules=meter_settings(), gap_minutes=gaps, lag=completion_lag, meters_after=st.none() | completion_lag)
def test_schedule_invariants_hold_for_any_sweep_pattern(
    rules: MeterWatchSettings, gap_minutes: list[int], lag: int, meters_after: int | None
) -> None:
    opened = COMPLETED + timedelta(minutes=lag)
    meters_at = None if meters_after is None else COMPLETED + timedelta(minutes=meters_after)
    moments = schedule.timeline(COMPLETED, rules)
    run = sweep_through(watch_for(rules=rules), sweep_times(opened, gap_minutes), rules, meters_at)

    # Due times strictly increase, each after the check that set it, never past the horizon.
    assert all(earlier < later for earlier, later in zip(run.dues, run.dues[1:], strict=False))
    assert all(due <= moments.give_up_at for due in run.dues)
    assert all(due > check for check, due in zip(run.checks_at, run.dues[1:], strict=False))
    # Each type at most once; nothing after the closing event; the closing event closes.
    kinds = [kind for _, kind in run.published]
    assert len(kinds) == len(set(kinds))
    closing = {catalog.METER_APPEARED, catalog.METER_WATCH_EXPIRED}
    assert all(kind not in closing for kind in kinds[:-1])
    assert (run.watch.status is WatchStatus.CLOSED) == bool(kinds and kinds[-1] in closing)
    assert run.watch.checks == len(run.checks_at)
    for when, kind in run.published:
        if kind == catalog.METER_OVERDUE:
            assert moments.overdue_at <= when < moments.give_up_at
        if kind == catalog.METER_WATCH_EXPIRED:
            assert when >= moments.give_up_at
        if kind == catalog.METER_APPEARED:
            assert meters_at is not None
            assert when >= meters_at
    # A sweep past the horizon never leaves the watch open.
    if run.checks_at and run.checks_at[-1] >= moments.give_up_at:
        assert run.watch.status is WatchStatus.CLOSED


@settings(max_examples=150, deadline=None)
@given(rules=meter_settings(), offset_minutes=st.integers(0, 59))
def test_hourly_sweeps_without_meters_publish_overdue_once_then_expire(
    rules: MeterWatchSettings, offset_minutes: int
) -> None:
    moments = schedule.timeline(COMPLETED, rules)
    first_sweep = COMPLETED + timedelta(minutes=offset_minutes)
    total_hours = int((moments.give_up_at - COMPLETED) / HOUR) + 2
    run = sweep_through(watch_for(rules=rules), hourly(first_sweep, total_hours), rules)

    assert [kind for _, kind in run.published] == [catalog.METER_OVERDUE, catalog.METER_WATCH_EXPIRED]
    overdue_from = max(moments.overdue_at, moments.first_check_at)
    assert overdue_from <= run.published[0][0] < overdue_from + HOUR  # on time, to the sweep
    assert run.published[1][0] < moments.give_up_at + HOUR
