"""The insight figures (docs/insight.md): pure functions of plain data, no AWS, no clock.

In: every stored change of each entry (:class:`Change`: written at, previous entry, entry, sequence),
the messages outreach sent (:class:`Message`, from the ledger) and the meter appearances seen by the
meter watches (:class:`MeterAppearance`), with the report's ``now``. Out: plain dataclasses
(:class:`Report`), which ``dataclasses.asdict`` turns into report.json.

An entry's state holds from its change's ``written_at`` (when the poller stored it) until the next
change. The previous entry of the first change seen (history older than the window's start is not read) is
the state known from before the window (:data:`BEFORE`).

Stages are outreach's own names (``outreach.decision.assess``: the reason, or why none is needed), so
the stall map and the outreach comparison speak the language of docs/outreach.md.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from leap_tracker.leap import wire
from leap_tracker.outreach import decision
from leap_tracker.timeutil import format_instant, parse_instant

Entry = Mapping[str, Any]
BEFORE = datetime.min.replace(tzinfo=UTC)  # "known from before the window"
_NEVER = datetime.max.replace(tzinfo=UTC)
Z95 = 1.959963984540054  # two-sided 95% normal quantile, for the Wilson interval
MIN_GROUP = 20  # fewer observed customers in either group: "too few to conclude"
TOO_FEW = "too few to conclude"
WINDOWS_DAYS = (1, 3, 7)
DEFAULT_STALL_DELAY = timedelta(hours=1)  # outreach's ACTIONABLE_DELAY_MINUTES default: stalled from then
NO_ERROR = "none"
NO_REGION = "unknown"
UNRECORDED_VARIANT = "unrecorded"  # messages claimed before the ledger kept the variant
NO_OTHER_VARIANT = "no other variant"

# Time since the last interaction, for the stall map: (label, upper bound exclusive; None = open).
STALL_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("<1 h", timedelta(hours=1)),
    ("1-24 h", timedelta(hours=24)),
    ("1-3 d", timedelta(days=3)),
    ("3-7 d", timedelta(days=7)),
    (">7 d", None),
)
# Bins of the time-to-complete and time-to-meter histograms.
DURATION_BINS: tuple[tuple[str, timedelta | None], ...] = (
    ("<1 h", timedelta(hours=1)),
    ("1-6 h", timedelta(hours=6)),
    ("6-24 h", timedelta(hours=24)),
    ("1-3 d", timedelta(days=3)),
    ("3-7 d", timedelta(days=7)),
    ("7-14 d", timedelta(days=14)),
    (">14 d", None),
)

COMPLETED = decision.Because.COMPLETED.value
NOTHING_OUTSTANDING = decision.Because.NOTHING_OUTSTANDING.value
UNKNOWN_STATUS = decision.Because.UNKNOWN_CONNECTION_STATUS.value
# How far along the guide's steps a stage is; a later stage is progress. Unknown statuses rank lowest.
_UTILITY_STAGE = 1
_RANKS = {
    decision.NOT_STARTED: 0,
    decision.UTILITY_NOT_CONNECTED: _UTILITY_STAGE,
    decision.OTHER_UTILITY: _UTILITY_STAGE,
    decision.AGREEMENT_PENDING: 2,
    NOTHING_OUTSTANDING: 3,
    COMPLETED: 4,
}
STAGE_ORDER: tuple[str, ...] = (*decision.ALL_REASONS, NOTHING_OUTSTANDING, UNKNOWN_STATUS)


class Change(NamedTuple):
    written_at: datetime
    previous: Entry | None
    entry: Entry
    sequence: int


class Message(NamedTuple):
    sent_at: datetime
    reason: str
    attempt: int
    variant: str = UNRECORDED_VARIANT  # the template variant (ledger entries claimed before: none)


class MeterAppearance(NamedTuple):
    completed_at: datetime  # the completion's last interaction (the watch's completed_at)
    appeared_at: datetime  # when the meter watch saw the meter (its closed_at)


# --- one entry's states ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class State:
    at: datetime  # from when it holds (BEFORE: known from before the window)
    status: str
    stage: str
    progress: tuple[int, int]  # (stage rank, required utilities connected): larger is further along
    region: str
    error_code: str  # the first required utility's error code while it is in ERROR, else NO_ERROR
    last_interaction: datetime | None
    started: datetime | None


def stage_of(entry: Entry) -> str:
    """The outreach reason the entry's state calls for, or why none (``completed``...)."""
    need = decision.assess(entry)
    if need.reason is not None:
        return need.reason
    return need.because.value if need.because is not None else UNKNOWN_STATUS


