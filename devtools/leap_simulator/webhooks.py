"""The simulated Leap's webhooks: the Webhook Subscription API's state, and the push engine.

Leap pushes an event to every subscription whose ``event_types`` include its type, with the headers
the subscription was registered with. What happens, and when, comes from the simulator's ground
truth, customer by customer:

- ``meter.created``, one per meter, at the moment the customer's meters appear in Meters v2;
- ``connect_session.updated`` at each change of the Connect entry: ``CREATED`` on the first click,
  ``COMPLETED`` when the connection becomes COMPLETED, ``UPDATED`` on any other change;
- ``connect_session.authorization_updated`` for each utility connection that changed: ``COMPLETED``
  (CONNECTED), ``FAILED`` (ERROR) or ``INITIATED`` (a login that left it NOT_CONNECTED).

A delivery is due ``delay`` after its event (default 5 s) and is sent through the transport, a
``Callable[[url, headers, body], int]``. What this simulator ASSUMES of Leap, which publishes no
delivery policy: an answer other than 2xx (or none) is retried after 1, 5 and 30 minutes, then given
up; an event goes only to subscriptions that existed before it happened; a retry is sent with the
subscription's settings at that moment (a PUT in between changes where it goes and with what headers),
and a subscription deleted or no longer subscribed to the type cancels what is left.

The clock is the caller's: ``next_due()`` says when the next attempt is due and ``push(now)`` makes
every attempt due at or before ``now``, in due order except where a fault reorders. Faults are seeded
per event (the same seed, the same faults on the same events, whatever the calls in between):
duplicate (the event is sent again ``duplicate_after`` after it was accepted), out of order (it is
held back until just after the next delivery to the same subscription, at most ``max_hold``), missed
(never sent) and wrong secret (an attempt with every registered header value wrong, then the real
one). Each delivery keeps its ground truth: when it was due, every attempt (time, status, fault),
and how it ended.

Events are worked out ahead of the simulator's clock when ``next_due`` has to look ahead; anything
that changes what will happen (a nudge, a touch, a replaced entry, a subscription or fault change)
rewinds the events not yet attempted and works them out again, so the answer is the same as if
nothing had been looked at early.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from leap_tracker.leap import wire

Transport = Callable[[str, Mapping[str, str], bytes], int]  # (url, headers, body) -> HTTP status

DEFAULT_DELAY = timedelta(seconds=5)
# ASSUMED: Leap publishes no retry policy. Three retries, spread over about half an hour.
DEFAULT_RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30))
TRANSPORT_TIMEOUT = (2.0, 5.0)  # connect, read: a receiver answers fast (it only enqueues)
USER_AGENT = "leap-simulator-webhooks"
NO_ANSWER = 0  # the status recorded when the transport got no HTTP answer at all
_HEADER_NAME = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_MAX_URL = 2048

SESSION_EVENT = wire.WEBHOOK_CONNECT_SESSION_UPDATED
AUTHORIZATION_EVENT = wire.WEBHOOK_AUTHORIZATION_UPDATED
METER_EVENT = wire.WEBHOOK_METER_CREATED
_AUTHORIZATION_STATUS = {
    wire.UTILITY_CONNECTED: wire.AUTHORIZATION_COMPLETED,
    wire.UTILITY_ERROR: wire.AUTHORIZATION_FAILED,
}


class WebhookFault(StrEnum):
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    MISSED = "missed"
    WRONG_SECRET = "wrong_secret"


@dataclass(frozen=True, slots=True)
class WebhookFaults:
    """How often each fault strikes (a share of deliveries, 0 to 1; all off by default)."""

    duplicate: float = 0.0
    out_of_order: float = 0.0
    missed: float = 0.0
    wrong_secret: float = 0.0
    seed: int | None = None  # None: the simulator's seed
    duplicate_after: timedelta = timedelta(minutes=1)
    max_hold: timedelta = timedelta(hours=1)  # an out-of-order delivery waits at most this long

    def __post_init__(self) -> None:
        for fault in WebhookFault:
            rate = getattr(self, fault.value)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"webhook fault {fault.value}: a share from 0 to 1, got {rate!r}")
        if self.duplicate_after < timedelta(0) or self.max_hold <= timedelta(0):
            raise ValueError("duplicate_after must not be negative and max_hold must be positive")

    def draw(self, seed: int, event_id: str) -> frozenset[WebhookFault]:
        """The faults that strike this event (the same for the same seed and event)."""
        rng = random.Random(f"webhook-faults/{seed if self.seed is None else self.seed}/{event_id}")
        drawn = {fault for fault in WebhookFault if rng.random() < getattr(self, fault.value)}
        return frozenset({WebhookFault.MISSED}) if WebhookFault.MISSED in drawn else frozenset(drawn)


NO_FAULTS = WebhookFaults()


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    at: datetime  # when the simulated Leap sent it
    status: int  # the receiver's answer; 0: no HTTP answer
    retry: int  # 0 for the first attempt, n for the n-th retry
    fault: WebhookFault | None = None  # the fault this attempt plays, if any

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class Outcome(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"  # a real attempt (not the wrong-secret one) was answered 2xx
    FAILED = "failed"  # every retry was refused
    MISSED = "missed"  # the missed fault: never sent
    CANCELLED = "cancelled"  # the subscription was deleted, or no longer takes the type


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """The ground truth of one event to one subscription."""

    webhook_event_id: str
    webhook_id: str
    event_type: str
    partner_reference: str  # the Reference ID
    payload: Mapping[str, Any]
    happened_at: datetime  # when the thing happened (the meter appeared, the entry changed)
    due_at: datetime  # when Leap sends it (happened_at + the delay)
    faults: frozenset[WebhookFault]
    attempts: tuple[WebhookAttempt, ...]
    outcome: Outcome

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.DELIVERED

    @property
    def body(self) -> bytes:
        """The request body every attempt carries."""
        return delivery_body(self.webhook_event_id, self.payload)

    def accepted_attempts(self) -> list[WebhookAttempt]:
        """The attempts the receiver accepted, duplicates included (the wrong-secret one left out)."""
        return [a for a in self.attempts if a.accepted and a.fault is not WebhookFault.WRONG_SECRET]


@dataclass(frozen=True, slots=True)
class WebhookTest:
    """A test the Subscription API was asked to send, and what the receiver answered."""

    webhook_id: str
    webhook_event_id: str
    payload: Mapping[str, Any]
    at: datetime
    status: int


@dataclass(frozen=True, slots=True)
class Subscription:
    webhook_id: str
    receiver_url: str
    event_types: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    since: int  # epoch seconds: events that happen after this go to it

    def wire(self) -> dict[str, Any]:
        return {
            wire.WEBHOOK_SUBSCRIPTION_ID: self.webhook_id,
            wire.WEBHOOK_SUBSCRIPTION_RECEIVER_URL: self.receiver_url,
            wire.WEBHOOK_SUBSCRIPTION_EVENT_TYPES: list(self.event_types),
            wire.WEBHOOK_SUBSCRIPTION_HEADERS: [
                {wire.WEBHOOK_HEADER_NAME: name, wire.WEBHOOK_HEADER_VALUE: value}
                for name, value in self.headers
            ],
        }


class WebhookBodyError(ValueError):
    """A Subscription API request body Leap would refuse (400)."""


class UnknownWebhook(KeyError):
    """No subscription with that id (404)."""


class WebhookSource(Protocol):
    """What the engine reads of the simulated Leap (the simulator implements it)."""

    @property
    def size(self) -> int: ...

    def ref_id(self, index: int) -> str: ...

    def moments(self, index: int) -> Sequence[int]:
        """Every instant something happens to the customer (changes, touches, meters), sorted."""
        ...

    def entry(self, index: int, t: int) -> dict[str, Any] | None: ...

    def meters(self, index: int, t: int) -> list[dict[str, Any]]: ...

    def meters_at(self, index: int) -> int | None: ...

    def utility_code(self, connect_name: str) -> str: ...


# --- events from the ground truth (pure) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    event_type: str
    partner_reference: str
    payload: dict[str, Any]
    discriminator: str  # what tells two events of one type at one moment apart (a meter, a utility)


def entry_events(
    ref_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    utility_code: Callable[[str], str],
) -> list[Event]:
    """The Connect webhooks of one change of an entry (``before`` is None before the first click)."""
    if after is None or before == after:
        return []
    status = _session_status(before, after)
    events = [Event(SESSION_EVENT, ref_id, _session_payload(ref_id, status), "")]
    if before is None:
        return events  # the click: the utilities are listed, none is being logged into yet
    earlier = {
        u.get(wire.UTILITY_AUTHORIZATION_UUID): u for u in before.get(wire.ENTRY_UTILITY_CONNECTIONS) or []
    }
    for utility in after.get(wire.ENTRY_UTILITY_CONNECTIONS) or []:
        key = utility.get(wire.UTILITY_AUTHORIZATION_UUID)
        if _utility_state(earlier.get(key)) == _utility_state(utility):
            continue
        payload = {
            wire.WEBHOOK_EVENT_TYPE: AUTHORIZATION_EVENT,
            wire.WEBHOOK_PARTNER_REFERENCE: ref_id,
            wire.WEBHOOK_UTILITY_NAME: utility_code(str(utility.get(wire.UTILITY_NAME))),
            wire.WEBHOOK_STATUS: _AUTHORIZATION_STATUS.get(
                utility.get(wire.UTILITY_STATUS), wire.AUTHORIZATION_INITIATED
            ),
        }
        events.append(Event(AUTHORIZATION_EVENT, ref_id, payload, str(key)))
    return events


def meter_events(ref_id: str, meters: Sequence[Mapping[str, Any]]) -> list[Event]:
    """``meter.created`` for each meter (Meters v2 dicts)."""
    return [
        Event(
            METER_EVENT,
            ref_id,
            {
                wire.WEBHOOK_EVENT_TYPE: METER_EVENT,
                wire.WEBHOOK_METER_ID: meter[wire.METER_ID],
                wire.WEBHOOK_PARTNER_REFERENCE: ref_id,
                wire.WEBHOOK_TRANSMISSION_REGION: meter.get(wire.WEBHOOK_TRANSMISSION_REGION),
                wire.WEBHOOK_METER_TYPE: meter.get(wire.WEBHOOK_METER_TYPE),
            },
            str(meter[wire.METER_ID]),
        )
        for meter in meters
    ]


def _session_status(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    if before is None:
        return wire.SESSION_CREATED
    completed = wire.CONNECTION_COMPLETED
    if after.get(wire.ENTRY_CONNECTION_STATUS) == completed != before.get(wire.ENTRY_CONNECTION_STATUS):
        return wire.SESSION_COMPLETED
    return wire.SESSION_UPDATED


def _session_payload(ref_id: str, status: str) -> dict[str, Any]:
    return {
        wire.WEBHOOK_EVENT_TYPE: SESSION_EVENT,
        wire.WEBHOOK_PARTNER_REFERENCE: ref_id,
        wire.WEBHOOK_STATUS: status,
    }


def _utility_state(utility: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    if utility is None:
        return None
    return tuple(
        utility.get(name)
        for name in (wire.UTILITY_STATUS, wire.UTILITY_ERROR_CODE, wire.UTILITY_LAST_INTERACTION)
    )


def delivery_body(event_id: str, payload: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {wire.WEBHOOK_EVENT_ID: event_id, wire.WEBHOOK_PAYLOAD: payload}, separators=(",", ":")
    ).encode()


def post_with_requests(url: str, headers: Mapping[str, str], body: bytes) -> int:
    """The default transport: an HTTP POST; no answer (refused, timed out) is status 0."""
    try:
        return requests.post(url, data=body, headers=dict(headers), timeout=TRANSPORT_TIMEOUT).status_code
    except requests.RequestException:
        return NO_ANSWER


# --- Subscription API bodies ------------------------------------------------------------------------

_SETTINGS_FIELDS = frozenset(
    {
        wire.WEBHOOK_SUBSCRIPTION_RECEIVER_URL,
        wire.WEBHOOK_SUBSCRIPTION_EVENT_TYPES,
        wire.WEBHOOK_SUBSCRIPTION_HEADERS,
    }
)


def subscription_settings(body: Any) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(receiver_url, event_types, headers) of a create or update body; WebhookBodyError if invalid."""
    if not isinstance(body, dict):
        raise WebhookBodyError("the request body must be a JSON object")
    unknown = sorted(set(body) - _SETTINGS_FIELDS)
    if unknown:
        raise WebhookBodyError(f"unknown field(s) {unknown}")
    return (
        _receiver_url(body.get(wire.WEBHOOK_SUBSCRIPTION_RECEIVER_URL)),
        _event_types(body.get(wire.WEBHOOK_SUBSCRIPTION_EVENT_TYPES)),
        _headers(body.get(wire.WEBHOOK_SUBSCRIPTION_HEADERS, [])),
    )


