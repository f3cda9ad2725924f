"""Bugs planted at runtime (never in the product's files) to show the soak can fail: each patches a
product function inside the soak's world only, adds the faults that expose it to the seed's plan,
and names the invariant that must catch it (``python -m devtools.soak --plant NAME``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from devtools.leap_simulator.webhooks import WebhookFaults
from devtools.local_runner import LocalCloud
from devtools.soak.plan import CONNECT, EMITTER, OUTREACH, POLLER, Fault, FaultKind, webhook_faults
from devtools.soak.timeline import Timeline
from leap_tracker.adapters import continuation, leap_http, sns_publisher
from leap_tracker.leap import wire
from leap_tracker.outreach import decision
from leap_tracker.timeutil import parse_instant
from leap_tracker.webhooks import intake


@dataclass(frozen=True, slots=True)
class Plant:
    name: str
    invariant: str  # the Result.name that must report it
    apply: Callable[[LocalCloud, Timeline], AbstractContextManager[Any]]
    faults: Callable[[int], list[Fault]]  # extra faults for a run of so many hours
    webhook_faults: Callable[[int], WebhookFaults] = webhook_faults  # Leap's, for the run's seed


def _every(hours: int, kind: FaultKind, target: str, step: int = 3) -> list[Fault]:
    return [Fault(hour, kind, target, nth=1, times=2) for hour in range(2, max(3, hours - 6), step)]


@contextmanager
def _counts_partly_failed_as_published(_: LocalCloud, __: Timeline) -> Iterator[None]:
    """The SNS publisher reports no failure when SNS accepted part of a PublishBatch."""
    original = sns_publisher.SnsPublisher.publish_batch

    def publish_batch(self: Any, messages: Any) -> dict[str, str]:
        failures = original(self, messages)
        return {} if len(failures) < len(messages) else failures

    with mock.patch.object(sns_publisher.SnsPublisher, "publish_batch", publish_batch):
        yield


@contextmanager
def _drops_a_page_after_a_retry(cloud: LocalCloud, timeline: Timeline) -> Iterator[None]:
    """The poller skips a page it got through a retry (a request retried within the run, or the
    first page of the retry of a failed run) and goes on past it: the checkpoint never goes back."""
    original = leap_http.LeapHttpClient._connect_answers  # the pages' answers, in the order Leap sent them

    def connect_answers(self: Any, selection: Any, token: Any) -> Iterator[Any]:
        polls = [r for r in cloud.invocations if r.function == POLLER]
        marks, retrying = len(timeline.marks), bool(polls) and polls[-1].failed
        for answer in original(self, selection, token):
            retried = retrying or any(m.kind.startswith("leap_") for m in timeline.marks[marks:])
            if retried:
                dropped = f"plant: dropped a page of {len(answer.page().entries)}"
                timeline.add(cloud.now(), "phase", POLLER, dropped)
            marks, retrying = len(timeline.marks), False
            if not retried:
                yield answer

    with mock.patch.object(leap_http.LeapHttpClient, "_connect_answers", connect_answers):
        yield


def _page_retried_in_full_passes(hours: int) -> list[Fault]:
    """A 500 on the first Connect request of the hours that read everything (the first pass, then each
    daily full reconciliation): a page dropped there is one no incremental overlap reads again (an
    incremental pass re-reads only the last two hours, so a page dropped there comes back an hour
    later and the clean-hour comparison never sees it)."""
    return [Fault(hour, FaultKind.LEAP_SERVER_ERROR, CONNECT) for hour in range(1, hours + 1, 24)]


@contextmanager
def _continuations_dropped(_: LocalCloud, __: Timeline) -> Iterator[None]:
    """The poller never sends the continuation of a pass the time limit cut short (its answer still
    says ``continued_by``): the pass waits for the next hourly run."""

    def send(self: Any, function_arn: str, request: Any) -> None:
        return None

    with mock.patch.object(continuation.LambdaContinuations, "send", send):
        yield


def _passes_cut_every_hour(hours: int) -> list[Fault]:
    """Each hour's first pass run sees its time limit after one page (a pass of two pages or more is
    cut, and must continue)."""
    cut = FaultKind.POLLER_TIME_LIMIT
    return [Fault(hour, cut, POLLER, amount=1.0) for hour in range(1, max(2, hours - 5))]


@contextmanager
def _max_attempts_off_by_one(cloud: LocalCloud, __: Timeline) -> Iterator[None]:
    """Outreach allows one message more than OUTREACH_MAX_ATTEMPTS. The run's cooldown is an hour (a
    configuration, read by the invariants too), so the maximum is reached within hours, not days."""
    cloud.set_env(OUTREACH, OUTREACH_COOLDOWN_HOURS="1")
    original = decision.OutreachPolicy.from_settings.__func__  # type: ignore[attr-defined]

    def from_settings(cls: Any, settings: Any) -> Any:
        policy = original(cls, settings)
        return dataclasses.replace(policy, max_attempts=policy.max_attempts + 1)

    with mock.patch.object(decision.OutreachPolicy, "from_settings", classmethod(from_settings)):
        yield


@contextmanager
def _completed_read_as_not_started(_: LocalCloud, __: Timeline) -> Iterator[None]:
    """Outreach's assessment reads a COMPLETED connection as not started (and so never marks it
    completed): a customer who finished gets a message."""
    original = decision.assess

    def assess(entry: Any, done_statuses: Any) -> Any:
        need = original(entry, done_statuses)
        if need.because is decision.Because.COMPLETED:
            return decision.Need(need.kind, decision.NOT_STARTED)
        return need

    with mock.patch.object(decision, "assess", assess):
        yield


@contextmanager
def _hour_counted_from_the_start_date(_: LocalCloud, __: Timeline) -> Iterator[None]:
    """Outreach waits an hour from the entry's start date instead of its last interaction."""
    start_date = property(lambda self: parse_instant(self.entry[wire.ENTRY_START]))
    with mock.patch.object(decision.Snapshot, "last_interaction", start_date):
        yield