def progress_of(entry: Entry, stage: str) -> tuple[int, int]:
    rank = _UTILITY_STAGE if stage.startswith(decision.UTILITY_ERROR_PREFIX) else _RANKS.get(stage, -1)
    connected = sum(
        1
        for utility in decision.required_utilities(entry)
        if utility.get(wire.UTILITY_STATUS) == wire.UTILITY_CONNECTED
    )
    return rank, connected


def state_of(entry: Entry, at: datetime) -> State:
    stage = stage_of(entry)
    required = decision.required_utilities(entry)
    first = required[0] if required else None
    code = NO_ERROR
    if first is not None and first.get(wire.UTILITY_STATUS) == wire.UTILITY_ERROR:
        code = str(first.get(wire.UTILITY_ERROR_CODE) or "unknown")
    return State(
        at=at,
        status=str(entry.get(wire.ENTRY_CONNECTION_STATUS) or "none"),
        stage=stage,
        progress=progress_of(entry, stage),
        region=str(entry.get(wire.ENTRY_TRANSMISSION_REGION) or NO_REGION),
        error_code=code,
        last_interaction=readable_instant(entry.get(wire.ENTRY_LAST_INTERACTION)),
        started=readable_instant(entry.get(wire.ENTRY_START)),
    )


def timeline(changes: Iterable[Change]) -> list[State]:
    """The entry's states in order, each change once (by sequence); the first change's previous entry
    as the state known from before."""
    ordered = sorted({c.sequence: c for c in changes}.values(), key=lambda c: (c.sequence, c.written_at))
    if not ordered:
        return []
    states = [state_of(ordered[0].previous, BEFORE)] if ordered[0].previous is not None else []
    return states + [state_of(c.entry, c.written_at) for c in ordered]


def state_at(states: Sequence[State], moment: datetime) -> State | None:
    """The state holding at ``moment`` (the last one from at or before it), None before the first."""
    index = bisect.bisect_right([s.at for s in states], moment)
    return states[index - 1] if index else None


