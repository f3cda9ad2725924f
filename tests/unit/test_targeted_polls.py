"""Targeted polls (docs/webhooks.md#targeted-polls): the pure rules of ``webhooks.targeted`` (table-driven,
and property-based over any burst of requests: one soon poll per debounce window, one after the
refresh, none lost), and one request as the poller consumes it (``poller.targeted``) over fakes."""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.config import PollerSettings, TargetedPollSettings
from leap_tracker.leap import wire
from leap_tracker.leap.api import LeapUnavailable
from leap_tracker.poller.ports import LeaseUse
from leap_tracker.poller.run import PollEnvironment, PollFailed, RunStatus
from leap_tracker.poller.targeted import Outcome, handle_poll_request
from leap_tracker.webhooks.targeted import (
    REQUEUE_AT_RECEIVE,
    InvalidPollRequestMessage,
    Next,
    PollRequestMessage,
    Stage,
    Step,
    busy_retry_seconds,
    instant_text,
    next_step,
    parse_request_body,
    request_body,
    requeue_when_busy,
    send_delay_seconds,
)
from tests.builders import T0, guide_entry
from tests.fakes.leap import FakeSource
from tests.fakes.log_key import PSEUDONYMS
from tests.fakes.poller import FakeClock, MemoryPollMarks, MemoryStore, PageBudget

TIMING = TargetedPollSettings()
D = timedelta(seconds=TIMING.delay_seconds)  # 2 minutes: the soon poll, the debounce window
R = timedelta(seconds=TIMING.refresh_seconds)  # 65 minutes: the poll after Leap's refresh
US = timedelta(microseconds=1)


# --- next_step -------------------------------------------------------------------------------------

CASES = [
    # (last targeted poll started, now: both relative to the request), expected
    (None, timedelta(0), Next(Step.WAIT, Stage.SOON, T0 + D)),
    (None, D - US, Next(Step.WAIT, Stage.SOON, T0 + D)),
    (None, D, Next(Step.POLL, Stage.SOON, T0 + D)),
    (None, 3 * R, Next(Step.POLL, Stage.SOON, T0 + D)),  # a late delivery polls at once
    (-US, D, Next(Step.POLL, Stage.SOON, T0 + D)),  # a poll that started before the request covers nothing
    (timedelta(0), D, Next(Step.WAIT, Stage.AFTER_REFRESH, T0 + R)),  # it started with the request: covered
    (D, D, Next(Step.WAIT, Stage.AFTER_REFRESH, T0 + D + R)),  # back with all that poll covered
    (D, R - US, Next(Step.WAIT, Stage.AFTER_REFRESH, T0 + D + R)),
    (D, R, Next(Step.POLL, Stage.AFTER_REFRESH, T0 + R)),  # due: it polls ...
    (R - US, R, Next(Step.POLL, Stage.AFTER_REFRESH, T0 + R)),  # ... whatever later soon poll came since
    (R, R, Next(Step.DONE)),
    (5 * R, D, Next(Step.DONE)),  # any poll late enough for the refresh covers both
]


@pytest.mark.parametrize(("polled", "now", "expected"), CASES)
def test_next_step(polled: timedelta | None, now: timedelta, expected: Next) -> None:
    polled_at = None if polled is None else T0 + polled
    assert next_step(T0, polled_at, T0 + now, TIMING) == expected


@pytest.mark.parametrize(
    ("sent_after", "delay"),
    [
        (timedelta(0), 120),
        (timedelta(seconds=0.5), 120),  # rounded up: never visible before its poll is due
        (timedelta(seconds=119), 1),
        (D, 0),
        (timedelta(hours=3), 0),  # a processor far behind: at once
        (-timedelta(hours=1), 900),  # (a clock behind the receiver's) at most SQS's 15 minutes
    ],
)
def test_the_send_delay_is_until_the_soon_poll(sent_after: timedelta, delay: int) -> None:
    assert send_delay_seconds(T0, T0 + sent_after, TIMING) == delay


def test_a_request_that_meets_a_pass_waits_longer_each_time_then_goes_back_as_a_new_message() -> None:
    waits = [busy_retry_seconds(receive, TIMING) for receive in range(1, 8)]
    assert waits == [30, 60, 120, 240, 480, 900, 900]
    assert busy_retry_seconds(10_000, TIMING) == 900
    assert [requeue_when_busy(receive) for receive in range(1, 9)] == [False] * 5 + [True] * 3
    assert REQUEUE_AT_RECEIVE < 8  # PollRequestQueue's maxReceiveCount (template.yaml)


# --- the message -----------------------------------------------------------------------------------


