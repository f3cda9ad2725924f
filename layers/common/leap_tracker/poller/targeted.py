"""One targeted poll request, as the poller consumes it from PollRequestQueue.

The request is decided by ``webhooks.targeted.next_step`` on its Reference ID's poll mark; when it is
due, the poll is the ordinary ref_id run (:func:`~leap_tracker.poller.run.run_poll`: under the lease,
its writes reach the stream, the emitter and outreach like any poll's, and it never touches the
checkpoint of the scheduled passes). Once the run completed, its start is the mark. What the
handler does with the result: acknowledge the record, or deliver it again at ``until``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from leap_tracker.config import PollerSettings, TargetedPollSettings
from leap_tracker.poller.ports import PollMarks
from leap_tracker.poller.request import PollMode, PollRequest
from leap_tracker.poller.run import PollEnvironment, RunStatus, RunSummary, run_poll
from leap_tracker.webhooks.targeted import (
    PollRequestMessage,
    Stage,
    Step,
    busy_retry_seconds,
    next_step,
)


class Outcome(StrEnum):
    COVERED = "covered"  # a poll late enough for it already completed: acknowledged, no poll
    WAITING = "waiting"  # not due yet: delivered again at ``until``
    POLLED = "polled"  # polled; ``until``: when the after-refresh poll is due (None: that was it)
    BUSY = "busy"  # a pass holds the lease, or the run neared its time limit: again at ``until``


@dataclass(frozen=True, slots=True)
class TargetedResult:
    outcome: Outcome
    stage: Stage | None = None  # the poll the request waited for
    until: datetime | None = None  # deliver the request again then; None: acknowledge it
    summary: RunSummary | None = None  # the run's, when one ran (skipped included)


def handle_poll_request(
    message: PollRequestMessage,
    receive_count: int,
    run_id: str,
    env: PollEnvironment,
    marks: PollMarks,
    poller: PollerSettings,
    timing: TargetedPollSettings,
) -> TargetedResult:
    """Decide the request and poll when it is due. A run that cannot do its work raises
    ``PollFailed`` (the record fails: SQS retries it, then dead-letters it)."""
    now = env.now()
    step = next_step(message.requested_at, marks.polled_at(message.ref_id), now, timing)
    if step.step is Step.DONE:
        return TargetedResult(Outcome.COVERED)
    if step.step is Step.WAIT:
        return TargetedResult(Outcome.WAITING, step.stage, step.due)
    summary = run_poll(PollRequest(PollMode.REF_ID, message.ref_id), run_id, env, poller)
    if summary.status is not RunStatus.COMPLETED:  # skipped (the lease) or interrupted (time)
        retry = timedelta(seconds=busy_retry_seconds(receive_count, timing))
        return TargetedResult(Outcome.BUSY, step.stage, env.now() + retry, summary)
    marks.record_poll(message.ref_id, now, run_id)  # ``now`` was before Leap was read: it covers that
    after = next_step(message.requested_at, now, env.now(), timing)
    until = after.due if after.step is not Step.DONE else None
    return TargetedResult(Outcome.POLLED, step.stage, until, summary)