def readable_instant(value: Any) -> datetime | None:
    """An RFC 3339 instant from stored or Leap data; None when absent or unreadable (a report shows
    what it can read and counts the rest, it does not stop on one bad value)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None


# --- (a) the funnel over time ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunnelPoint:
    period: str  # the period's start
    at: str  # the moment counted: the period's end, or now for the current period
    total: int  # entries known at that moment
    by_status: dict[str, int]
    by_region: dict[str, dict[str, int]]  # region -> connection_status -> entries
    by_error_code: dict[str, dict[str, int]]  # first required utility's error code -> status -> entries


def funnel(
    timelines: Mapping[str, Sequence[State]], start: datetime, now: datetime, step: timedelta
) -> list[FunnelPoint]:
    """The status of every known entry at the end of each period from ``start``'s to ``now``'s: one
    sweep over the states in time order (each change moves one entry from one count to another)."""
    moves = sorted(((s.at, entry_id, s) for entry_id, states in timelines.items() for s in states), key=_move)
    current: dict[str, State] = {}
    by_status: Counter[str] = Counter()
    by_region: dict[str, Counter[str]] = {}
    by_code: dict[str, Counter[str]] = {}
    points: list[FunnelPoint] = []
    next_move = 0
    for period in _periods(start, now, step):
        moment = min(period + step, now)
        while next_move < len(moves) and moves[next_move][0] <= moment:
            _, entry_id, state = moves[next_move]
            _count(current.get(entry_id), -1, by_status, by_region, by_code)
            _count(state, 1, by_status, by_region, by_code)
            current[entry_id] = state
            next_move += 1
        points.append(
            FunnelPoint(
                period=format_instant(period),
                at=format_instant(moment),
                total=len(current),
                by_status=_positive(by_status),
                by_region={k: _positive(v) for k, v in sorted(by_region.items()) if +v},
                by_error_code={k: _positive(v) for k, v in sorted(by_code.items()) if +v},
            )
        )
    return points


def _move(move: tuple[datetime, str, State]) -> tuple[datetime, str]:
    return move[0], move[1]


def _periods(start: datetime, now: datetime, step: timedelta) -> Iterable[datetime]:
    period = _floor(start, step)
    while period <= now:
        yield period
        period += step


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + step * ((moment - epoch) // step)


def _count(
    state: State | None,
    sign: int,
    by_status: Counter[str],
    by_region: dict[str, Counter[str]],
    by_code: dict[str, Counter[str]],
) -> None:
    if state is None:
        return
    by_status[state.status] += sign
    by_region.setdefault(state.region, Counter())[state.status] += sign
    by_code.setdefault(state.error_code, Counter())[state.status] += sign


def _positive(counts: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in sorted(counts.items()) if v > 0}


# --- (b) where customers stall -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StallMap:
    stages: list[str]
    buckets: list[str]
    counts: dict[str, dict[str, int]]  # stage -> time since last interaction -> entries
    total: int


def stall_map(timelines: Mapping[str, Sequence[State]], now: datetime) -> StallMap:
    """Every entry not completed, by its current stage and the time since its last interaction (Leap's
    ``last_interaction_date_time_utc``, else when the state was stored)."""
    counts: dict[str, Counter[str]] = {}
    for states in timelines.values():
        if not states or states[-1].stage == COMPLETED:
            continue
        last = states[-1]
        since = last.last_interaction or (last.at if last.at != BEFORE else None)
        if since is None:
            continue
        counts.setdefault(last.stage, Counter())[bucket(now - since, STALL_BUCKETS)] += 1
    stages = [s for s in STAGE_ORDER if s in counts] + sorted(set(counts) - set(STAGE_ORDER))
    labels = [label for label, _ in STALL_BUCKETS]
    table = {s: {label: counts[s][label] for label in labels} for s in stages}
    return StallMap(stages, labels, table, sum(sum(row.values()) for row in table.values()))


def bucket(age: timedelta, bins: Sequence[tuple[str, timedelta | None]]) -> str:
    for label, upper in bins:
        if upper is None or age < upper:
            return label
    raise ValueError("the last bin must be open")


# --- (c) how long it takes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Distribution:
    count: int
    median_hours: float | None
    p90_hours: float | None
    histogram: dict[str, int]  # DURATION_BINS label -> count


def distribution(durations: Iterable[timedelta]) -> Distribution:
    hours = sorted(d.total_seconds() / 3600 for d in durations)
    histogram = {label: 0 for label, _ in DURATION_BINS}
    for value in hours:
        histogram[bucket(timedelta(hours=value), DURATION_BINS)] += 1
    return Distribution(len(hours), quantile(hours, 0.5), quantile(hours, 0.9), histogram)


def quantile(ordered: Sequence[float], p: float) -> float | None:
    """Linear interpolation between the closest ranks (type 7, as numpy's default); None when empty."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * p
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def time_to_complete(timelines: Mapping[str, Sequence[State]]) -> Distribution:
    """From the first click (the entry's start, else its first stored change) to its first COMPLETED
    state (Leap's last interaction then, else when it was stored)."""
    durations = []
    for states in timelines.values():
        done = next((s for s in states if s.stage == COMPLETED), None)
        if done is None:
            continue
        started = next((s.started for s in states if s.started is not None), None)
        started = started or next((s.at for s in states if s.at != BEFORE), None)
        completed = done.last_interaction or (done.at if done.at != BEFORE else None)
        if started is not None and completed is not None and completed >= started:
            durations.append(completed - started)
    return distribution(durations)


def time_to_meter(meters: Iterable[MeterAppearance]) -> Distribution:
    return distribution(m.appeared_at - m.completed_at for m in meters if m.appeared_at >= m.completed_at)


# --- (d) what outreach achieves ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Share:
    count: int
    share: float | None
    low: float | None  # 95% Wilson interval
    high: float | None


@dataclass(frozen=True, slots=True)
class Outcome:
    observed: int  # customers whose whole window lies before now
    progressed: Share
    completed: Share


@dataclass(frozen=True, slots=True)
class Window:
    days: int
    messaged: Outcome
    comparison: Outcome
    progressed_verdict: str
    completed_verdict: str


@dataclass(frozen=True, slots=True)
class ReasonEffect:
    reason: str
    messaged: int  # customers whose first message of this reason meets a known state
    comparison: int  # customers matched into the comparison cohort
    windows: list[Window]


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    if n == 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # The interval contains p; the clamps keep rounding (0 successes: 5e-17 > 0) from saying otherwise.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def newcombe(
    successes_a: int, n_a: int, successes_b: int, n_b: int, z: float = Z95
) -> tuple[float, float] | None:
    """The 95% interval of share a minus share b: Newcombe's hybrid score interval (1998, method 10),
    built from the two Wilson intervals; None when either group is empty."""
    interval_a, interval_b = wilson(successes_a, n_a, z), wilson(successes_b, n_b, z)
    if interval_a is None or interval_b is None:
        return None
    (low_a, high_a), (low_b, high_b) = interval_a, interval_b
    p_a, p_b = successes_a / n_a, successes_b / n_b
    difference = p_a - p_b
    return (
        difference - math.hypot(p_a - low_a, high_b - p_b),
        difference + math.hypot(high_a - p_a, p_b - low_b),
    )


