"""The pass plan (pure): which selection a run reads, from the checkpoint, the clock and the settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from leap_tracker.config import PollerSettings
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.poller.ports import (
    Checkpoint,
    PassKind,
    PassState,
)
from leap_tracker.poller.request import PollMode, PollRequest
from leap_tracker.timeutil import format_instant

# The schedule fires at about the same minute every hour. Without this slack a full pass that started
# a few seconds later one day would not be "due" 24 h later and would slip a whole hour.
SCHEDULE_SLACK = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class PassPlan:
    state: PassState
    resumed: bool
    reason: str


def plan_pass(mode: PollMode, checkpoint: Checkpoint, now: datetime, settings: PollerSettings) -> PassPlan:
    """Which selection this run reads, and from which page. The one place that decides it.

    scheduled: an unfinished pass is resumed first; else a full reconciliation when one is due; else
    an incremental pass. incremental/full: that kind, resuming an unfinished pass of the same kind.
    A fresh pass replaces an unfinished one of the other kind: nothing is lost, because the watermark
    and the last full reconciliation only move when a pass completes.
    """
    if mode is PollMode.REF_ID:
        raise ValueError("a ref_id poll reads no pass")
    pending = checkpoint.pending
    if mode is PollMode.SCHEDULED:
        if pending is not None:
            return PassPlan(pending, resumed=True, reason=f"resume the unfinished {pending.kind} pass")
        due, why = full_reconciliation_due(checkpoint, now, settings)
        kind = PassKind.FULL if due else PassKind.INCREMENTAL
        return PassPlan(fresh_pass(kind, checkpoint, now, settings), resumed=False, reason=why)
    kind = PassKind.FULL if mode is PollMode.FULL else PassKind.INCREMENTAL
    if pending is not None and pending.kind is kind:
        return PassPlan(pending, resumed=True, reason=f"resume the unfinished {kind} pass (asked for {kind})")
    return PassPlan(fresh_pass(kind, checkpoint, now, settings), resumed=False, reason=f"asked for {kind}")


def full_reconciliation_due(
    checkpoint: Checkpoint, now: datetime, settings: PollerSettings
) -> tuple[bool, str]:
    last = checkpoint.last_full_started_at
    if last is None:
        return True, "no full reconciliation has completed yet"
    period = timedelta(hours=settings.full_reconciliation_hours)
    if now - last >= period - SCHEDULE_SLACK:
        return True, f"the last full reconciliation started {format_instant(last)}, over {period} ago"
    return False, "incremental (a full reconciliation is not due)"


def fresh_pass(kind: PassKind, checkpoint: Checkpoint, now: datetime, settings: PollerSettings) -> PassState:
    if kind is PassKind.FULL:
        query = ConnectQuery(start_date=settings.full_reconciliation_start)
    elif checkpoint.watermark is None:
        # Nothing completed yet: an incremental pass from the very start reads what a full one would.
        query = ConnectQuery(last_interaction_date=settings.full_reconciliation_start)
    else:
        since = checkpoint.watermark - timedelta(minutes=settings.overlap_minutes)
        query = ConnectQuery(last_interaction_date=format_instant(since))
    return PassState(kind=kind, query=query, started_at=now)


def next_continuation(
    request: PollRequest, stopped_short: bool, pages_read: int, settings: PollerSettings
) -> PollRequest | None:
    """The request that continues a pass this run left unfinished, or None.

    A pass the time limit cut short goes on at once in a new invocation (its page token is used again
    within seconds, not an hour later), as long as this run read a page (a run that made no progress
    would only loop) and the chain is shorter than ``max_continuations``; after that the next
    scheduled run takes the pass up, and starts a new chain."""
    if not wants_continuation(request, stopped_short, pages_read):
        return None
    if request.continuation >= settings.max_continuations:
        return None
    return PollRequest(request.mode, continuation=request.continuation + 1)


def wants_continuation(request: PollRequest, stopped_short: bool, pages_read: int) -> bool:
    """Whether this run left a pass that should go on at once, the chain's length aside: a pass (not
    a ref_id poll) the time limit cut short after it read a page."""
    return request.mode is not PollMode.REF_ID and stopped_short and pages_read > 0
