"""What a soak run collected: plain data, so the invariants are pure functions over it (and a unit
test can craft a violation by hand)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from leap_tracker.privacy import Pseudonyms

SOAK_KEY = Pseudonyms(b"soak-pseudonyms-are-not-secret-but-keep-ids-out!")  # names entries in reports
WEBHOOK_QUEUE = "WebhookQueue"  # the receiver's queue (Invocation.sent, Parked.queue: logical ids)
WEBHOOK_DEAD_LETTERS = "WebhookDeadLetterQueue"


def entry_hash(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class HourView:
    """The table's snapshots and Leap's entries at the end of one hour, as hashes by entry id."""

    at: datetime
    clean: bool  # no fault was armed in this hour
    truth: dict[str, str]
    stored: dict[str, str]


@dataclass(frozen=True, slots=True)
class StoredChange:
    """One HISTORY# item: a change the poller stored."""

    entry_id: str
    sequence: int
    previous: dict[str, Any] | None
    new: dict[str, Any]
    written_at: datetime


@dataclass(frozen=True, slots=True)
class Arrival:
    """One message read from the partner's unfiltered queue."""

    at: datetime  # simulated time it was read
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """One request the partner's endpoint got."""

    webhook_id: str
    sent_at: datetime
    status: int
    verified: bool
    event: dict[str, Any]

    @property
    def accepted(self) -> bool:
        return self.verified and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Invocation:
    index: int
    function: str
    source: str  # stream, sqs, schedule, async-retry, direct, direct-async, function-url
    at: datetime
    error: str | None  # repr of the exception, None when it returned
    # What it was given (message ids, stream sequence numbers, a webhook's webhook_event_id, payload JSON)
    items: tuple[str, ...]
    failed_items: tuple[str, ...]  # what it reported failed (all of them when it raised)
    status: int | None = None  # a function URL call: the HTTP status its caller got (502: it failed)
    sent: tuple[str, ...] = ()  # the queues (logical ids) its accepted SendMessage calls went to
    ended: datetime | None = None  # simulated time when it returned or raised


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """One Connect list request of a poller run, as Leap received it."""

    selection: str  # the query it filters on: start_date, last_interaction_date or ref_id
    since: str | None  # that date (None for a ref_id)
    token: bool  # it carried a page token (a page after the first)


@dataclass(frozen=True, slots=True)
class PollerRun:
    """One poller invocation that ran a pass (scheduled, a continuation, a retry; not a targeted
    poll's batch): what it was asked, what it answered (its summary; None when it raised), what it
    asked Leap."""

    index: int  # position in Observations.invocations
    source: str  # schedule, async (a continuation the poller sent itself), async-retry
    at: datetime
    ended: datetime
    continuation: int  # the request's (0: not a continuation)
    status: str | None  # completed, interrupted, skipped; None when the invocation failed
    pages: int = 0
    pass_kind: str | None = None  # full, incremental
    resumed: bool = False  # it went on with an unfinished pass
    token_restarts: int = 0  # page tokens Leap refused it
    # Leap lists this pass's selection in order of the selection's own date (ground truth, not the
    # poller's reading of it): a full pass, by start date, when the simulator lists by start date.
    ordered: bool = False
    first_page: ConnectRequest | None = None  # the pass's page one: its original query, no token
    requests: tuple[ConnectRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class PushAttempt:
    """One call Leap made to the receiver for a webhook."""

    at: datetime
    status: int  # the receiver's answer (0: none)
    fault: str | None = None  # the simulator's fault this attempt plays (wrong_secret, duplicate, ...)

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class LeapWebhook:
    """One webhook the simulated Leap sent to the subscription, or meant to: its ground truth."""

    event_id: str  # webhook_event_id
    event_type: str
    ref_id: str  # partner_reference
    due_at: datetime
    faults: frozenset[str]  # missed, duplicate, out_of_order, wrong_secret
    attempts: tuple[PushAttempt, ...]
    outcome: str  # delivered (a real attempt answered 2xx), failed (Leap gave up), missed, ...

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"

    @property
    def accepted(self) -> bool:
        """Whether any call, a wrong-secret one included, was answered 2xx."""
        return any(attempt.accepted for attempt in self.attempts)


@dataclass(frozen=True, slots=True)
class Parked:
    """A message sitting in a dead-letter or failure queue at the end."""

    queue: str  # its logical id (WebhookDeadLetterQueue, ...)
    message_id: str
    body: Any


@dataclass(frozen=True, slots=True)
class AlarmView:
    at: datetime
    queue: str
    depth: int  # visible + in flight
    alarm_states: tuple[str, ...]  # of every alarm on that queue ("ALARM"/"OK"); empty: none


@dataclass(frozen=True, slots=True)
class Customer:
    """Leap's ground truth for one Reference ID."""

    ref_id: str
    entry_id: str
    completed_at: datetime | None
    meters_at: datetime | None


@dataclass(frozen=True, slots=True)
class Rules:
    actionable_delay: timedelta
    max_attempts: int
    cooldown: timedelta
    first_check: timedelta
    longest_meter_wait: timedelta
    give_up: timedelta
    holdout_percent: int = 0  # outreach's measurement holdout (decision.in_holdout)
    holdout: timedelta = timedelta(0)
    max_continuations: int = 4  # POLLER_MAX_CONTINUATIONS


@dataclass
class Observations:
    start: datetime
    end: datetime
    faults_stop: datetime  # the end of the last hour with a fault
    rules: Rules
    hours: list[HourView] = field(default_factory=list)
    history: list[StoredChange] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    webhook: list[WebhookCall] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    parked: list[Parked] = field(default_factory=list)
    alarms: list[AlarmView] = field(default_factory=list)
    customers: dict[str, Customer] = field(default_factory=dict)  # by ref id
    final_stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry id -> snapshot
    sweeps: list[datetime] = field(default_factory=list)  # meter sweeps that returned
    expected_events: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> event (from history)
    expected_at: dict[str, datetime] = field(default_factory=dict)  # id -> when its change was stored
    in_flight: set[str] = field(default_factory=set)  # message ids still in a source queue at the end
    leap_webhooks: list[LeapWebhook] = field(default_factory=list)  # what Leap pushed (ground truth)
    processed_webhooks: dict[str, str] = field(default_factory=dict)  # WEBHOOK# items: event id -> outcome
    queued_webhooks: set[str] = field(default_factory=set)  # event ids still in WebhookQueue at the end
    poller_runs: list[PollerRun] = field(default_factory=list)  # the poller's pass runs, in order