def test_a_request_message_carries_the_reference_id_and_when_the_webhook_came() -> None:
    requested_at = T0 + timedelta(microseconds=123)
    body = request_body("Customer 42 ü", requested_at)

    assert json.loads(body) == {"ref_id": "Customer 42 ü", "requested_at": "2025-01-10T12:00:00.000123Z"}
    assert parse_request_body(body) == PollRequestMessage("Customer 42 ü", requested_at)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"ref_id": "Customer-42"}',
        '{"ref_id": "Customer-42", "requested_at": "2025-01-10T12:00:00Z", "mode": "full"}',
        '{"ref_id": "  ", "requested_at": "2025-01-10T12:00:00Z"}',
        '{"ref_id": 42, "requested_at": "2025-01-10T12:00:00Z"}',
        '{"ref_id": "' + "é" * 1100 + '", "requested_at": "2025-01-10T12:00:00Z"}',  # 2,200 bytes
        '{"ref_id": "Customer-42", "requested_at": "yesterday"}',
        '{"ref_id": "Customer-42", "requested_at": 1736510400}',
    ],
)
def test_a_message_this_code_did_not_write_is_refused_without_quoting_it(body: str) -> None:
    with pytest.raises(InvalidPollRequestMessage) as refused:
        parse_request_body(body)
    assert "Customer-42" not in str(refused.value)


def test_a_reference_id_no_poll_could_ask_for_is_refused_before_it_is_sent() -> None:
    with pytest.raises(InvalidPollRequestMessage, match="non-empty"):
        request_body("", T0)
    with pytest.raises(InvalidPollRequestMessage, match="bytes"):
        request_body("é" * 1100, T0)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1)), st.integers(0, 10**9))
def test_instant_text_orders_as_the_instants_do(start: datetime, micros: int) -> None:
    first = start.replace(tzinfo=T0.tzinfo)
    second = first + timedelta(microseconds=micros)
    assert len(instant_text(first)) == len(instant_text(second)) == 27
    assert (instant_text(first) < instant_text(second)) == (first < second)


# --- any burst of requests: a model of the queue and one consumer -----------------------------------


@dataclass(frozen=True)
class Request:
    at: datetime  # received_at
    sent: datetime  # when the processor sent it (the receiver's queue and the processor take a while)
    visible: datetime  # its first delivery: the SQS delay, and Lambda's own latency


def simulate(
    requests: list[Request], timing: TargetedPollSettings = TIMING, stages: list[Stage] | None = None
) -> list[datetime]:
    """Deliver every request in time order as the poller handles it (a poll at the delivery instant,
    its start the mark); a deferred one comes back exactly when due. Returns the polls' instants (and
    in ``stages`` the stage each poll was made for)."""
    queue = [(r.visible, n, r.at) for n, r in enumerate(requests)]
    heapq.heapify(queue)
    polls: list[datetime] = []
    made_for = [] if stages is None else stages
    mark: datetime | None = None
    serial = len(queue)
    while queue:
        now, _, requested_at = heapq.heappop(queue)
        step = next_step(requested_at, mark, now, timing)
        if step.step is Step.POLL:
            polls.append(now)
            made_for.append(Stage(step.stage))
            mark = now if mark is None else max(mark, now)
            step = next_step(requested_at, mark, now, timing)
        if step.step is not Step.DONE:
            assert step.due is not None
            assert step.due > now
            serial += 1
            heapq.heappush(queue, (step.due, serial, requested_at))
    return polls


def windows(times: list[datetime]) -> list[datetime]:
    """The debounce windows, computed apart from the rules: each opens at the first request after the
    previous one closed and lasts the delay."""
    opened: list[datetime] = []
    for at in sorted(times):
        if not opened or at > opened[-1] + D:
            opened.append(at)
    return opened


def requests_at(offsets: list[float], lags: list[float] | None = None) -> list[Request]:
    made = []
    for n, offset in enumerate(offsets):
        at = T0 + timedelta(seconds=offset)
        sent = at + timedelta(seconds=lags[n] if lags else 0)
        made.append(Request(at, sent, sent + timedelta(seconds=send_delay_seconds(at, sent, TIMING))))
    return made


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0, R.total_seconds() - 3 * D.total_seconds()), min_size=1, max_size=40),
)
def test_a_burst_gets_one_soon_poll_per_window_and_one_after_the_refresh(offsets: list[float]) -> None:
    requests = requests_at(offsets)
    polls = simulate(requests)

    opened = windows([r.at for r in requests])
    assert polls == [w + D for w in opened] + [w + D + R for w in opened]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 4 * 3600), st.floats(0, 1800), st.floats(0, 30)), min_size=1, max_size=40
    ),
)
def test_no_request_is_ever_without_its_two_polls(spec: list[tuple[float, float, float]]) -> None:
    """Requests over hours, sent late (a processor behind) and out of order, delivered late."""
    requests = [
        Request(r.at, r.sent, r.visible + timedelta(seconds=latency))
        for r, (_, _, latency) in zip(
            requests_at([at for at, _, _ in spec], [lag for _, lag, _ in spec]), spec, strict=True
        )
    ]
    stages: list[Stage] = []
    polls = simulate(requests, stages=stages)

    for request in requests:
        # soon: by its own first delivery, and never before the request
        assert any(request.at <= p <= request.visible for p in polls), request
        # after the refresh: at least R after the request, at most R after that delivery
        assert any(request.at + R <= p <= request.visible + R for p in polls), request
    # The debounce: at most one soon poll per window (another one's poll may cover a request too).
    assert stages.count(Stage.SOON) <= len(windows([r.at for r in requests]))
    assert polls == sorted(polls)


