"""The fault kinds and the seeded plan: which faults are armed in which simulated hour.

A plan is a pure function of (seed, hours): the same seed arms the same faults at the same hours, so
a failing seed replays. Faults stop ``QUIET_HOURS`` before the end, so the run ends with clean hours
in which everything that was retried must have caught up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

POLLER = "PollerFunction"
EMITTER = "EmitterFunction"
OUTREACH = "OutreachFunction"
METER_WATCH = "MeterWatchFunction"
METER_SWEEP = "MeterSweepFunction"
FUNCTIONS = (POLLER, EMITTER, OUTREACH, METER_WATCH, METER_SWEEP)
CONNECT, METERS = "connect", "meters"  # the two Leap APIs
WEBHOOK = "webhook"

QUIET_HOURS = 6  # the last hours carry no fault
FAULTY_HOUR_CHANCE = 0.7
MOST_FAULTS_AN_HOUR = 3


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
    # the partner's webhook endpoint
    WEBHOOK_ERROR = "webhook_error"
    WEBHOOK_TIMEOUT = "webhook_timeout"
    WEBHOOK_SLOW = "webhook_slow"


LEAP_KINDS = frozenset(k for k in FaultKind if k.value.startswith("leap_"))
WEBHOOK_KINDS = frozenset(k for k in FaultKind if k.value.startswith("webhook_"))

# The functions each AWS or Lambda fault may aim at (the ones whose code makes such calls).
TARGETS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.DYNAMO_THROTTLED: FUNCTIONS,
    FaultKind.DYNAMO_ERROR: FUNCTIONS,
    FaultKind.BATCH_WRITE_UNPROCESSED: (POLLER, METER_SWEEP),
    FaultKind.BATCH_GET_UNPROCESSED: (POLLER, OUTREACH, METER_SWEEP),
    FaultKind.SNS_BATCH_PARTLY_FAILED: (EMITTER, METER_SWEEP),
    FaultKind.SNS_ERROR: (EMITTER, OUTREACH, METER_SWEEP),
    FaultKind.SQS_ERROR: (OUTREACH,),
    FaultKind.WRITE_AFTER_SIDE_EFFECT_FAILS: (EMITTER, OUTREACH, METER_SWEEP),
    FaultKind.CRASH_AFTER_SIDE_EFFECT: FUNCTIONS,
    FaultKind.FUNCTION_TIMEOUT: FUNCTIONS,
    FaultKind.DUPLICATE_DELIVERY: (EMITTER, OUTREACH, METER_WATCH),
    FaultKind.STREAM_REPLAY: (EMITTER,),
    FaultKind.VISIBILITY_EXPIRED: (OUTREACH, METER_WATCH),
}


@dataclass(frozen=True, slots=True)
class Fault:
    hour: int  # armed at the start of this simulated hour (1-based), disarmed at its end
    kind: FaultKind
    target: str  # a function logical id, CONNECT/METERS, or WEBHOOK
    nth: int = 1  # the call (or request) it hits, counted within the hour
    times: int = 1  # how many calls/requests it hits
    amount: float = 0.0  # seconds (Retry-After, slowness)

    def describe(self) -> str:
        extra = f" amount={self.amount:g}" if self.amount else ""
        return f"h{self.hour} {self.kind} -> {self.target} nth={self.nth} times={self.times}{extra}"


def make_plan(seed: int, hours: int, kinds: frozenset[FaultKind] | None = None) -> list[Fault]:
    """The faults of a run: each hour before the quiet tail is faulty by chance, with 1-3 faults."""
    rng = random.Random(f"soak:{seed}")
    allowed = sorted(kinds if kinds is not None else frozenset(FaultKind))
    plan: list[Fault] = []
    for hour in range(1, max(0, hours - QUIET_HOURS) + 1):
        if rng.random() >= FAULTY_HOUR_CHANCE:
            continue
        for _ in range(rng.randint(1, MOST_FAULTS_AN_HOUR)):
            plan.append(_fault(rng, hour, rng.choice(allowed)))
    return plan


def last_fault_hour(plan: list[Fault]) -> int:
    return max((fault.hour for fault in plan), default=0)


def _fault(rng: random.Random, hour: int, kind: FaultKind) -> Fault:
    if kind in LEAP_KINDS:
        target = CONNECT if kind is FaultKind.LEAP_OUTAGE else rng.choice((CONNECT, CONNECT, METERS))
        amount = {
            FaultKind.LEAP_RATE_LIMITED: float(rng.choice((0, 1, 5, 30))),
            FaultKind.LEAP_SLOW: float(rng.choice((5, 60, 300))),
        }.get(kind, 0.0)
        return Fault(hour, kind, target, nth=rng.randint(1, 3), times=rng.randint(1, 3), amount=amount)
    if kind in WEBHOOK_KINDS:
        amount = 0.2 if kind is FaultKind.WEBHOOK_SLOW else 0.0
        return Fault(hour, kind, WEBHOOK, times=rng.randint(1, 2), amount=amount)
    return Fault(hour, kind, rng.choice(TARGETS[kind]), nth=rng.randint(1, 6), times=rng.randint(1, 2))