@contextmanager
def _holdout_ignored(_: LocalCloud, __: Timeline) -> Iterator[None]:
    """Outreach forgets the measurement holdout: held-out customers are messaged at once."""
    with mock.patch.object(decision, "holdout_release", return_value=None):
        yield


@contextmanager
def _any_secret_accepted(_: LocalCloud, __: Timeline) -> Iterator[None]:
    """The receiver checks that the secret header is there, not what it holds: a call with a wrong
    value is accepted (and enqueued) like Leap's own."""

    def matches_a_secret(presented: str, secrets: Any) -> bool:
        return bool(presented.strip())

    with mock.patch.object(intake, "matches_a_secret", matches_a_secret):
        yield


PLANTS: dict[str, Plant] = {
    plant.name: plant
    for plant in (
        Plant(
            "emitter-counts-partial-publish",
            "every transition reaches the partner",
            _counts_partly_failed_as_published,
            lambda hours: _every(hours, FaultKind.SNS_BATCH_PARTLY_FAILED, EMITTER, step=1),
        ),
        Plant(
            "poller-drops-page-after-retry",
            "table equals Leap after a clean hour",
            _drops_a_page_after_a_retry,
            _page_retried_in_full_passes,
        ),
        Plant(
            "hour-from-start-date",
            "no message before last interaction + 1 h",
            _hour_counted_from_the_start_date,
            lambda hours: [],
        ),
        Plant(
            "outreach-max-attempts-off-by-one",
            "no more messages than the maximum, none within the cooldown",
            _max_attempts_off_by_one,
            lambda hours: [],
        ),
        Plant(
            "outreach-ignores-holdout",
            "no first message to a held-out customer before its release",
            _holdout_ignored,
            lambda hours: [],
        ),
        Plant(
            "outreach-messages-completed",
            "no message after COMPLETED",
            _completed_read_as_not_started,
            lambda hours: [],
        ),
        Plant(
            "poller-drops-continuations",
            "a pass cut by the time limit continues within a minute; chains stay bounded",
            _continuations_dropped,
            _passes_cut_every_hour,
        ),
        Plant(
            "receiver-accepts-any-secret",
            "a wrong secret is refused and enqueues nothing; each 2xx enqueued once",
            _any_secret_accepted,
            lambda hours: [],
            lambda seed: dataclasses.replace(webhook_faults(seed), wrong_secret=0.5),
        ),
    )
}
