"""The fault kinds and the seeded plan: which faults are armed in which simulated hour.

A plan is a pure function of (seed, hours): the same seed arms the same faults at the same hours, so
a failing seed replays. Faults stop ``QUIET_HOURS`` before the end, so the run ends with clean hours
in which everything that was retried must have caught up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from devtools.leap_simulator import ListingOrder
from devtools.leap_simulator.webhooks import WebhookFaults

POLLER = "PollerFunction"
EMITTER = "EmitterFunction"
OUTREACH = "OutreachFunction"
METER_WATCH = "MeterWatchFunction"
METER_SWEEP = "MeterSweepFunction"
RECEIVER = "WebhookReceiverFunction"  # Leap's webhooks, behind the function URL
PROCESSOR = "WebhookProcessorFunction"  # WebhookQueue's consumer
FUNCTIONS = (POLLER, EMITTER, OUTREACH, METER_WATCH, METER_SWEEP)
# The poller's targeted polls only (its PollRequestQueue batches), not its hourly passes.
TARGETED_POLL = "PollerFunction:targeted"
CONNECT, METERS = "connect", "meters"  # the two Leap APIs, whoever calls them
# A Leap API as one caller meets it: the processor's confirmation of a meter.created (one Meters
# search), a targeted poll's Connect request (one Reference ID).
METERS_CONFIRMATION, CONNECT_TARGETED = "meters:confirmation", "connect:targeted"
# A poller continuation's Connect requests (the first carries the token the cut run stored).
CONNECT_CONTINUATION = "connect:continuation"
WEBHOOK = "webhook"

QUIET_HOURS = 6  # the last hours carry no fault
FAULTY_HOUR_CHANCE = 0.7
MOST_FAULTS_AN_HOUR = 3
# How often a cut pass's continuation also finds its stored page token expired.
RESUMED_TOKEN_EXPIRES = 0.5


class FaultKind(StrEnum):
    # Leap, on Connect or Meters
    LEAP_RATE_LIMITED = "leap_rate_limited"  # 429 with Retry-After
    LEAP_SERVER_ERROR = "leap_server_error"  # 500
    LEAP_UNAVAILABLE = "leap_unavailable"  # 503
    LEAP_SLOW = "leap_slow"  # the answer takes simulated seconds
    LEAP_TRUNCATED_BODY = "leap_truncated_body"
    LEAP_CONNECTION_RESET = "leap_connection_reset"
    LEAP_EXPIRED_PAGE_TOKEN = "leap_expired_page_token"
    LEAP_OUTAGE = "leap_outage"  # every request of the hour fails, both APIs
    # AWS calls of one function
    DYNAMO_THROTTLED = "dynamo_throttled"
    DYNAMO_ERROR = "dynamo_error"
    BATCH_WRITE_UNPROCESSED = "batch_write_unprocessed"
    BATCH_GET_UNPROCESSED = "batch_get_unprocessed"
    SNS_BATCH_PARTLY_FAILED = "sns_batch_partly_failed"
    SNS_ERROR = "sns_error"
    SQS_ERROR = "sqs_error"
    WRITE_AFTER_SIDE_EFFECT_FAILS = "write_after_side_effect_fails"  # the k-th call after a publish
    # Lambda
    CRASH_AFTER_SIDE_EFFECT = "crash_after_side_effect"
    FUNCTION_TIMEOUT = "function_timeout"
    DUPLICATE_DELIVERY = "duplicate_delivery"
    STREAM_REPLAY = "stream_replay"
    VISIBILITY_EXPIRED = "visibility_expired"
    # A pass run sees its time limit after a few page checks (and goes on in a continuation).
    POLLER_TIME_LIMIT = "poller_time_limit"
    # the partner's webhook endpoint
    WEBHOOK_ERROR = "webhook_error"
    WEBHOOK_TIMEOUT = "webhook_timeout"
    WEBHOOK_SLOW = "webhook_slow"


LEAP_KINDS = frozenset(k for k in FaultKind if k.value.startswith("leap_"))
WEBHOOK_KINDS = frozenset(k for k in FaultKind if k.value.startswith("webhook_"))

# The functions each AWS or Lambda fault may aim at (the ones whose code makes such calls).
# The receiver's calls are Secrets Manager's and one SendMessage (failing: the function URL answers 502
# and Leap sends the delivery again); the processor reads and writes the table, searches Meters,
# publishes meter.appeared and sends poll requests.
_TABLE_USERS = (*FUNCTIONS, PROCESSOR, TARGETED_POLL)
_EVERY_FUNCTION = (*FUNCTIONS, RECEIVER, PROCESSOR, TARGETED_POLL)
TARGETS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.DYNAMO_THROTTLED: _TABLE_USERS,
    FaultKind.DYNAMO_ERROR: _TABLE_USERS,
    FaultKind.BATCH_WRITE_UNPROCESSED: (POLLER, METER_SWEEP, PROCESSOR, TARGETED_POLL),
    FaultKind.BATCH_GET_UNPROCESSED: (POLLER, OUTREACH, METER_SWEEP, TARGETED_POLL),
    FaultKind.SNS_BATCH_PARTLY_FAILED: (EMITTER, METER_SWEEP, PROCESSOR),
    FaultKind.SNS_ERROR: (EMITTER, OUTREACH, METER_SWEEP, PROCESSOR),
    FaultKind.SQS_ERROR: (OUTREACH, RECEIVER, PROCESSOR),
    FaultKind.WRITE_AFTER_SIDE_EFFECT_FAILS: (EMITTER, OUTREACH, METER_SWEEP, PROCESSOR),
    FaultKind.CRASH_AFTER_SIDE_EFFECT: _EVERY_FUNCTION,
    FaultKind.FUNCTION_TIMEOUT: _EVERY_FUNCTION,
    FaultKind.DUPLICATE_DELIVERY: (EMITTER, OUTREACH, METER_WATCH, PROCESSOR, TARGETED_POLL),
    FaultKind.STREAM_REPLAY: (EMITTER,),
    FaultKind.VISIBILITY_EXPIRED: (OUTREACH, METER_WATCH, PROCESSOR, TARGETED_POLL),
}
# Where a Leap fault may strike: any caller of Connect (twice as likely) or Meters, or one caller's.
LEAP_TARGETS = (CONNECT, CONNECT, METERS, METERS_CONFIRMATION, CONNECT_TARGETED)
# Targets called a few times an hour (a webhook, a confirmation, a targeted poll): a fault on one hits
# one of its first calls of the hour, or it would rarely take effect at all.
FEW_CALLS = frozenset({RECEIVER, PROCESSOR, TARGETED_POLL, METERS_CONFIRMATION, CONNECT_TARGETED})


@dataclass(frozen=True, slots=True)
class Fault:
    hour: int  # armed at the start of this simulated hour (1-based), disarmed at its end
    kind: FaultKind
    target: str  # a function logical id (or TARGETED_POLL), a Leap API (or one caller's), or WEBHOOK
    nth: int = 1  # the call (or request) it hits, counted within the hour
    times: int = 1  # how many calls/requests it hits
    amount: float = 0.0  # seconds (Retry-After, slowness); pages (the poller's time limit)

    def describe(self) -> str:
        extra = f" amount={self.amount:g}" if self.amount else ""
        return f"h{self.hour} {self.kind} -> {self.target} nth={self.nth} times={self.times}{extra}"


def make_plan(seed: int, hours: int, kinds: frozenset[FaultKind] | None = None) -> list[Fault]:
    """The faults of a run: each hour before the quiet tail is faulty by chance, with 1-3 faults.

    The first poll reads a day's backlog, the pass a time limit cuts at scale: in every run its
    scheduled run is cut, and its continuation finds the stored page token expired (in order of the
    start date on an even seed, so the pass goes on from the newest date it read; not on an odd one,
    so it starts again from page one)."""
    rng = random.Random(f"soak:{seed}")
    allowed = sorted(kinds if kinds is not None else frozenset(FaultKind))
    plan: list[Fault] = []
    if FaultKind.POLLER_TIME_LIMIT in allowed and hours > QUIET_HOURS:
        backlog_cut = _fault(rng, 1, FaultKind.POLLER_TIME_LIMIT)
        plan += [backlog_cut, Fault(1, FaultKind.LEAP_EXPIRED_PAGE_TOKEN, CONNECT_CONTINUATION)]
    for hour in range(1, max(0, hours - QUIET_HOURS) + 1):
        if rng.random() >= FAULTY_HOUR_CHANCE:
            continue
        for _ in range(rng.randint(1, MOST_FAULTS_AN_HOUR)):
            fault = _fault(rng, hour, rng.choice(allowed))
            plan.append(fault)
            if fault.kind is FaultKind.POLLER_TIME_LIMIT and rng.random() < RESUMED_TOKEN_EXPIRES:
                plan.append(Fault(hour, FaultKind.LEAP_EXPIRED_PAGE_TOKEN, CONNECT_CONTINUATION))
    return plan


def listing_order(seed: int) -> ListingOrder:
    """How the run's Leap lists its Connect entries: by start date for even seeds (a full pass then
    reads in order of its selection's date, and a refused token resumes from the newest date read),
    by population index for odd ones (no selection is listed in order of its date: a refused token
    restarts from page one, unless the pages read so far happened to come in order)."""
    return "start_date" if seed % 2 == 0 else "index"


def webhook_faults(seed: int) -> WebhookFaults:
    """Leap's own webhook faults in a run (the simulator's, seeded per event by the run's seed, on for
    the whole run: they are how Leap behaves, not something to recover from): a quarter of the
    deliveries lost (the sweep and the poll must reconcile them), a fifth duplicated, a fifth held back
    behind a later one, a tenth first sent with a wrong secret."""
    return WebhookFaults(missed=0.25, duplicate=0.2, out_of_order=0.2, wrong_secret=0.1, seed=seed)


def last_fault_hour(plan: list[Fault]) -> int:
    return max((fault.hour for fault in plan), default=0)


def _fault(rng: random.Random, hour: int, kind: FaultKind) -> Fault:
    if kind is FaultKind.POLLER_TIME_LIMIT:
        # From the hour's first pass run (the scheduled one), that many runs in a row: a chain of
        # continuations (5: past POLLER_MAX_CONTINUATIONS' 4); amount: the pages each reads.
        times = rng.choice((1, 1, 2, 3, 5))
        return Fault(hour, kind, POLLER, times=times, amount=float(rng.randint(1, 2)))
    if kind in LEAP_KINDS:
        if kind is FaultKind.LEAP_OUTAGE:
            target = CONNECT
        elif kind is FaultKind.LEAP_EXPIRED_PAGE_TOKEN:  # a confirmation or a targeted poll is one page
            target = rng.choice((CONNECT, CONNECT, METERS))
        else:
            target = rng.choice(LEAP_TARGETS)
        amount = {
            FaultKind.LEAP_RATE_LIMITED: float(rng.choice((0, 1, 5, 30))),
            FaultKind.LEAP_SLOW: float(rng.choice((5, 60, 300))),
        }.get(kind, 0.0)
        nth = rng.randint(1, 1 if target in FEW_CALLS else 3)
        return Fault(hour, kind, target, nth=nth, times=rng.randint(1, 3), amount=amount)
    if kind in WEBHOOK_KINDS:
        amount = 0.2 if kind is FaultKind.WEBHOOK_SLOW else 0.0
        return Fault(hour, kind, WEBHOOK, times=rng.randint(1, 2), amount=amount)
    target = rng.choice(TARGETS[kind])
    nth = rng.randint(1, 2 if target in FEW_CALLS else 6)
    return Fault(hour, kind, target, nth=nth, times=rng.randint(1, 2))
