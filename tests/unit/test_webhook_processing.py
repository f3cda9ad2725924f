"""Processing Leap's webhooks (webhooks/processing.py) against in-memory fakes held to the adapters'
contracts: duplicates, meter.created verified then meter.appeared (or remembered until the watch
opens, satisfied), the bounded deferral of an unconfirmed meter, connect_session poll requests,
enrollment events, unknown types kept; and exactly one meter.appeared per watch whatever the mix of
webhooks, duplicates, completions and sweeps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker import table
from leap_tracker.config import MeterWatchSettings, WebhookSettings
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.leap.api import LeapUnavailable
from leap_tracker.meters import schedule
from leap_tracker.meters.checks import EventsNotPublished
from leap_tracker.meters.model import ClosedReason, MeterWatch
from leap_tracker.meters.opening import EarlyMeters, OpenResult, open_watch
from leap_tracker.meters.sweep import run_sweep
from leap_tracker.webhooks.enrollment import enrollment_event, published_type
from leap_tracker.webhooks.payloads import Delivery, MalformedDelivery, delivery
from leap_tracker.webhooks.processing import (
    Result,
    WatchesBusy,
    WebhookProcessor,
    confirm_retry_seconds,
    keeps_body,
)
from tests.builders import (
    WEBHOOK_METER_ID,
    connection_completed_event,
    webhook_delivery,
    webhook_queue_message,
)
from tests.fakes.log_key import PSEUDONYMS
from tests.fakes.outreach import RecordingSink
from tests.fakes.webhooks import (
    FakeMeterSource,
    MemoryProcessedWebhooks,
    MemoryRememberedMeters,
    MemoryWatches,
    RecordingPollRequests,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)  # the completion's last interaction
REF = "customer-0001"  # the sample payloads' partner_reference
ENTRY = f"CAISO_u1_{REF}"
METER_CREATED_AT = "2025-03-01T11:30:00Z"  # after the completion: the watch takes the meter
RULES = MeterWatchSettings()
WEBHOOKS = WebhookSettings()
EVENT_IDS = [f"0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e{n:02d}" for n in range(100)]


@dataclass
class World:
    watches: MemoryWatches = field(default_factory=MemoryWatches)
    remembered: MemoryRememberedMeters = field(default_factory=MemoryRememberedMeters)
    ledger: MemoryProcessedWebhooks = field(default_factory=MemoryProcessedWebhooks)
    leap: FakeMeterSource = field(default_factory=FakeMeterSource)
    sink: RecordingSink = field(default_factory=RecordingSink)
    polls: RecordingPollRequests = field(default_factory=RecordingPollRequests)

    @property
    def processor(self) -> WebhookProcessor:
        return WebhookProcessor(
            self.ledger, self.watches, self.remembered, self.leap, self.sink, self.polls, WEBHOOKS, RULES
        )

    def process(self, delivery_: Delivery, now: datetime = T0 + timedelta(hours=3), receive_count: int = 1):
        return self.processor.process(delivery_, now, receive_count)

    def complete(self, now: datetime = T0 + timedelta(hours=1), entry_id: str = ENTRY) -> OpenResult:
        """The poller saw the completion: the snapshot exists, and meter_watch gets its event."""
        self.watches.connections[entry_id] = REF
        event = connection_completed_event(entry_id, REF, T0)
        return open_watch(self.watches, event, now, RULES, EarlyMeters(self.remembered, self.sink))

    def sweep(self, now: datetime) -> Any:
        return run_sweep(
            store=self.watches,
            meters=self.leap,
            publisher=self.sink,
            settings=RULES,
            now=now,
            remaining_ms=lambda: 300_000,
            pseudonyms=PSEUDONYMS,
        )

    def appeared(self) -> list[dict[str, Any]]:
        return [json.loads(m.body) for m in self.sink.of_type(catalog.METER_APPEARED)]


def received(
    event_type: str = wire.WEBHOOK_METER_CREATED, event_id: str = EVENT_IDS[0], **fields: Any
) -> Delivery:
    at = fields.pop("received_at", T0 + timedelta(hours=3))
    message = webhook_queue_message(webhook_delivery(event_type, event_id, **fields), at)
    return delivery(message.body, message.attributes)


def a_watch(entry_id: str = ENTRY, completed_at: datetime = T0) -> MeterWatch:
    return schedule.new_watch(
        entry_id=entry_id,
        ref_id=REF,
        transmission_region="CAISO",
        completed_at=completed_at,
        sequence=3,
        now=completed_at,
        settings=RULES,
    )


def watched(world: World, *watches: MeterWatch) -> World:
    for watch in watches or (a_watch(),):
        world.watches.watches[watch.entry_id] = watch
        world.watches.connections[watch.entry_id] = watch.ref_id
    return world


# --- duplicates and unknown types --------------------------------------------------------------------


def test_a_duplicate_delivery_changes_nothing() -> None:
    world = watched(World())
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT)
    first = world.process(received())
    assert first.result is Result.METER_APPEARED

    state = (dict(world.watches.watches), dict(world.ledger.records), len(world.sink.published))
    again = world.process(received(received_at=T0 + timedelta(hours=4)))  # Leap sends it again

    assert again.result is Result.DUPLICATE
    assert (dict(world.watches.watches), dict(world.ledger.records), len(world.sink.published)) == state
    assert len(world.leap.searches) == 1  # not even a Meters search


def test_an_unknown_type_is_kept_with_its_body_and_counted() -> None:
    world = World()
    unknown = received("meter.archived", **{wire.WEBHOOK_METER_ID: WEBHOOK_METER_ID, "why": "moved out"})

    outcome = world.process(unknown)

    assert outcome.result is Result.UNKNOWN_TYPE
    record = world.ledger.records[EVENT_IDS[0]]
    assert (record.event_type, record.outcome) == ("meter.archived", "unknown_type")
    assert json.loads(record.body or "")["payload"]["why"] == "moved out"
    assert record.expires_at == T0 + timedelta(hours=3, days=WEBHOOKS.retention_days)
    assert world.sink.published == []
    assert world.leap.searches == []
    assert world.polls.requests == []


def test_which_records_keep_their_body() -> None:
    assert keeps_body("meter.archived")
    assert keeps_body(wire.WEBHOOK_ENROLLMENT_GROUP)
    assert not keeps_body(wire.WEBHOOK_METER_CREATED)
    assert not keeps_body(wire.WEBHOOK_CONNECT_SESSION_UPDATED)


# --- meter.created ----------------------------------------------------------------------------------


def test_meter_created_with_an_open_watch_publishes_one_meter_appeared_and_closes_it() -> None:
    world = watched(World())
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT)

    outcome = world.process(received())

    assert (outcome.result, outcome.appeared, outcome.meter_searches) == (Result.METER_APPEARED, 1, 1)
    assert world.leap.searches == [([REF], None)]  # one search for that Reference ID
    (event,) = world.appeared()
    assert event["id"] == catalog.event_id(ENTRY, 3, catalog.METER_APPEARED, "meter-watch")  # the sweep's id
    assert event["time"] == METER_CREATED_AT  # when the meter was created, not when it was noticed
    assert event["data"]["meters"] == [
        {"meter_id": WEBHOOK_METER_ID, "utility_name": "PGE", "created_at": METER_CREATED_AT}
    ]
    assert "street" not in json.dumps(event)
    watch = world.watches.watches[ENTRY]
    assert (watch.is_open, watch.closed_reason, watch.meter_ids) == (
        False,
        ClosedReason.APPEARED,
        (WEBHOOK_METER_ID,),
    )
    assert world.ledger.records[EVENT_IDS[0]].outcome == "meter_appeared"

    # The sweep then finds nothing due for it, ever: no second meter.appeared.
    summary = world.sweep(T0 + timedelta(days=30))
    assert summary.due == 0
    assert len(world.appeared()) == 1


def test_meter_created_before_the_completion_is_remembered_and_the_watch_opens_satisfied() -> None:
    world = World()
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT)

    outcome = world.process(received(), now=T0 + timedelta(minutes=40))

    assert outcome.result is Result.METER_REMEMBERED
    assert list(world.remembered.meters[REF]) == [WEBHOOK_METER_ID]
    assert world.remembered.expires[(REF, WEBHOOK_METER_ID)] == T0 + timedelta(minutes=40, days=30)
    assert world.appeared() == []

    assert world.complete(now=T0 + timedelta(hours=2)) is OpenResult.APPEARED

    (event,) = world.appeared()
    assert event["subject"] == REF
    assert event["data"]["entry_id"] == ENTRY
    assert [m["meter_id"] for m in event["data"]["meters"]] == [WEBHOOK_METER_ID]
    assert not world.watches.watches[ENTRY].is_open
    # A redelivered completion, the sweep at the first check and later: nothing more.
    assert world.complete(now=T0 + timedelta(hours=3)) is OpenResult.ALREADY_WATCHED
    assert world.sweep(T0 + timedelta(days=30)).due == 0
    assert len(world.appeared()) == 1


def test_a_remembered_meter_older_than_the_completion_does_not_satisfy_its_watch() -> None:
    world = World()
    world.leap.add(REF, WEBHOOK_METER_ID, "2025-02-01T00:00:00Z")  # a meter of an earlier connection
    assert world.process(received()).result is Result.METER_REMEMBERED

    assert world.complete() is OpenResult.OPENED
    assert world.appeared() == []
    assert world.watches.watches[ENTRY].is_open


def test_a_meter_created_before_the_open_watchs_completion_leaves_it_open() -> None:
    world = watched(World())
    world.leap.add(REF, WEBHOOK_METER_ID, "2025-02-01T00:00:00Z")

    assert world.process(received()).result is Result.METER_REMEMBERED
    assert world.watches.watches[ENTRY].is_open
    assert world.appeared() == []


def test_an_unconfirmed_meter_is_deferred_with_growing_waits_then_acknowledged_after_the_bound() -> None:
    world = watched(World())  # Leap's Meters API does not list the meter, whatever the try
    waits = []
    for receive in range(1, WEBHOOKS.meter_confirm_attempts):
        outcome = world.process(received(), receive_count=receive)
        assert outcome.result is Result.METER_DEFERRED
        waits.append(outcome.retry_after_seconds)
        assert world.ledger.records == {}  # not processed yet: the next delivery tries again

    last = world.process(received(), receive_count=WEBHOOKS.meter_confirm_attempts)

    assert waits == [120, 240, 480, 960]
    assert last.result is Result.METER_UNCONFIRMED
    assert world.ledger.records[EVENT_IDS[0]].outcome == "meter_unconfirmed"  # acknowledged, counted
    assert world.remembered.meters == {}
    assert world.appeared() == []
    assert world.watches.watches[ENTRY].is_open  # the sweep stays the reconciliation
    assert len(world.leap.searches) == WEBHOOKS.meter_confirm_attempts


def test_a_meter_the_meters_api_lists_on_the_third_try_appears_then() -> None:
    world = watched(World())
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT, visible_from=2)

    results = [world.process(received(), receive_count=n).result for n in (1, 2, 3)]

    assert results == [Result.METER_DEFERRED, Result.METER_DEFERRED, Result.METER_APPEARED]
    assert len(world.appeared()) == 1


def test_the_search_confirms_only_the_meter_the_webhook_named() -> None:
    world = watched(World())
    world.leap.add(REF, "7d9a51f2-0000-4000-8000-000000000001", METER_CREATED_AT)  # another meter
    assert world.process(received()).result is Result.METER_DEFERRED
    assert world.appeared() == []


def test_confirm_retry_seconds_double_up_to_the_bound_and_twelve_hours() -> None:
    rules = WebhookSettings(meter_confirm_attempts=6, meter_confirm_retry_seconds=10_000)
    assert [confirm_retry_seconds(n, rules) for n in range(1, 7)] == [
        10_000,
        20_000,
        40_000,
        43_200,
        43_200,
        None,
    ]
    assert confirm_retry_seconds(1, WebhookSettings(meter_confirm_attempts=1)) is None


def test_a_meter_created_without_a_reference_is_kept_without_a_search() -> None:
    world = World()
    outcome = world.process(received(**{wire.WEBHOOK_PARTNER_REFERENCE: None}))
    assert outcome.result is Result.METER_WITHOUT_REFERENCE
    assert world.leap.searches == []
    assert EVENT_IDS[0] in world.ledger.records


def test_every_open_watch_of_the_reference_is_closed_and_one_whose_connection_went_away_is_left() -> None:
    other, gone = a_watch(f"ERCOT_u2_{REF}"), a_watch(f"PJM_u3_{REF}")
    world = watched(World(), a_watch(), other, gone)
    del world.watches.connections[gone.entry_id]  # deleted on a data-deletion request
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT)

    outcome = world.process(received())

    assert outcome.appeared == 2
    assert sorted(e["data"]["entry_id"] for e in world.appeared()) == sorted([ENTRY, other.entry_id])
    assert world.watches.watches[gone.entry_id].is_open  # the sweep closes it, silently


def test_sns_refusing_meter_appeared_saves_nothing_and_the_retry_publishes_the_same_id() -> None:
    world = watched(World())
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT)
    world.sink.refusing = 1

    with pytest.raises(EventsNotPublished):
        world.process(received())
    assert world.watches.watches[ENTRY].is_open
    assert world.ledger.records == {}

    assert world.process(received(), receive_count=2).result is Result.METER_APPEARED
    (event,) = world.appeared()
    assert event["id"] == catalog.event_id(ENTRY, 3, catalog.METER_APPEARED, "meter-watch")


def test_a_watch_a_concurrent_sweep_rescheduled_is_read_again_and_closed() -> None:
    world = watched(World())
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT)
    raced = []

    def sweep_first(before: MeterWatch) -> None:  # a sweep checked it first and found nothing (lag)
        if not raced:
            raced.append(before.entry_id)
            checked = schedule.after_check(before, [], T0 + timedelta(days=1), RULES).watch
            world.watches.watches[before.entry_id] = checked

    world.watches.before_replace = sweep_first
    outcome = world.process(received())

    assert (outcome.result, outcome.appeared, outcome.conflicts) == (Result.METER_APPEARED, 1, 1)
    assert not world.watches.watches[ENTRY].is_open
    assert len({e["id"] for e in world.appeared()}) == 1  # published again after the race: the same id


def test_a_watch_that_keeps_changing_fails_the_delivery_for_a_retry() -> None:
    world = watched(World())
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT)

    def always_first(before: MeterWatch) -> None:
        world.watches.watches[before.entry_id] = replace(before, checks=before.checks + 1)

    world.watches.before_replace = always_first
    with pytest.raises(WatchesBusy):
        world.process(received())
    assert world.ledger.records == {}


def test_leap_unavailable_fails_the_delivery_and_records_nothing() -> None:
    world = watched(World())
    world.leap.fail_with = LeapUnavailable("503 after retries")
    with pytest.raises(LeapUnavailable):
        world.process(received())
    assert world.ledger.records == {}
    assert world.watches.watches[ENTRY].is_open


# --- connect_session.* ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type", [wire.WEBHOOK_CONNECT_SESSION_UPDATED, wire.WEBHOOK_AUTHORIZATION_UPDATED]
)
def test_connect_session_webhooks_ask_one_targeted_poll(event_type: str) -> None:
    world = World()
    at = T0 + timedelta(minutes=7)

    outcome = world.process(received(event_type, received_at=at))

    assert (outcome.result, outcome.ref_id) == (Result.POLL_REQUESTED, REF)
    assert world.polls.requests == [(REF, at)]
    assert world.leap.searches == []
    assert world.sink.published == []
    assert world.process(received(event_type, received_at=at)).result is Result.DUPLICATE
    assert len(world.polls.requests) == 1


def test_an_older_connect_session_webhook_after_a_newer_one_only_asks_a_poll() -> None:
    world = World()
    newer = received(wire.WEBHOOK_CONNECT_SESSION_UPDATED, EVENT_IDS[1], status="COMPLETED")
    older = received(wire.WEBHOOK_CONNECT_SESSION_UPDATED, EVENT_IDS[2], status="CREATED")

    world.process(newer)
    world.process(older)

    assert [ref for ref, _ in world.polls.requests] == [REF, REF]  # the poll reads Leap's current state
    assert world.sink.published == []
    assert world.watches.watches == {}


# --- enrollment events ------------------------------------------------------------------------------


def test_required_actions_are_published_with_their_codes_and_deadlines_under_a_stable_id() -> None:
    world = World()
    webhook = received(wire.WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS, **{wire.WEBHOOK_PARTNER_REFERENCE: REF})
    world.sink.refusing = 1
    with pytest.raises(EventsNotPublished):
        world.process(webhook)

    outcome = world.process(webhook, receive_count=2)

    assert outcome.result is Result.ENROLLMENT_PUBLISHED
    (message,) = world.sink.of_type(catalog.ENROLLMENT_ACTIONS_REQUIRED)
    event = json.loads(message.body)
    assert event["id"] == catalog.webhook_event_id(EVENT_IDS[0], catalog.ENROLLMENT_ACTIONS_REQUIRED)
    assert event["subject"] == REF
    assert event["data"]["required_actions"] == [
        {
            "action_code": "SIGN_FORM",
            "action_type": "DOCUMENT",
            "action_description": "Upload the signed form",
            "enrollment_deadline_date_time": "2025-02-15T00:00:00Z",
        }
    ]
    assert (event["data"]["meter_id"], event["data"]["global_enrollment_status"]) == (
        WEBHOOK_METER_ID,
        "PENDING",
    )
    assert message.attributes == {"type": catalog.ENROLLMENT_ACTIONS_REQUIRED, "transmission_region": "NYISO"}
    record = world.ledger.records[EVENT_IDS[0]]
    assert (
        json.loads(record.body or "")["payload"]["required_actions"]["partner"][0]["action_code"]
        == "SIGN_FORM"
    )


def test_enrollment_events_carry_something_to_act_on_or_are_only_kept() -> None:
    none_required = {wire.WEBHOOK_PARTNER_ACTIONS: []}
    cases = [
        (
            received(
                wire.WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS, **{wire.WEBHOOK_REQUIRED_ACTIONS: none_required}
            ),
            None,
        ),
        (received(wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS), None),  # ELIGIBLE: Leap's own progress
        (
            received(
                wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS, **{wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS: "INELIGIBLE"}
            ),
            catalog.ENROLLMENT_INELIGIBLE,
        ),
        (received(wire.WEBHOOK_ENROLLMENT_PARTICIPATION), None),
        (received(wire.WEBHOOK_ENROLLMENT_GROUP), None),
    ]
    for n, (webhook, expected) in enumerate(cases):
        world = World()
        webhook = replace(webhook, event_id=EVENT_IDS[n])
        outcome = world.process(webhook)
        assert published_type(webhook) == expected, webhook.event_type
        assert outcome.result is (Result.ENROLLMENT_PUBLISHED if expected else Result.KEPT)
        assert [m.attributes["type"] for m in world.sink.published] == ([expected] if expected else [])
        assert world.ledger.records[EVENT_IDS[n]].body == webhook.body  # kept either way


def test_an_ineligible_meter_without_a_reference_is_published_about_the_meter() -> None:
    webhook = received(
        wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS, **{wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS: "INELIGIBLE"}
    )
    event = enrollment_event(webhook)
    assert event is not None
    assert (event["subject"], event["data"]["ref_id"]) == (WEBHOOK_METER_ID, None)
    assert event["sequence"] == catalog.format_sequence(int(webhook.received_at.timestamp()))
    assert event["time"] == event["data"]["received_at"] == "2025-03-01T12:00:00Z"


def test_an_enrollment_event_is_valid_against_its_generated_schema() -> None:
    webhook = received(wire.WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS)
    event = enrollment_event(webhook)
    jsonschema.Draft202012Validator(catalog.json_schema(catalog.ENROLLMENT_ACTIONS_REQUIRED)).validate(event)


# --- the queue message ------------------------------------------------------------------------------


def test_a_message_whose_attributes_do_not_match_its_body_is_malformed() -> None:
    message = webhook_queue_message(webhook_delivery(), T0)
    wrong_id = {**message.attributes, "webhook_event_id": EVENT_IDS[9]}
    with pytest.raises(MalformedDelivery, match="webhook_event_id"):
        delivery(message.body, wrong_id)
    with pytest.raises(MalformedDelivery, match="received_at"):
        delivery(message.body, {**message.attributes, "received_at": "yesterday"})
    with pytest.raises(MalformedDelivery, match="webhook_event_type"):
        delivery(message.body, {k: v for k, v in message.attributes.items() if k != "webhook_event_type"})
    body = json.loads(message.body)
    del body["payload"][wire.WEBHOOK_METER_ID]
    with pytest.raises(MalformedDelivery, match="meter_id: missing"):
        delivery(json.dumps(body), message.attributes)
    region = webhook_delivery(
        wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS, **{wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS: "INELIGIBLE"}
    )
    region["payload"][wire.WEBHOOK_TRANSMISSION_REGION] = "CAISO\x07"
    bad = webhook_queue_message(region, T0)
    with pytest.raises(MalformedDelivery, match="control character"):
        enrollment_event(delivery(bad.body, bad.attributes))


def test_the_remembered_meter_key_fits_dynamodb_for_the_longest_reference_a_webhook_carries() -> None:
    longest = "\U0001f600" * 256  # 256 characters the Meters search takes, 4 bytes each
    assert wire.METERS_REFERENCE_ID_PATTERN.fullmatch(longest)
    key = table.remembered_meter_key(longest, "m" * 256)
    assert len(key[table.PK].encode()) <= table.MAX_PARTITION_KEY_BYTES
    assert len(key[table.SK].encode()) <= table.MAX_SORT_KEY_BYTES


# --- opening satisfied: the meter watch function's side ---------------------------------------------


def test_without_remembered_meters_opening_is_what_it_was() -> None:
    world = World()
    assert world.complete() is OpenResult.OPENED
    assert world.complete() is OpenResult.ALREADY_WATCHED
    assert world.sink.published == []
    assert world.watches.watches[ENTRY].is_open
    event = connection_completed_event(ENTRY, REF, T0)
    assert open_watch(MemoryWatches(), event, T0, RULES) is OpenResult.OPENED  # no early meters at all


def test_sns_refusing_the_satisfied_opening_raises_and_the_redelivery_publishes_it() -> None:
    world = World()
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT)
    world.process(received(), now=T0 + timedelta(minutes=30))
    world.sink.refusing = 1

    with pytest.raises(EventsNotPublished):
        world.complete()
    assert world.watches.watches[ENTRY].is_open  # opened, not closed: nothing published

    assert world.complete() is OpenResult.APPEARED  # the redelivered completion
    assert len(world.appeared()) == 1


def test_a_reference_the_meters_search_cannot_take_is_never_looked_up() -> None:
    world = World()
    event = connection_completed_event("CAISO_u9_bad#ref", "bad#ref", T0)
    assert (
        open_watch(world.watches, event, T0, RULES, EarlyMeters(world.remembered, world.sink))
        is OpenResult.OPENED
    )
    assert world.remembered.recalls == 0


# --- exactly one meter.appeared per watch -----------------------------------------------------------

STEPS = st.sampled_from(["webhook", "duplicate", "complete", "sweep"])


@settings(max_examples=200, deadline=None)
@given(st.lists(STEPS, min_size=1, max_size=8), st.integers(min_value=0, max_value=3))
def test_exactly_one_meter_appeared_per_watch_whatever_the_mix(steps: list[str], lag: int) -> None:
    """Any order of meter.created deliveries (new ids and duplicates), the completion (and its
    redeliveries) and sweeps, with the Meters API lagging ``lag`` searches: one meter.appeared at most,
    and exactly one once the watch exists and someone saw the meter."""
    world = World()
    world.leap.add(REF, WEBHOOK_METER_ID, METER_CREATED_AT, visible_from=lag)
    clock = T0 + timedelta(hours=1)
    deliveries = 0
    for step in steps:
        clock += timedelta(hours=12)
        if step == "webhook":
            deliveries += 1
            world.process(received(event_id=EVENT_IDS[deliveries]), now=clock)
        elif step == "duplicate":
            world.process(received(event_id=EVENT_IDS[max(deliveries, 1)]), now=clock)
        elif step == "complete":
            world.complete(now=clock)
        elif ENTRY in world.watches.watches:
            world.sweep(clock)
    world.leap.meters = [(meter, 0) for meter, _ in world.leap.meters]  # the Meters API caught up
    world.sweep(T0 + timedelta(days=10))  # whatever is left, the sweep reconciles

    appeared = world.appeared()
    watch = world.watches.watches.get(ENTRY)
    assert len(appeared) == (1 if watch is not None else 0)
    if watch is not None:
        assert watch.closed_reason is ClosedReason.APPEARED