def share(successes: int, n: int) -> Share:
    interval = wilson(successes, n)
    if interval is None:
        return Share(successes, None, None, None)
    return Share(successes, successes / n, *interval)


class _Start(NamedTuple):
    entry_id: str
    moment: datetime
    base: tuple[int, int]
    # A comparison customer is followed only until its first message: what it did after being messaged
    # is the message's effect, not the comparison's (censored there: no later progress counts).
    until: datetime = _NEVER


def outreach_effects(
    timelines: Mapping[str, Sequence[State]],
    messages: Mapping[str, Sequence[Message]],
    now: datetime,
    stall_delay: timedelta = DEFAULT_STALL_DELAY,
) -> list[ReasonEffect]:
    """Per reason: customers at their first message of it, beside customers at the same stage, stalled
    (``stall_delay`` past their last interaction) and not yet messaged at one of those moments, each
    followed from that moment (docs/insight.md#outreach-effectiveness)."""
    first_message = {e: min(m.sent_at for m in ms) for e, ms in messages.items() if ms}
    effects = []
    for reason in sorted({m.reason for ms in messages.values() for m in ms}):
        treated = _treated(timelines, messages, reason)
        moments = sorted(start.moment for start in treated)
        controls = [
            start
            for entry_id, states in sorted(timelines.items())
            if (start := _control(entry_id, states, reason, moments, first_message, stall_delay)) is not None
        ]
        windows = [_window(days, treated, controls, timelines, now) for days in WINDOWS_DAYS]
        effects.append(ReasonEffect(reason, len(treated), len(controls), windows))
    return effects


def _treated(
    timelines: Mapping[str, Sequence[State]], messages: Mapping[str, Sequence[Message]], reason: str
) -> list[_Start]:
    starts = []
    for entry_id, sent in sorted(messages.items()):
        times = [m.sent_at for m in sent if m.reason == reason]
        state = state_at(timelines.get(entry_id, ()), min(times)) if times else None
        if state is not None:
            starts.append(_Start(entry_id, min(times), state.progress))
    return starts


def _control(
    entry_id: str,
    states: Sequence[State],
    reason: str,
    moments: Sequence[datetime],
    first_message: Mapping[str, datetime],
    stall_delay: timedelta,
) -> _Start | None:
    """The first message moment at which this customer stood at ``reason``'s stage, stalled and not yet
    messaged (by any reason): it is followed from there, once."""
    not_messaged_until = first_message.get(entry_id, _NEVER)
    for index, state in enumerate(states):
        if state.stage != reason:
            continue
        stalled_from = state.at
        if state.last_interaction is not None:
            stalled_from = max(stalled_from, state.last_interaction + stall_delay)
        until = min(states[index + 1].at if index + 1 < len(states) else _NEVER, not_messaged_until)
        found = bisect.bisect_left(moments, stalled_from)
        if found < len(moments) and moments[found] < until:
            return _Start(entry_id, moments[found], state.progress, not_messaged_until)
    return None


def _window(
    days: int,
    treated: Sequence[_Start],
    controls: Sequence[_Start],
    timelines: Mapping[str, Sequence[State]],
    now: datetime,
) -> Window:
    messaged = _outcome(treated, timelines, timedelta(days=days), now)
    comparison = _outcome(controls, timelines, timedelta(days=days), now)
    return Window(
        days,
        messaged,
        comparison,
        verdict(messaged.observed, comparison.observed, messaged.progressed, comparison.progressed),
        verdict(messaged.observed, comparison.observed, messaged.completed, comparison.completed),
    )


def _outcome(
    starts: Sequence[_Start], timelines: Mapping[str, Sequence[State]], span: timedelta, now: datetime
) -> Outcome:
    observed = progressed = completed = 0
    for start in starts:
        end = start.moment + span
        if end > now:  # the window is not over: not observed yet
            continue
        observed += 1
        later = [s for s in timelines[start.entry_id] if start.moment < s.at <= min(end, start.until)]
        progressed += any(s.progress > start.base for s in later)
        completed += any(s.stage == COMPLETED for s in later)
    return Outcome(observed, share(progressed, observed), share(completed, observed))


def verdict(
    messaged_n: int, comparison_n: int, messaged: Share, comparison: Share, subject: str = "messaged"
) -> str:
    """Plain words: too few, or whether the two 95% intervals are apart (a conservative test)."""
    if messaged_n < MIN_GROUP or comparison_n < MIN_GROUP:
        return TOO_FEW
    ours, theirs = (messaged.low, messaged.high), (comparison.low, comparison.high)
    if None in ours or None in theirs:  # not reached: both groups have MIN_GROUP > 0 customers
        return TOO_FEW
    if ours[0] > theirs[1]:  # type: ignore[operator]
        return f"{subject} higher"
    if ours[1] < theirs[0]:  # type: ignore[operator]
        return f"{subject} lower"
    return "no clear difference"


