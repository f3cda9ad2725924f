"""The invocation input and the one decision of which pass a run reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.config import PollerSettings
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.leap.connect_model import MAX_REF_ID_BYTES
from leap_tracker.poller.plan import next_continuation, plan_pass
from leap_tracker.poller.ports import Checkpoint, PassKind, PassState
from leap_tracker.poller.request import InvalidPollRequest, PollMode, PollRequest, parse_request
from tests.builders import T0

SETTINGS = PollerSettings(overlap_minutes=120, full_reconciliation_hours=24)
EVENTS = Path(__file__).resolve().parents[2] / "events"
FULL_QUERY = ConnectQuery(start_date=SETTINGS.full_reconciliation_start)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"mode": "scheduled"}, PollRequest(PollMode.SCHEDULED)),
        ({"mode": "incremental"}, PollRequest(PollMode.INCREMENTAL)),
        ({"mode": "full"}, PollRequest(PollMode.FULL)),
        ({"mode": "ref_id", "ref_id": " Test1012 "}, PollRequest(PollMode.REF_ID, "Test1012")),
        ({"mode": "scheduled", "continuation": 3}, PollRequest(PollMode.SCHEDULED, continuation=3)),
        ({"mode": "full", "continuation": 0}, PollRequest(PollMode.FULL)),
    ],
)
def test_accepted_inputs(event: dict[str, Any], expected: PollRequest) -> None:
    assert parse_request(event) == expected


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (None, "the input is NoneType"),
        ({}, "unknown mode None"),
        ({"mode": "hourly"}, "unknown mode 'hourly'"),
        ({"mode": "ref_id"}, 'needs a non-empty string "ref_id"'),
        ({"mode": "ref_id", "ref_id": ""}, 'needs a non-empty string "ref_id"'),
        ({"mode": "ref_id", "ref_id": 12}, 'needs a non-empty string "ref_id"'),
        ({"mode": "ref_id", "refId": "x"}, "unexpected key(s) ['refId']"),
        ({"mode": "full", "ref_id": "x"}, "unexpected key(s) ['ref_id'] for mode 'full'"),
        ({"mode": "scheduled", "continuation": "2"}, '"continuation" must be a whole number'),
        ({"mode": "scheduled", "continuation": True}, '"continuation" must be a whole number'),
        ({"mode": "scheduled", "continuation": -1}, '"continuation" must be a whole number'),
        ({"mode": "scheduled", "continuation": 101}, "from 0 to 100"),
        ({"mode": "ref_id", "ref_id": "x", "continuation": 1}, "unexpected key(s) ['continuation']"),
        ({"mode": "ref_id", "ref_id": "x" * (MAX_REF_ID_BYTES + 1)}, "over the 2037-byte limit"),
        ({"mode": "ref_id", "ref_id": "参" * 700}, "2100 bytes of UTF-8"),  # 700 characters only
        ({"mode": "ref_id", "ref_id": "🔌" * 510}, "2040 bytes of UTF-8"),
        ({"mode": "ref_id", "ref_id": "bad\ud800"}, "not valid Unicode text"),
        # Near misses of EventBridge's scheduled event are not taken for it.
        ({"detail-type": "Scheduled Event", "source": "my.app"}, "unknown mode None"),
        ({"detail-type": "Object Created", "source": "aws.events"}, "unknown mode None"),
        ({"detail-type": "Scheduled Event", "source": "aws.events", "mode": "hourly"}, "unknown mode"),
    ],
)
def test_bad_inputs_are_clear_errors(event: Any, message: str) -> None:
    with pytest.raises(InvalidPollRequest) as refused:
        parse_request(event)
    assert message in str(refused.value)
    assert '{"mode": "scheduled"}' in str(refused.value) or "ref_id" in str(refused.value)


@pytest.mark.parametrize(
    "event",
    [
        {"mode": "m" * 100_000},
        {"mode": ["scheduled"] * 10_000},
        {"mode": "full", **{f"key-{n}": n for n in range(10_000)}},
    ],
    ids=["long-mode", "list-mode", "many-keys"],
)
def test_whatever_size_the_input_the_error_stays_short(event: dict[str, Any]) -> None:
    # The message is logged with the failed invocation: it shows a cut-down excerpt of the input.
    with pytest.raises(InvalidPollRequest) as refused:
        parse_request(event)
    assert len(str(refused.value)) < 400
    assert "..." in str(refused.value)


@pytest.mark.parametrize(
    "ref_id",
    ["r" * MAX_REF_ID_BYTES, "参" * (MAX_REF_ID_BYTES // 3), "🔌" * (MAX_REF_ID_BYTES // 4)],
    ids=["ascii-at-the-limit", "cjk-at-the-limit", "emoji-a-byte-under-the-limit"],
)
def test_a_ref_id_up_to_the_byte_limit_is_accepted(ref_id: str) -> None:
    assert parse_request({"mode": "ref_id", "ref_id": ref_id}) == PollRequest(PollMode.REF_ID, ref_id)


def test_eventbridge_scheduled_event_is_a_scheduled_run() -> None:
    # Written by `sam local generate-event cloudwatch scheduled-event`: what a classic rule sends.
    event = json.loads((EVENTS / "eventbridge-scheduled-event.json").read_text())
    assert (event["detail-type"], event["source"]) == ("Scheduled Event", "aws.events")
    assert parse_request(event) == PollRequest(PollMode.SCHEDULED)


def test_the_sample_events_are_accepted() -> None:
    files = sorted(EVENTS.glob("poller-*.json"))
    assert {path.name for path in files} >= {"poller-scheduled.json", "poller-ref-id.json"}
    for path in files:
        parse_request(json.loads(path.read_text()))


def test_the_template_schedule_sends_the_scheduled_input() -> None:
    template = (Path(__file__).resolve().parents[2] / "template.yaml").read_text()
    poller = template[
        template.index("  PollerFunction:") : template.index("  # ----", template.index("  PollerFunction:"))
    ]
    assert 'Input: \'{"mode": "scheduled"}\'' in poller
    assert parse_request(json.loads('{"mode": "scheduled"}')).mode is PollMode.SCHEDULED


# --- plan_pass ----------------------------------------------------------------------------------

PENDING = PassState(
    kind=PassKind.INCREMENTAL,
    query=ConnectQuery(last_interaction_date="2025-01-10T07:00:00Z"),
    started_at=T0 - timedelta(hours=1),
    page_token="tok+/3=",
    pages_done=3,
)


def test_first_ever_run_is_a_full_reconciliation() -> None:
    plan = plan_pass(PollMode.SCHEDULED, Checkpoint(), T0, SETTINGS)
    assert plan.state == PassState(kind=PassKind.FULL, query=FULL_QUERY, started_at=T0)
    assert not plan.resumed
    assert "no full reconciliation" in plan.reason


def test_scheduled_resumes_an_unfinished_pass_with_its_exact_query_and_token() -> None:
    checkpoint = Checkpoint(watermark=T0, last_full_started_at=T0 - timedelta(days=3), pending=PENDING)
    plan = plan_pass(PollMode.SCHEDULED, checkpoint, T0, SETTINGS)
    assert plan.state == PENDING
    assert plan.resumed


def test_scheduled_is_incremental_from_the_watermark_minus_the_overlap() -> None:
    watermark = datetime(2025, 1, 10, 11, 30, 15, tzinfo=UTC)
    checkpoint = Checkpoint(watermark=watermark, last_full_started_at=T0 - timedelta(hours=5))
    plan = plan_pass(PollMode.SCHEDULED, checkpoint, T0, SETTINGS)
    assert plan.state.kind is PassKind.INCREMENTAL
    assert plan.state.query == ConnectQuery(last_interaction_date="2025-01-10T09:30:15Z")
    assert plan.state.page_token is None


@pytest.mark.parametrize(
    ("since_last_full", "kind"),
    [
        (timedelta(hours=23), PassKind.INCREMENTAL),
        (timedelta(hours=23, minutes=59, seconds=50), PassKind.FULL),  # the schedule fired a bit early
        (timedelta(hours=24), PassKind.FULL),
        (timedelta(days=3), PassKind.FULL),
    ],
)
def test_a_full_reconciliation_is_due_daily(since_last_full: timedelta, kind: PassKind) -> None:
    checkpoint = Checkpoint(watermark=T0, last_full_started_at=T0 - since_last_full)
    assert plan_pass(PollMode.SCHEDULED, checkpoint, T0, SETTINGS).state.kind is kind


def test_explicit_modes_resume_their_own_kind_and_replace_the_other() -> None:
    checkpoint = Checkpoint(watermark=T0, last_full_started_at=T0, pending=PENDING)
    incremental = plan_pass(PollMode.INCREMENTAL, checkpoint, T0, SETTINGS)
    assert incremental.resumed
    assert incremental.state == PENDING
    full = plan_pass(PollMode.FULL, checkpoint, T0, SETTINGS)
    assert not full.resumed
    assert full.state == PassState(kind=PassKind.FULL, query=FULL_QUERY, started_at=T0)


def test_incremental_without_a_watermark_reads_from_the_full_start() -> None:
    plan = plan_pass(PollMode.INCREMENTAL, Checkpoint(), T0, SETTINGS)
    assert plan.state.query == ConnectQuery(last_interaction_date=SETTINGS.full_reconciliation_start)


def test_a_ref_id_poll_has_no_pass() -> None:
    with pytest.raises(ValueError, match="no pass"):
        plan_pass(PollMode.REF_ID, Checkpoint(), T0, SETTINGS)


instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=100, deadline=None)
@given(
    watermark=st.none() | instants,
    last_full=st.none() | instants,
    pending=st.booleans(),
    now=instants,
    mode=st.sampled_from([PollMode.SCHEDULED, PollMode.INCREMENTAL, PollMode.FULL]),
)
def test_every_plan_reads_everything_since_the_watermark_minus_the_overlap(
    watermark: datetime | None, last_full: datetime | None, pending: bool, now: datetime, mode: PollMode
) -> None:
    """No plan can skip an entry touched after (watermark - overlap): the incremental guarantee."""
    checkpoint = Checkpoint(
        watermark=watermark, last_full_started_at=last_full, pending=PENDING if pending else None
    )
    plan = plan_pass(mode, checkpoint, now, SETTINGS)
    query = plan.state.query
    if plan.resumed:
        assert plan.state == PENDING
    elif query.start_date is not None:
        assert plan.state.kind is PassKind.FULL
    else:
        since = datetime.fromisoformat(query.last_interaction_date.replace("Z", "+00:00"))
        floor = (watermark - timedelta(minutes=SETTINGS.overlap_minutes)) if watermark else None
        assert floor is None or since <= floor
        assert mode is not PollMode.FULL


# --- continuing a pass the time limit cut short ---------------------------------------------------


@given(
    st.sampled_from([PollMode.SCHEDULED, PollMode.FULL, PollMode.INCREMENTAL]),
    st.integers(0, 30),
    st.booleans(),
    st.integers(0, 5),
    st.integers(0, 24),
)
def test_a_cut_pass_continues_while_it_progresses_and_the_chain_is_short(
    mode: PollMode, continuation: int, stopped_short: bool, pages: int, limit: int
) -> None:
    request = PollRequest(mode, continuation=continuation)
    follow = next_continuation(request, stopped_short, pages, PollerSettings(max_continuations=limit))
    if stopped_short and pages > 0 and continuation < limit:
        assert follow == PollRequest(mode, continuation=continuation + 1)
        assert parse_request(follow.as_event()) == follow  # what the handler sends reads back the same
    else:
        assert follow is None


def test_a_ref_id_poll_never_continues() -> None:
    assert next_continuation(PollRequest(PollMode.REF_ID, "x"), True, 1, SETTINGS) is None