def test_ten_requests_in_a_minute_and_a_half_are_two_polls() -> None:
    polls = simulate(requests_at([10.0 * n for n in range(10)]))
    assert polls == [T0 + D, T0 + D + R]


# --- one request as the poller consumes it -----------------------------------------------------------


class Consumer:
    """``handle_poll_request`` over the run's fakes: one Reference ID's entry in a fake Connect API."""

    def __init__(self) -> None:
        self.source = FakeSource([[guide_entry("Customer-42", status=wire.CONNECTION_COMPLETED, last=T0)]])
        self.store = MemoryStore()
        self.marks = MemoryPollMarks()
        self.clock = FakeClock(T0)
        self.runs = 0

    def handle(self, requested_at: datetime, receive_count: int = 1):  # type: ignore[no-untyped-def]
        self.runs += 1
        env = PollEnvironment(
            source=self.source,
            store=self.store,
            now=self.clock,
            remaining_ms=PageBudget(100),
            pseudonyms=PSEUDONYMS,
            sleep=lambda _: None,
        )
        message = PollRequestMessage("Customer-42", requested_at)
        return handle_poll_request(
            message, receive_count, f"req-{self.runs}", env, self.marks, PollerSettings(), TIMING
        )


def test_a_due_request_polls_its_reference_id_once_and_the_window_converges_on_one_refresh_poll() -> None:
    consumer = Consumer()
    consumer.clock.advance(seconds=D.total_seconds())
    first = consumer.handle(T0)
    assert (first.outcome, first.stage, first.until) == (Outcome.POLLED, Stage.SOON, T0 + D + R)
    assert first.summary is not None
    assert first.summary.status is RunStatus.COMPLETED
    assert [query.ref_id for query, _ in consumer.source.requests] == ["Customer-42"]
    assert consumer.marks.marks == {"Customer-42": T0 + D}
    assert consumer.store.checkpoint == MemoryStore().checkpoint  # the passes' checkpoint untouched

    # A request that came in during the window is covered by that poll, and waits for the same instant.
    later = consumer.handle(T0 + timedelta(seconds=90))
    assert (later.outcome, later.stage, later.until) == (Outcome.WAITING, Stage.AFTER_REFRESH, T0 + D + R)
    assert later.summary is None

    consumer.clock.advance(seconds=R.total_seconds())
    refresh = consumer.handle(T0, receive_count=2)
    assert (refresh.outcome, refresh.stage, refresh.until) == (Outcome.POLLED, Stage.AFTER_REFRESH, None)
    assert consumer.handle(T0 + timedelta(seconds=90), receive_count=2).outcome is Outcome.COVERED
    assert len(consumer.source.requests) == 2


def test_a_request_not_yet_due_touches_nothing() -> None:
    consumer = Consumer()
    result = consumer.handle(T0)
    assert (result.outcome, result.until) == (Outcome.WAITING, T0 + D)
    assert consumer.source.requests == []
    assert consumer.store.acquire_attempts == 0


def test_a_request_meeting_a_pass_under_the_lease_comes_back_later_without_a_mark() -> None:
    consumer = Consumer()
    consumer.store.lease, consumer.store.lease_use = ("run-hourly", T0 + timedelta(minutes=16)), LeaseUse.PASS
    consumer.clock.advance(seconds=D.total_seconds())

    result = consumer.handle(T0, receive_count=3)

    assert (result.outcome, result.stage) == (Outcome.BUSY, Stage.SOON)
    assert result.until == T0 + D + timedelta(seconds=busy_retry_seconds(3, TIMING))
    assert result.summary is not None
    assert result.summary.status is RunStatus.SKIPPED
    assert consumer.marks.marks == {}
    assert consumer.source.requests == []


def test_a_failed_poll_raises_and_leaves_no_mark() -> None:
    consumer = Consumer()
    consumer.source.errors[0] = LeapUnavailable("503 after retries")
    consumer.clock.advance(seconds=D.total_seconds())

    with pytest.raises(PollFailed, match="poll it again"):
        consumer.handle(T0)
    assert consumer.marks.marks == {}
    assert consumer.store.lease is None
