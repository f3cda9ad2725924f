"""The "outreach effect = ground truth" check: the insight report's outreach figures against what the
simulator made happen (who it was told was messaged, which messages moved them on, who completed when).

Where the definitions match exactly, the counts must be equal: per reason and per (reason, variant),
the customers messaged (their first message of the reason), and for each window of N days those whose
window is over (``observed``: first message + N days <= the report's now) and those who completed
within it (the first poll at or after Leap's completion, which is when the table stored it, falls in
(first message, first message + N days]). Where the report compares shares (progressed), the check
holds it to the direction the simulator made: of the reasons with at least ``MIN_GROUP`` observed
customers, the one with the strongest nudge shows a higher progressed share than the weakest; the same
for two variants of a reason with different nudges.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.demo.model import Check
from devtools.leap_simulator import LeapSimulator
from devtools.leap_simulator.nudges import nudge_probability
from leap_tracker.insight.analysis import newcombe

NAME = "outreach effect = ground truth"
WINDOWS_DAYS = (1, 3, 7)  # the report's windows (leap_tracker_cli.insight.analysis.WINDOWS_DAYS)
MIN_GROUP = 20  # the report's own minimum for a comparison
DIRECTION_DAYS = 1  # the window the direction is judged in (the one most customers are observed in)


@dataclass
class Arm:
    """One reason, or one variant of a reason: the simulator's account of its customers."""

    nudge: float  # the chance a message moves a customer on (nudges.py)
    messaged: int = 0
    moved: int = 0  # customers its first message moved on
    observed: dict[int, int] = field(default_factory=dict)  # window days -> customers
    completed: dict[int, int] = field(default_factory=dict)
    moved_within: dict[int, int] = field(default_factory=dict)  # window days -> observed, moved in it


@dataclass
class EffectTruth:
    reasons: dict[str, Arm] = field(default_factory=dict)
    variants: dict[tuple[str, str], Arm] = field(default_factory=dict)  # (reason, variant)


def effect_truth(
    leap: LeapSimulator, polled_at: Callable[[str], Sequence[datetime]], now: datetime
) -> EffectTruth:
    """Each customer's first message of each reason, as the simulator was told, followed as the report
    follows it."""
    first: dict[tuple[str, str], tuple[int, str, int | None]] = {}  # (reason, ref) -> (at, variant, moved)
    for told in leap.outreach:
        key = (told.reason, told.ref_id)
        if key not in first or told.at < first[key][0]:
            first[key] = (told.at, told.variant, told.moved_at)
    truth = EffectTruth()
    for (reason, ref_id), (at, variant, moved_at) in sorted(first.items()):
        arms = (
            truth.reasons.setdefault(reason, Arm(nudge_probability(reason, "a"))),
            truth.variants.setdefault((reason, variant), Arm(nudge_probability(reason, variant))),
        )
        stored = _stored_at(polled_at(ref_id), leap.completed_at(ref_id))
        moment = datetime.fromtimestamp(at, UTC)
        moved = None if moved_at is None else datetime.fromtimestamp(moved_at, UTC)
        for arm in arms:
            arm.messaged += 1
            arm.moved += moved is not None
            for days in WINDOWS_DAYS:
                end = moment + timedelta(days=days)
                if end <= now:
                    arm.observed[days] = arm.observed.get(days, 0) + 1
                    done = stored is not None and moment < stored <= end
                    arm.completed[days] = arm.completed.get(days, 0) + done
                    arm.moved_within[days] = arm.moved_within.get(days, 0) + (
                        moved is not None and moved <= end
                    )
    return truth


def _stored_at(polls: Sequence[datetime], completed: datetime | None) -> datetime | None:
    """The first poll at or after the completion: when the table stored it."""
    if completed is None:
        return None
    index = bisect.bisect_left(polls, completed)
    return polls[index] if index < len(polls) else None


def effect_check(document: Mapping[str, Any], truth: EffectTruth) -> Check:
    reasons = {r["reason"]: r for r in document.get("outreach", [])}
    variants = {(v["reason"], v["variant"]): v for v in document.get("variants", [])}
    problems = _count_problems("reason", reasons, truth.reasons, "messaged")
    problems += _count_problems("variant", variants, truth.variants, "variant")
    directions, direction_problems = _directions(reasons, variants, truth)
    problems += direction_problems
    if problems:
        shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        return Check(NAME, False, f"{len(problems)} problem(s): {shown}")
    moved = sum(arm.moved for arm in truth.reasons.values())
    messaged = sum(arm.messaged for arm in truth.reasons.values())
    return Check(
        NAME,
        True,
        f"per reason and variant, the customers messaged and, over {'/'.join(map(str, WINDOWS_DAYS))} "
        f"days, observed and completed equal the simulator's ({messaged} first messages, {moved} moved on "
        f"by them); {directions}",
    )


def _count_problems(
    kind: str, reported: Mapping[Any, Mapping[str, Any]], truth: Mapping[Any, Arm], side: str
) -> list[str]:
    problems = [f"{kind} {_name(k)}: in the report, not messaged" for k in sorted(reported.keys() - truth)]
    problems += [f"{kind} {_name(k)}: messaged, not in the report" for k in sorted(truth.keys() - reported)]
    for key in sorted(reported.keys() & truth.keys()):
        arm, got = truth[key], reported[key]
        if got["messaged"] != arm.messaged:
            problems.append(f"{kind} {_name(key)}: {got['messaged']} messaged, the simulator {arm.messaged}")
        for window in got["windows"]:
            days, outcome = window["days"], window[side]
            want = (arm.observed.get(days, 0), arm.completed.get(days, 0))
            found = (outcome["observed"], outcome["completed"]["count"])
            if found != want:
                problems.append(
                    f"{kind} {_name(key)}, {days} d: observed/completed {found[0]}/{found[1]}, "
                    f"the simulator {want[0]}/{want[1]}"
                )
    return problems