# --- (e) which message works: the variants of each reason --------------------------------------------


@dataclass(frozen=True, slots=True)
class VariantWindow:
    days: int
    variant: Outcome  # the customers whose first message of the reason was this variant
    others: Outcome  # those whose first message of the reason was another variant
    progressed_verdict: str  # this variant against the others
    completed_verdict: str


@dataclass(frozen=True, slots=True)
class VariantEffect:
    reason: str
    variant: str
    messaged: int  # customers whose first message of this reason was this variant (at a known state)
    windows: list[VariantWindow]


def variant_effects(
    timelines: Mapping[str, Sequence[State]], messages: Mapping[str, Sequence[Message]], now: datetime
) -> list[VariantEffect]:
    """Per reason and variant: the customers at their first message of the reason, split by the variant
    that message was, each followed from it as :func:`outreach_effects` follows them, and each variant
    held against the reason's other variants pooled (docs/insight.md#message-variants)."""
    effects = []
    for reason in sorted({m.reason for ms in messages.values() for m in ms}):
        variant_of = _first_variants(messages, reason)
        by_variant: dict[str, list[_Start]] = {}
        for start in _treated(timelines, messages, reason):
            by_variant.setdefault(variant_of[start.entry_id], []).append(start)
        for name, starts in sorted(by_variant.items()):
            others = [s for other, group in by_variant.items() if other != name for s in group]
            windows = [_variant_window(days, starts, others, timelines, now) for days in WINDOWS_DAYS]
            effects.append(VariantEffect(reason, name, len(starts), windows))
    return effects


def _first_variants(messages: Mapping[str, Sequence[Message]], reason: str) -> dict[str, str]:
    """Each customer's variant of ``reason``: its first message's (a customer is in one arm)."""
    first = {}
    for entry_id, sent in messages.items():
        of_reason = sorted(m for m in sent if m.reason == reason)
        if of_reason:
            first[entry_id] = of_reason[0].variant
    return first


def _variant_window(
    days: int,
    starts: Sequence[_Start],
    others: Sequence[_Start],
    timelines: Mapping[str, Sequence[State]],
    now: datetime,
) -> VariantWindow:
    ours = _outcome(starts, timelines, timedelta(days=days), now)
    theirs = _outcome(others, timelines, timedelta(days=days), now)

    def judge(outcome: str) -> str:
        if not others:
            return NO_OTHER_VARIANT
        return verdict(
            ours.observed, theirs.observed, getattr(ours, outcome), getattr(theirs, outcome), "this variant"
        )

    return VariantWindow(days, ours, theirs, judge("progressed"), judge("completed"))


# --- everything --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    now: str
    since: str | None
    entries: int
    changes: int
    messages: int
    funnel_daily: list[FunnelPoint]
    funnel_hourly: list[FunnelPoint]
    stalls: StallMap
    time_to_complete: Distribution
    time_to_meter: Distribution
    outreach: list[ReasonEffect]
    variants: list[VariantEffect]


def analyse(
    changes: Mapping[str, Sequence[Change]],
    messages: Mapping[str, Sequence[Message]],
    meters: Iterable[MeterAppearance],
    now: datetime,
    since: datetime | None = None,
    stall_delay: timedelta = DEFAULT_STALL_DELAY,
) -> Report:
    timelines = {entry_id: timeline(items) for entry_id, items in changes.items() if items}
    written = [c.written_at for items in changes.values() for c in items]
    start = since if since is not None else min(written, default=now)
    return Report(
        now=format_instant(now),
        since=format_instant(since) if since is not None else None,
        entries=len(timelines),
        changes=len(written),
        messages=sum(len(ms) for ms in messages.values()),
        funnel_daily=funnel(timelines, start, now, timedelta(days=1)),
        funnel_hourly=funnel(timelines, start, now, timedelta(hours=1)),
        stalls=stall_map(timelines, now),
        time_to_complete=time_to_complete(timelines),
        time_to_meter=time_to_meter(meters),
        outreach=outreach_effects(timelines, messages, now, stall_delay),
        variants=variant_effects(timelines, messages, now),
    )


def document(report: Report, unreadable_changes: int) -> dict[str, Any]:
    """The report as JSON holds it (report.json, and the daily ``insight/*.json`` in S3): the figures
    and how many history items could not be read (left out, counted)."""
    return asdict(report) | {"unreadable_changes": unreadable_changes}
