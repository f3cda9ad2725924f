"""Outreach that matters: a share of the customers a message reaches move on some hours later.

The simulator is told of each message (``LeapSimulator.message``). A seeded draw, from the seed, the
customer, the reason, the variant and the moment, decides whether the message nudges them
(:func:`nudge_probability`: by reason, times a variant factor) and after how many hours. A nudged
customer moves on to their journey's next step at that moment: the rest of their script is pulled
forward, or, at a dead end (never logged in, gave up, an error never retried, agreements never
signed), they pick the journey up again and finish it. What was already shown is never rewritten.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace

from devtools.leap_simulator.population import (
    HOUR,
    Attempt,
    Signature,
    Step,
    Timeline,
    _between,
    _draw_meters_delay,
)
from leap_tracker.leap import wire

# The chance that a message of a reason moves the customer on: an agreement left to sign is one tap
# away, a customer who never logged in is the hardest to move. utility_error.<code> share one value.
NUDGE_BY_REASON = {
    "agreement_pending": 0.60,
    "utility_error": 0.40,
    "utility_not_connected": 0.35,
    "other_utility": 0.30,
    "not_started": 0.15,
}
DEFAULT_NUDGE = 0.20
# Template variants other than these move customers as "a" does (factor 1).
VARIANT_FACTOR = {"b": 1.5, "c": 0.5}
NUDGE_DELAY_HOURS = (2, 24)  # a nudged customer moves on this many hours after the message


@dataclass(frozen=True, slots=True)
class Outreach:
    """One message the simulator was told of, and what it did."""

    ref_id: str
    reason: str
    variant: str
    at: int  # epoch seconds
    drawn: bool  # the draw said: this message moves them
    moved_at: int | None  # when they moved on because of it; None: not nudged (or no step to pull)


def nudge_probability(reason: str, variant: str) -> float:
    family = reason.partition(".")[0]
    return min(1.0, NUDGE_BY_REASON.get(family, DEFAULT_NUDGE) * VARIANT_FACTOR.get(variant, 1.0))


def draw(seed: int, ref_id: str, reason: str, variant: str, at: int) -> tuple[bool, int]:
    """Whether this message nudges, and when the customer would move on (seeded, order-free)."""
    key = f"leap-nudge/{seed}/{ref_id}/{reason}/{variant}/{at}".encode()
    rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8]))
    nudged = rng.random() < nudge_probability(reason, variant)
    low, high = NUDGE_DELAY_HOURS
    return nudged, at + _between(rng, low * HOUR, high * HOUR)


def nudged_timeline(timeline: Timeline, at: int, moved: int, rng: random.Random) -> Timeline | None:
    """The timeline of a customer messaged at ``at`` who moves on at ``moved``; None: no change (already
    completed, or their next step comes by then anyway)."""
    if timeline.completed_at is not None and timeline.completed_at <= at:
        return None
    later = [step for step in timeline.steps if step.at > at]
    if later:
        shift = later[0].at - moved
        if shift <= 0:
            return None
        done = timeline.steps[: len(timeline.steps) - len(later)]
        return replace(
            timeline,
            steps=(*done, *(replace(step, at=step.at - shift) for step in later)),
            completed_at=None if timeline.completed_at is None else timeline.completed_at - shift,
            meters_at=None if timeline.meters_at is None else timeline.meters_at - shift,
        )
    finish = _finish(timeline, moved, rng)
    if not finish:
        return None
    completed = finish[-1].at
    return replace(
        timeline,
        steps=(*timeline.steps, *finish),
        completed_at=completed,
        meters_at=_draw_meters_delay(rng, completed),
    )


def _finish(timeline: Timeline, t: int, rng: random.Random) -> list[Step]:
    """A dead end picked up again: connect each required utility not connected, sign what is unsigned."""
    status: dict[str, str] = {}
    signed: set[str] = set()
    for step in timeline.steps:
        if isinstance(step, Attempt) and step.required:
            status[step.utility] = step.status
        elif isinstance(step, Signature):
            signed.add(step.agreement)
    steps: list[Step] = []
    for utility in timeline.required:
        if status.get(utility) != wire.UTILITY_CONNECTED:
            steps.append(Attempt(t, utility, True, wire.UTILITY_CONNECTED))
            t += _between(rng, 120, 900)
    agreements = [wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION]
    if timeline.attestation_required:
        agreements.append(wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION)
    for agreement in agreements:
        if agreement not in signed:
            steps.append(Signature(t, agreement))
            t += _between(rng, 60, 600)
    return steps