def _receiver_url(value: Any) -> str:
    name = wire.WEBHOOK_SUBSCRIPTION_RECEIVER_URL
    if not isinstance(value, str) or not value or len(value) > _MAX_URL:
        raise WebhookBodyError(f"{name} is required: a URL of at most {_MAX_URL} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WebhookBodyError(f"{name} must be an absolute http(s) URL, got {value!r}")
    return value


def _event_types(value: Any) -> tuple[str, ...]:
    name = wire.WEBHOOK_SUBSCRIPTION_EVENT_TYPES
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise WebhookBodyError(f"{name} is required: a non-empty list of event types")
    unknown = sorted(set(value) - set(wire.WEBHOOK_EVENT_TYPES))
    if unknown:
        raise WebhookBodyError(f"{name}: unknown event type(s) {unknown}")
    if len(set(value)) != len(value):
        raise WebhookBodyError(f"{name}: each event type once")
    return tuple(value)


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    name = wire.WEBHOOK_SUBSCRIPTION_HEADERS
    if not isinstance(value, list):
        raise WebhookBodyError(f"{name} must be a list of {{name, value}} objects")
    headers: list[tuple[str, str]] = []
    for position, item in enumerate(value):
        header_name = item.get(wire.WEBHOOK_HEADER_NAME) if isinstance(item, dict) else None
        header_value = item.get(wire.WEBHOOK_HEADER_VALUE) if isinstance(item, dict) else None
        if (
            not isinstance(item, dict)
            or set(item) != {wire.WEBHOOK_HEADER_NAME, wire.WEBHOOK_HEADER_VALUE}
            or not isinstance(header_name, str)
            or not header_name
            or not set(header_name) <= _HEADER_NAME
            or not isinstance(header_value, str)
            or any(ch in header_value for ch in "\r\n")
        ):
            raise WebhookBodyError(f"{name}[{position}] must be {{name: a header name, value: a string}}")
        headers.append((header_name, header_value))
    if len({n.lower() for n, _ in headers}) != len(headers):
        raise WebhookBodyError(f"{name}: each header name once")
    return tuple(headers)


def requested_test_payload(body: Any) -> dict[str, Any]:
    """The payload a test call asks to send; WebhookBodyError if it is not one."""
    if not isinstance(body, dict) or body.get(wire.WEBHOOK_EVENT_TYPE) not in wire.WEBHOOK_EVENT_TYPES:
        raise WebhookBodyError(f"the body must be an event payload with a known {wire.WEBHOOK_EVENT_TYPE}")
    return body


# --- the engine -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Record:
    """One event to one subscription, as it goes (WebhookDelivery is its frozen view)."""

    event_id: str
    webhook_id: str
    event: Event
    index: int
    happened: int
    due: int
    origin: tuple[int, ...]  # (moment, customer, event position, subscription position): the tie-break
    faults: frozenset[WebhookFault]
    attempts: list[WebhookAttempt] = field(default_factory=list)
    outcome: Outcome = Outcome.PENDING
    duplicated: bool = False

    def view(self) -> WebhookDelivery:
        return WebhookDelivery(
            webhook_event_id=self.event_id,
            webhook_id=self.webhook_id,
            event_type=self.event.event_type,
            partner_reference=self.event.partner_reference,
            payload=self.event.payload,
            happened_at=_datetime(self.happened),
            due_at=_datetime(self.due),
            faults=self.faults,
            attempts=tuple(self.attempts),
            outcome=self.outcome,
        )


class _Kind(StrEnum):
    FIRST = "first"
    RETRY = "retry"
    DUPLICATE = "duplicate"
    WRONG_SECRET = "wrong_secret"
    MISSED = "missed"  # not sent: marks the delivery missed when it falls due


@dataclass(slots=True)
class _Planned:
    at: int
    key: tuple[int, ...]  # (at, *origin, rank): the order among attempts
    record: _Record
    kind: _Kind
    retry: int = 0
    released: bool = False  # an out-of-order first attempt whose turn came

    @property
    def held(self) -> bool:
        return (
            self.kind is _Kind.FIRST and WebhookFault.OUT_OF_ORDER in self.record.faults and not self.released
        )


class WebhookEngine:
    """Subscriptions and their deliveries for one simulator (thread-safe with the simulator's lock)."""

    def __init__(
        self,
        source: WebhookSource,
        seed: int,
        lock: threading.RLock,
        *,
        transport: Transport | None = None,
        delay: timedelta = DEFAULT_DELAY,
        retry_delays: Sequence[timedelta] = DEFAULT_RETRY_DELAYS,
        faults: WebhookFaults = NO_FAULTS,
    ) -> None:
        if delay < timedelta(0) or any(step <= timedelta(0) for step in retry_delays):
            raise ValueError("the delay must not be negative and every retry delay must be positive")
        self._source = source
        self._seed = seed
        self._lock = lock
        self.transport: Transport = transport or post_with_requests
        self._delay = int(delay.total_seconds())
        self._retry_delays = tuple(int(step.total_seconds()) for step in retry_delays)
        self._faults = faults
        self._ids = random.Random(f"leap-webhooks/{seed}")
        self._test_ids = random.Random(f"leap-webhook-tests/{seed}")
        self._subscriptions: dict[str, Subscription] = {}
        self._records: dict[str, _Record] = {}
        self._pending: list[_Planned] = []
        self._tests: list[WebhookTest] = []
        self._frontier = 0  # every moment up to here is worked out into deliveries
        self._moments: list[tuple[int, int, int]] = []  # heap of (next moment, customer, version)
        self._versions: dict[int, int] = {}

    # --- the Subscription API ----------------------------------------------------------------

    def list_wire(self) -> list[dict[str, Any]]:
        with self._lock:
            return [subscription.wire() for subscription in self._subscriptions.values()]

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._subscriptions.values())

    def create(self, body: Any, now: int) -> str:
        url, types, headers = subscription_settings(body)
        with self._lock:
            webhook_id = _uuid(self._ids)
            first = not self._subscriptions
            self._subscriptions[webhook_id] = Subscription(webhook_id, url, types, headers, now)
            self._rewind_all(now, restart=first)
            return webhook_id

    def update(self, webhook_id: str, body: Any, now: int) -> str:
        url, types, headers = subscription_settings(body)
        with self._lock:
            known = self._subscription(webhook_id)
            self._subscriptions[webhook_id] = replace(
                known, receiver_url=url, event_types=types, headers=headers
            )
            self._rewind_all(now)
            return webhook_id

    def delete(self, webhook_id: str, now: int) -> None:
        with self._lock:
            self._subscription(webhook_id)
            del self._subscriptions[webhook_id]
            self._rewind_all(now)

    def send_test(self, webhook_id: str, body: Any, now: int) -> dict[str, Any]:
        """Send ``body`` (an event payload) to the subscription's receiver now, as Leap's test does."""
        payload = requested_test_payload(body)
        with self._lock:
            subscription = self._subscription(webhook_id)
            event_id = _uuid(self._test_ids)
        started = time.monotonic()
        status = self.transport(
            subscription.receiver_url, _headers_of(subscription), delivery_body(event_id, payload)
        )
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        with self._lock:
            self._tests.append(WebhookTest(webhook_id, event_id, payload, _datetime(now), status))
        accepted = 200 <= status < 300
        return {
            wire.WEBHOOK_TEST_IS_SUCCESSFUL: accepted,
            wire.WEBHOOK_TEST_STATUS_CODE: status or None,
            wire.WEBHOOK_TEST_ERROR: None if accepted else _test_error(status),
            wire.WEBHOOK_TEST_RESPONSE_TIME_MS: elapsed_ms,
        }

    @property
    def tests(self) -> list[WebhookTest]:
        with self._lock:
            return list(self._tests)

    # --- faults and ground truth -----------------------------------------------------------------

    def set_faults(self, faults: WebhookFaults, now: int) -> None:
        """From ``now`` on: the events after it are drawn again with these faults."""
        with self._lock:
            self._faults = faults
            self._rewind_all(now)

    def deliveries(self) -> list[WebhookDelivery]:
        """Every delivery worked out so far, in due order (those ahead of the clock may still change)."""
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: (r.due, r.origin))
            return [record.view() for record in records]

    # --- the push --------------------------------------------------------------------------------

    def next_due(self) -> int | None:
        with self._lock:
            planned = self._peek()
            return None if planned is None else planned[0][0]

    def push(self, now: int) -> list[WebhookDelivery]:
        """Make every attempt due at or before ``now``; the deliveries it touched, in order."""
        touched: dict[str, _Record] = {}
        while True:
            with self._lock:
                found = self._peek()
                if found is None or found[0][0] > now:
                    break
                (at, _), planned = found
                self._pending.remove(planned)
                self._release_held(planned, at)
                sending = self._begin(planned, at)
            touched.setdefault(planned.record.event_id, planned.record)
            if sending is None:
                continue
            url, headers = sending
            status = self.transport(
                url, headers, delivery_body(planned.record.event_id, planned.record.event.payload)
            )
            with self._lock:
                self._finish(planned, at, status)
        with self._lock:
            return [record.view() for record in touched.values()]

    # --- rewinds: what changes the future ------------------------------------------------------

    def rewind(self, index: int, since: int) -> None:
        """Customer ``index``'s story changed from ``since`` on: work its events out again from there."""
        with self._lock:
            if not self._subscriptions:
                return
            self._drop(lambda record: record.index == index and record.happened >= since)
            version = self._versions.get(index, 0) + 1
            self._versions[index] = version
            moments = self._source.moments(index)
            for moment in moments[bisect_left(moments, since) : bisect_right(moments, self._frontier)]:
                self._work_out(index, moment)
            self._push_next(index, self._frontier, version)

    def _rewind_all(self, now: int, restart: bool = False) -> None:
        self._drop(lambda record: record.happened > now)
        self._frontier = now if restart else min(self._frontier, now)
        self._versions.clear()
        self._moments = []
        if not self._subscriptions:
            return
        for index in range(self._source.size):
            self._push_next(index, self._frontier, 0)
        heapq.heapify(self._moments)

    def _drop(self, stale: Callable[[_Record], bool]) -> None:
        """Forget the deliveries not attempted yet that ``stale`` names (the story no longer has them)."""
        dropped = {
            event_id for event_id, record in self._records.items() if not record.attempts and stale(record)
        }
        if dropped:
            self._pending = [p for p in self._pending if p.record.event_id not in dropped]
            for event_id in dropped:
                del self._records[event_id]

    # --- working events out -----------------------------------------------------------------------

    def _push_next(self, index: int, after: int, version: int) -> None:
        moments = self._source.moments(index)
        position = bisect_right(moments, after)
        if position < len(moments):
            heapq.heappush(self._moments, (moments[position], index, version))

    def _next_moment(self) -> int | None:
        while self._moments:
            moment, index, version = self._moments[0]
            if self._versions.get(index, 0) == version:
                return moment
            heapq.heappop(self._moments)  # superseded by a rewind
        return None

    def _advance_frontier(self) -> None:
        """Work out every customer's events at the next moment anything happens."""
        moment = self._next_moment()
        assert moment is not None
        while self._moments and self._moments[0][0] == moment:
            _, index, version = heapq.heappop(self._moments)
            if self._versions.get(index, 0) != version:
                continue
            self._work_out(index, moment)
            self._push_next(index, moment, version)
        self._frontier = moment

    def _work_out(self, index: int, moment: int) -> None:
        source = self._source
        ref_id = source.ref_id(index)
        events = entry_events(
            ref_id, source.entry(index, moment - 1), source.entry(index, moment), source.utility_code
        )
        if source.meters_at(index) == moment:
            events += meter_events(ref_id, source.meters(index, moment))
        for position, event in enumerate(events):
            for rank, subscription in enumerate(self._subscriptions.values()):
                if moment > subscription.since and event.event_type in subscription.event_types:
                    self._plan(index, moment, (moment, index, position, rank), event, subscription)

    def _plan(
        self, index: int, moment: int, origin: tuple[int, ...], event: Event, subscription: Subscription
    ) -> None:
        event_id = _event_uuid(self._seed, subscription.webhook_id, moment, event)
        if event_id in self._records:
            return  # already attempted before a rewind: it stays as it went
        faults = self._faults.draw(self._seed, event_id)
        due = moment + self._delay
        record = _Record(event_id, subscription.webhook_id, event, index, moment, due, origin, faults)
        self._records[event_id] = record
        if WebhookFault.MISSED in faults:
            self._pending.append(_Planned(due, (due, *origin, 1), record, _Kind.MISSED))
            return
        if WebhookFault.WRONG_SECRET in faults:
            self._pending.append(_Planned(due, (due, *origin, 0), record, _Kind.WRONG_SECRET))
        self._pending.append(_Planned(due, (due, *origin, 1), record, _Kind.FIRST))

    # --- choosing and making attempts -------------------------------------------------------------

    def _peek(self) -> tuple[tuple[int, tuple[int, ...]], _Planned] | None:
        """The next attempt and its effective (time, order), once nothing still to work out can precede it."""
        while True:
            best = self._earliest()
            moment = self._next_moment()
            if moment is None or (best is not None and moment + self._delay > best[0][0]):
                return best
            self._advance_frontier()

    def _earliest(self) -> tuple[tuple[int, tuple[int, ...]], _Planned] | None:
        found: tuple[tuple[int, tuple[int, ...]], _Planned] | None = None
        for planned in self._pending:
            effective = self._effective(planned)
            if found is None or effective < found[0]:
                found = (effective, planned)
        return found

    def _effective(self, planned: _Planned) -> tuple[int, tuple[int, ...]]:
        """An out-of-order first attempt goes just after the next one to its subscription (or at max_hold)."""
        if not planned.held:
            return planned.at, planned.key
        hold = int(self._faults.max_hold.total_seconds())
        latest = (planned.at + hold, planned.key)
        following = [
            other
            for other in self._pending
            if other.kind is _Kind.FIRST
            and not other.held
            and other.record.webhook_id == planned.record.webhook_id
            and other.key > planned.key
        ]
        if not following:
            return latest
        after = min(following, key=lambda other: other.key)
        return min(latest, (after.at, (*after.key, 1, *planned.key)))

    def _release_held(self, sent: _Planned, at: int) -> None:
        """The held attempts that were waiting for ``sent`` go right after it."""
        if sent.kind is not _Kind.FIRST or sent.held:
            return
        for other in self._pending:
            if other.held and other.record.webhook_id == sent.record.webhook_id and other.key < sent.key:
                other.at, other.key, other.released = at, (*sent.key, 1, *other.key), True

    def _begin(self, planned: _Planned, at: int) -> tuple[str, dict[str, str]] | None:
        """Where and with what headers the attempt goes; None when it is not sent (missed, cancelled)."""
        record = planned.record
        if planned.kind is _Kind.MISSED:
            record.outcome = Outcome.MISSED
            return None
        subscription = self._subscriptions.get(record.webhook_id)
        if subscription is None or record.event.event_type not in subscription.event_types:
            if record.outcome is Outcome.PENDING:
                record.outcome = Outcome.CANCELLED
            return None
        headers = _headers_of(subscription)
        if planned.kind is _Kind.WRONG_SECRET:
            headers = _wrong_secret(headers, subscription, record.event_id)
        return subscription.receiver_url, headers

    def _finish(self, planned: _Planned, at: int, status: int) -> None:
        record = planned.record
        fault = {
            _Kind.WRONG_SECRET: WebhookFault.WRONG_SECRET,
            _Kind.DUPLICATE: WebhookFault.DUPLICATE,
        }.get(planned.kind)
        if planned.kind is _Kind.FIRST and WebhookFault.OUT_OF_ORDER in record.faults:
            fault = WebhookFault.OUT_OF_ORDER
        record.attempts.append(WebhookAttempt(_datetime(at), status, planned.retry, fault))
        if planned.kind in (_Kind.WRONG_SECRET, _Kind.DUPLICATE):
            return  # extra attempts: never retried, and they decide nothing
        if 200 <= status < 300:
            record.outcome = Outcome.DELIVERED
            if WebhookFault.DUPLICATE in record.faults and not record.duplicated:
                record.duplicated = True
                again = at + int(self._faults.duplicate_after.total_seconds())
                self._pending.append(_Planned(again, (again, *record.origin, 2), record, _Kind.DUPLICATE))
            return
        if planned.retry < len(self._retry_delays):
            retry_at = at + self._retry_delays[planned.retry]
            retry = planned.retry + 1
            self._pending.append(
                _Planned(retry_at, (retry_at, *record.origin, 1), record, _Kind.RETRY, retry)
            )
            return
        record.outcome = Outcome.FAILED

    def _subscription(self, webhook_id: str) -> Subscription:
        found = self._subscriptions.get(webhook_id)
        if found is None:
            raise UnknownWebhook(webhook_id)
        return found


