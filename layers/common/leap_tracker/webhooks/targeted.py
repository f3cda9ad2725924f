"""Targeted polls: what a poll request carries, when it is due and when it is done (pure).

A Connect-session webhook says a customer just did something, but Leap's Connect data may show it
only after Leap's next hourly refresh. So each request (one message per webhook: :func:`request_body`)
wants two polls of its Reference ID:

1. **soon**: a poll that starts at or after the request. It is due ``delay_seconds`` (120) after the
   request, and it covers every request of the same Reference ID that came in before it started: a
   burst of webhooks gets one soon poll (the debounce window is the delay).
2. **after the refresh**: a poll that starts at least ``refresh_seconds`` (65 minutes) after the
   request, when one of Leap's hourly refreshes has certainly happened since. Every request one soon
   poll covered comes back at the same instant, that poll's start + ``refresh_seconds``, so they
   converge on one poll too; and once a request is due it polls (a later soon poll of the same
   Reference ID never puts it off, so a steady stream of webhooks cannot starve it).

One fact is kept per Reference ID: when the last targeted poll of it started (``polled_at``, a
maximum that only grows, written once that poll completed; ``table.TARGETED_POLLED_AT``).
:func:`next_step` decides a request from that fact, its own time and the clock alone, so duplicated,
late or out-of-order requests and two consumers at once lose nothing: a request is done only once a
poll that started late enough for it completed, and a poll late enough for one request is late enough
for every earlier one. At worst two consumers at the same instant both poll (one more Connect read).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from leap_tracker.config import MAX_SQS_DELAY_SECONDS, TargetedPollSettings
from leap_tracker.poller.request import InvalidPollRequest, PollMode, parse_request
from leap_tracker.timeutil import parse_instant

# The request message's body: a JSON object with these two fields (and nothing about the webhook).
REF_ID_FIELD = "ref_id"
REQUESTED_AT_FIELD = "requested_at"  # when the webhook was received (the receiver's clock)
# From this receive on, a request still meeting a pass under the lease goes back to the queue as a
# new message instead of being deferred again: every deferral is a receive, and PollRequestQueue
# dead-letters at 8 (template.yaml); the margin is for real failures.
REQUEUE_AT_RECEIVE = 6
# A mark outlives every request it could cover: the queues keep a message 14 days.
MARK_RETENTION = timedelta(days=14)


class Stage(StrEnum):
    SOON = "soon"
    AFTER_REFRESH = "after_refresh"


class Step(StrEnum):
    WAIT = "wait"  # not due yet: deliver the request again at ``due``
    POLL = "poll"  # due: poll the Reference ID now
    DONE = "done"  # a poll late enough for both stages has completed: acknowledge the request


@dataclass(frozen=True, slots=True)
class Next:
    step: Step
    stage: Stage | None = None  # the poll the request waits for (None once done)
    due: datetime | None = None


class InvalidPollRequestMessage(ValueError):
    """A poll request message this code did not write (the text never quotes the Reference ID)."""


@dataclass(frozen=True, slots=True)
class PollRequestMessage:
    ref_id: str
    requested_at: datetime


def next_step(
    requested_at: datetime, polled_at: datetime | None, now: datetime, timing: TargetedPollSettings
) -> Next:
    """What a request of ``requested_at`` needs, given when the last targeted poll of its Reference
    ID started (None: never)."""
    refresh = timedelta(seconds=timing.refresh_seconds)
    refresh_due = requested_at + refresh
    if polled_at is not None and polled_at >= refresh_due:
        return Next(Step.DONE)
    if polled_at is not None and polled_at >= requested_at:  # the soon poll covered it
        if now >= refresh_due:
            return Next(Step.POLL, Stage.AFTER_REFRESH, refresh_due)
        # Back with every request that poll covered (``polled_at + refresh`` >= ``refresh_due``).
        return Next(Step.WAIT, Stage.AFTER_REFRESH, polled_at + refresh)
    soon_due = requested_at + timedelta(seconds=timing.delay_seconds)
    return Next(Step.POLL if now >= soon_due else Step.WAIT, Stage.SOON, soon_due)


def send_delay_seconds(requested_at: datetime, now: datetime, timing: TargetedPollSettings) -> int:
    """The SQS delay of a new request: until its soon poll is due (0 when a late sender is past it)."""
    wait = (requested_at + timedelta(seconds=timing.delay_seconds) - now).total_seconds()
    return max(0, min(MAX_SQS_DELAY_SECONDS, math.ceil(wait)))


def busy_retry_seconds(receive_count: int, timing: TargetedPollSettings) -> int:
    """How long a request that met the lease held waits: ``busy_retry_seconds``, doubling per receive."""
    doublings = min(max(0, receive_count - 1), 10)
    return min(MAX_SQS_DELAY_SECONDS, timing.busy_retry_seconds * 2**doublings)


def requeue_when_busy(receive_count: int) -> bool:
    return receive_count >= REQUEUE_AT_RECEIVE


def request_body(ref_id: str, requested_at: datetime) -> str:
    """The message of one request; refuses a Reference ID no poll could ask Leap for."""
    return json.dumps(
        {REF_ID_FIELD: polled_ref_id(ref_id), REQUESTED_AT_FIELD: instant_text(requested_at)},
        separators=(",", ":"),
    )


def parse_request_body(text: str) -> PollRequestMessage:
    try:
        body: Any = json.loads(text)
    except ValueError:
        raise InvalidPollRequestMessage("a poll request's body is not JSON") from None
    if not isinstance(body, dict) or set(body) != {REF_ID_FIELD, REQUESTED_AT_FIELD}:
        raise InvalidPollRequestMessage(
            f"a poll request is an object of {REF_ID_FIELD}, {REQUESTED_AT_FIELD}"
        )
    ref_id, requested = polled_ref_id(body[REF_ID_FIELD]), body[REQUESTED_AT_FIELD]
    try:
        requested_at = parse_instant(requested) if isinstance(requested, str) else None
    except ValueError:
        requested_at = None
    if requested_at is None:
        raise InvalidPollRequestMessage(f"a poll request's {REQUESTED_AT_FIELD} is not an instant")
    return PollRequestMessage(ref_id, requested_at)


def polled_ref_id(ref_id: Any) -> str:
    """The Reference ID as a ref_id poll reads it (the poller's own input rule: trimmed, non-empty,
    within the key limit, valid Unicode)."""
    try:
        request = parse_request({"mode": PollMode.REF_ID.value, "ref_id": ref_id})
    except InvalidPollRequest as refused:  # its text names the rule, never the value
        raise InvalidPollRequestMessage(f"a poll request's {refused}") from None
    return str(request.ref_id)


def instant_text(value: datetime) -> str:
    """RFC 3339 UTC to the microsecond, always the same width, so that text order is time order (the
    table compares ``polled_at`` as text)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware UTC instant")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