def _directions(
    reasons: Mapping[str, Mapping[str, Any]],
    variants: Mapping[tuple[str, str], Mapping[str, Any]],
    truth: EffectTruth,
) -> tuple[str, list[str]]:
    """The direction the nudges made, where the report has enough customers to show one."""
    said, problems = [], []
    ranked = _comparable(
        {r: reasons[r] for r in reasons.keys() & truth.reasons.keys()}, truth.reasons, "messaged"
    )
    if len(ranked) >= 2 and ranked[0][1] > ranked[-1][1]:
        (strong, nudge_high, share_high), (weak, nudge_low, share_low) = ranked[0], ranked[-1]
        text = (
            f"{strong} (nudge {nudge_high:.0%}) progressed {share_high:.0%} within {DIRECTION_DAYS} d, "
            f"{weak} (nudge {nudge_low:.0%}) {share_low:.0%}"
        )
        (said if share_high > share_low else problems).append(text)
    else:
        said.append(f"too few reasons with {MIN_GROUP}+ observed customers and different nudges to compare")
    for reason in sorted({r for r, _ in variants}):
        arms = {k: v for k, v in variants.items() if k[0] == reason and k in truth.variants}
        pair = _comparable(arms, truth.variants, "variant")
        if len(pair) >= 2 and pair[0][1] > pair[-1][1]:
            (strong, _, high), (weak, _, low) = pair[0], pair[-1]
            text = f"{reason}: variant {strong[1]} progressed {high:.0%}, {weak[1]} {low:.0%}"
            (said if high > low else problems).append(text)
    if len(said) == 1 and not problems:
        said.append(f"no reason has two variants with {MIN_GROUP}+ observed customers and different nudges")
    return "; ".join(said), problems


def _comparable(
    reported: Mapping[Any, Mapping[str, Any]], truth: Mapping[Any, Arm], side: str
) -> list[tuple[Any, float, float]]:
    """(key, nudge, progressed share) of the arms with MIN_GROUP+ observed, strongest nudge first."""
    found = []
    for key, effect in reported.items():
        window = next((w for w in effect["windows"] if w["days"] == DIRECTION_DAYS), None)
        outcome = None if window is None else window[side]
        if (
            outcome is not None
            and outcome["observed"] >= MIN_GROUP
            and outcome["progressed"]["share"] is not None
        ):
            found.append((key, truth[key].nudge, float(outcome["progressed"]["share"])))
    return sorted(found, key=lambda item: (-item[1], str(item[0])))


def _name(key: Any) -> str:
    return "/".join(key) if isinstance(key, tuple) else str(key)


# --- "lift = planted effect" -------------------------------------------------------------------------

LIFT_NAME = "lift = planted effect"


def lift_check(document: Mapping[str, Any], truth: EffectTruth, holdout_percent: int) -> Check:
    """Per reason and window with ``MIN_GROUP``+ observed customers in both groups: the planted effect
    (the share of the observed messaged whose first message the simulator turned into a move within the
    window) lies in the 95% Newcombe interval of the report's lift (messaged minus comparison share
    progressed). Fewer customers: too few to conclude, which neither passes nor fails a reason. With a
    holdout, a reason whose messaged side has ``MIN_GROUP``+ observed and whose comparison is empty
    fails: the holdout did not reach the report's control."""
    held, few, problems = [], [], []
    for effect in document.get("outreach", []):
        arm = truth.reasons.get(effect["reason"])
        for window in effect["windows"]:
            days, messaged, comparison = window["days"], window["messaged"], window["comparison"]
            label = f"{effect['reason']} {days} d"
            if holdout_percent > 0 and messaged["observed"] >= MIN_GROUP and comparison["observed"] == 0:
                problems.append(f"{label}: {messaged['observed']} messaged, no comparison customer")
                continue
            if arm is None or min(messaged["observed"], comparison["observed"]) < MIN_GROUP:
                few.append(label)
                continue
            planted = arm.moved_within.get(days, 0) / messaged["observed"]
            interval = newcombe(
                messaged["progressed"]["count"],
                messaged["observed"],
                comparison["progressed"]["count"],
                comparison["observed"],
            )
            lift = messaged["progressed"]["share"] - comparison["progressed"]["share"]
            text = (
                f"{label}: planted {planted:.0%}, lift {lift:+.0%} "
                f"({messaged['observed']} messaged, {comparison['observed']} compared)"
            )
            if interval is None or not interval[0] <= planted <= interval[1]:
                problems.append(f"{text} outside its 95% interval {_interval(interval)}")
            else:
                held.append(f"{text} [{interval[0]:+.0%}, {interval[1]:+.0%}]")
    if problems:
        return Check(LIFT_NAME, False, f"{len(problems)} problem(s): {'; '.join(problems)}")
    if not held:
        return Check(
            LIFT_NAME, True, f"too few to conclude: no reason has {MIN_GROUP}+ observed in both groups"
        )
    return Check(
        LIFT_NAME,
        True,
        f"the planted effect lies in the measured lift's 95% interval for {'; '.join(held)}"
        + (f"; too few to conclude for the other {len(few)} reason-windows" if few else ""),
    )


def _interval(interval: tuple[float, float] | None) -> str:
    return "(none)" if interval is None else f"[{interval[0]:+.0%}, {interval[1]:+.0%}]"