def _headers_of(subscription: Subscription) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, **dict(subscription.headers)}


def _wrong_secret(headers: dict[str, str], subscription: Subscription, event_id: str) -> dict[str, str]:
    """Every registered header with a wrong value (or the default secret header, if none is registered)."""
    wrong = "wrong-" + hashlib.sha256(f"wrong-secret/{event_id}".encode()).hexdigest()[:24]
    names = [name for name, _ in subscription.headers] or [wire.DEFAULT_WEBHOOK_SECRET_HEADER]
    return {**headers, **dict.fromkeys(names, wrong)}


def _test_error(status: int) -> str:
    return "the receiver did not answer" if status == NO_ANSWER else f"the receiver answered {status}"


def _event_uuid(seed: int, webhook_id: str, moment: int, event: Event) -> str:
    """The event's id: a function of what happened, so a rewind gives the same event the same id."""
    text = f"leap-webhook-event/{seed}/{webhook_id}/{event.partner_reference}/{moment}/{event.event_type}"
    digest = hashlib.sha256(f"{text}/{event.discriminator}".encode()).digest()
    return _format_uuid(int.from_bytes(digest[:16]))


def _uuid(rng: random.Random) -> str:
    return _format_uuid(rng.getrandbits(128))


def _format_uuid(value: int) -> str:
    """A version 4 UUID's text from 128 bits."""
    value = value & ~(0xF000 << 64) & ~(0xC000 << 48) | (0x4000 << 64) | (0x8000 << 48)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _datetime(epoch_seconds: int) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
