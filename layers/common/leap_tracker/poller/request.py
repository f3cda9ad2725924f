"""The poller's invocation input: the modes, and an event parsed into a PollRequest (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from leap_tracker.leap.connect_model import (
    MAX_REF_ID_BYTES,
    identifier_problem,
)
from leap_tracker.privacy import excerpt


class PollMode(StrEnum):
    SCHEDULED = "scheduled"  # the poller decides: resume, full reconciliation, or incremental
    INCREMENTAL = "incremental"
    FULL = "full"
    REF_ID = "ref_id"  # one Reference ID, on demand


class InvalidPollRequest(ValueError):
    """The invocation input is not one the poller accepts (the message says what is)."""


@dataclass(frozen=True, slots=True)
class PollRequest:
    mode: PollMode
    ref_id: str | None = None
    # >0: this run continues a pass the time limit cut short (the Nth continuation in a row), sent by
    # the run before it; it does nothing when no pass is unfinished any more.
    continuation: int = 0

    def as_event(self) -> dict[str, Any]:
        """The invocation input that asks for this request (what :func:`parse_request` reads back)."""
        event: dict[str, Any] = {"mode": self.mode.value}
        if self.ref_id is not None:
            event["ref_id"] = self.ref_id
        if self.continuation:
            event["continuation"] = self.continuation
        return event


MAX_CONTINUATION = 100  # far above POLLER_MAX_CONTINUATIONS' own limit: a bad input, not a long chain


_ACCEPTED_INPUTS = (
    '{"mode": "scheduled"}, {"mode": "incremental"}, {"mode": "full"}, {"mode": "ref_id", "ref_id": "..."} '
    'or an EventBridge "Scheduled Event" (and, from the poller itself, "continuation": N with a pass mode)'
)
# What a classic EventBridge schedule rule sends (`sam local generate-event cloudwatch scheduled-event`
# prints it): no input of ours, so it can only mean the hourly run.
EVENTBRIDGE_SCHEDULED_EVENT = {"detail-type": "Scheduled Event", "source": "aws.events"}


def parse_request(event: Any) -> PollRequest:
    """The invocation input: what the schedule's Input says (EventBridge Scheduler passes it as is),
    or EventBridge's own "Scheduled Event" (a classic rule), which is a scheduled run."""
    if not isinstance(event, dict):
        raise InvalidPollRequest(f"the input is {type(event).__name__}; expected {_ACCEPTED_INPUTS}")
    if _is_eventbridge_schedule(event):
        return PollRequest(PollMode.SCHEDULED)
    raw_mode = event.get("mode")
    try:
        mode = PollMode(raw_mode)
    except ValueError:
        # Whatever the caller sent is shown cut short: the message is logged with the failed invocation.
        shown = excerpt(repr(raw_mode))
        raise InvalidPollRequest(f"unknown mode {shown}; expected {_ACCEPTED_INPUTS}") from None
    allowed = {"mode", "ref_id"} if mode is PollMode.REF_ID else {"mode", "continuation"}
    extra = sorted(set(event) - allowed)
    if extra:
        shown = excerpt(repr(extra), 100)
        raise InvalidPollRequest(
            f"unexpected key(s) {shown} for mode {mode.value!r}; expected {_ACCEPTED_INPUTS}"
        )
    if mode is not PollMode.REF_ID:
        return PollRequest(mode, continuation=_continuation(event.get("continuation", 0)))
    ref_id = event.get("ref_id")
    if not isinstance(ref_id, str) or not ref_id.strip():
        raise InvalidPollRequest('mode "ref_id" needs a non-empty string "ref_id"')
    ref_id = ref_id.strip()
    problem = identifier_problem(ref_id, MAX_REF_ID_BYTES)
    if problem:
        raise InvalidPollRequest(f'"ref_id" {problem}')
    return PollRequest(mode, ref_id)


def _continuation(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CONTINUATION:
        raise InvalidPollRequest(
            f'"continuation" must be a whole number from 0 to {MAX_CONTINUATION}; expected {_ACCEPTED_INPUTS}'
        )
    return value


def is_queue_batch(event: Any) -> bool:
    """An SQS batch (PollRequestQueue's event source mapping: targeted polls), not a poll input."""
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def _is_eventbridge_schedule(event: dict[str, Any]) -> bool:
    return "mode" not in event and all(event.get(k) == v for k, v in EVENTBRIDGE_SCHEDULED_EVENT.items())
