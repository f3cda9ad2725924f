"""The simulator's webhooks: the Subscription API on its HTTP server, and the push engine (its schedule
against the simulator's own ground truth, its retries, each fault, determinism)."""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from devtools.leap_simulator import (
    DEFAULT_START,
    LeapSimulator,
    Outcome,
    WebhookDelivery,
    WebhookFault,
    WebhookFaults,
)
from devtools.leap_simulator.webhooks import DEFAULT_DELAY, entry_events
from leap_tracker.leap import wire

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
RECEIVER = "https://abc123.lambda-url.us-east-1.on.aws/"
SECRET = "the-stack-secret"
ALL = list(wire.WEBHOOK_EVENT_TYPES)
END = DEFAULT_START + timedelta(days=25)  # the clicks spread over 14 days; meters come up to 10 later


def subscription(url: str = RECEIVER, types: list[str] | None = None, secret: str = SECRET) -> dict[str, Any]:
    return {
        "receiver_url": url,
        "event_types": types or ALL,
        "headers": [{"name": "x-api-key", "value": secret}],
    }


class Receiver:
    """A transport that checks the secret header (401 without it) and records every call, in order."""

    def __init__(self, refuse_first: int = 0) -> None:
        self.calls: list[tuple[str, dict[str, str], dict[str, Any], int]] = []
        self.refuse_first = refuse_first  # answer 500 to the first N real attempts of each event
        self._tries: Counter[str] = Counter()

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        sent = json.loads(body)
        status = 200
        if headers.get("x-api-key") != SECRET:
            status = 401
        else:
            self._tries[sent["webhook_event_id"]] += 1
            if self._tries[sent["webhook_event_id"]] <= self.refuse_first:
                status = 500
        self.calls.append((url, dict(headers), sent, status))
        return status

    def accepted_ids(self) -> list[str]:
        return [body["webhook_event_id"] for _, _, body, status in self.calls if status == 200]


def simulator(receiver: Receiver, seed: int = 4, customers: int = 60, **options: Any) -> LeapSimulator:
    return LeapSimulator(seed=seed, customers=customers, webhook_transport=receiver, **options)


def step_to_each_push(sim: LeapSimulator, end: datetime = END) -> int:
    """Move the clock to each moment a webhook is due and push, up to ``end``; the number of pushes."""
    pushes = 0
    while (due := sim.next_webhook_at()) is not None and due <= end:
        assert due >= sim.now  # never a push moment in the past
        sim.set_time(due)
        sim.push_due_webhooks()
        pushes += 1
    sim.set_time(end)
    sim.push_due_webhooks()
    return pushes


def step_hourly(sim: LeapSimulator, end: datetime = END) -> None:
    while sim.now < end:
        sim.set_time(min(end, sim.now + timedelta(hours=1)))
        sim.push_due_webhooks()


def sent(sim: LeapSimulator, end: datetime = END) -> list[WebhookDelivery]:
    return [d for d in sim.webhook_deliveries if d.due_at <= end]


def shape(deliveries: list[WebhookDelivery]) -> list[tuple[Any, ...]]:
    return [
        (d.webhook_event_id, d.event_type, d.payload, d.due_at, d.faults, d.attempts, d.outcome)
        for d in deliveries
    ]


# --- the schedule against the ground truth ----------------------------------------------------------


def test_without_faults_every_due_webhook_is_delivered_exactly_once_in_due_order():
    receiver = Receiver()
    sim = simulator(receiver)
    webhook_id = sim.create_webhook(subscription())

    pushes = step_to_each_push(sim)

    deliveries = sent(sim)
    assert pushes > 100
    assert len(deliveries) == len(receiver.calls) > 200
    assert all(d.outcome is Outcome.DELIVERED and len(d.attempts) == 1 for d in deliveries)
    assert all(d.attempts[0].at == d.due_at and d.attempts[0].status == 200 for d in deliveries)
    assert receiver.accepted_ids() == [d.webhook_event_id for d in deliveries]  # in due order
    assert all(d.webhook_id == webhook_id and UUID.fullmatch(d.webhook_event_id) for d in deliveries)
    url, headers, body, _ = receiver.calls[0]
    assert (url, headers["x-api-key"], headers["Content-Type"]) == (RECEIVER, SECRET, "application/json")
    assert json.dumps(body, separators=(",", ":")).encode() == deliveries[0].body
    assert len({d.webhook_event_id for d in deliveries}) == len(deliveries)


def test_meter_created_comes_when_the_meters_appear_with_each_meter():
    sim = simulator(Receiver())
    sim.create_webhook(subscription())
    step_to_each_push(sim)

    meters = [d for d in sent(sim) if d.event_type == wire.WEBHOOK_METER_CREATED]
    expected = {}
    for ref_id in sim.ref_ids:
        appear = sim.meters_appear_at(ref_id)
        if appear is not None and appear + DEFAULT_DELAY <= END:
            for meter in sim.meters_of(ref_id, at=appear):
                expected[meter["meter_id"]] = (
                    ref_id,
                    appear,
                    meter["transmission_region"],
                    meter["meter_type"],
                )
    assert len(expected) > 10
    assert {
        d.payload["meter_id"]: (
            d.payload["partner_reference"],
            d.happened_at,
            d.payload["transmission_region"],
            d.payload["meter_type"],
        )
        for d in meters
    } == expected
    assert len(meters) == len(expected)
    assert all(d.due_at == d.happened_at + DEFAULT_DELAY for d in meters)
    assert all(wire.METERS_REFERENCE_ID_PATTERN.fullmatch(d.partner_reference) for d in meters)


def test_connect_session_updated_follows_every_change_of_the_entry():
    sim = simulator(Receiver())
    sim.create_webhook(subscription())
    step_to_each_push(sim)

    sessions = [d for d in sent(sim) if d.event_type == wire.WEBHOOK_CONNECT_SESSION_UPDATED]
    by_ref: dict[str, list[WebhookDelivery]] = {}
    for d in sessions:
        by_ref.setdefault(d.partner_reference, []).append(d)
    for ref_id in sim.ref_ids:
        changes = [t for t in sim.change_times(ref_id) if t + DEFAULT_DELAY <= END]
        got = by_ref.get(ref_id, [])
        assert [d.happened_at for d in got] == changes
        statuses = [d.payload["status"] for d in got]
        if changes:
            assert statuses[0] == wire.SESSION_CREATED
            assert changes[0] == sim.clicked_at(ref_id)
        completed = sim.completed_at(ref_id)
        expected_completed = [completed] if completed is not None and completed in changes else []
        assert [
            d.happened_at for d in got if d.payload["status"] == wire.SESSION_COMPLETED
        ] == expected_completed
        assert set(statuses[1:]) <= {wire.SESSION_UPDATED, wire.SESSION_COMPLETED}


def test_authorization_updated_says_what_the_utility_connection_became():
    sim = simulator(Receiver())
    sim.create_webhook(subscription())
    step_to_each_push(sim)

    authorizations = [d for d in sent(sim) if d.event_type == wire.WEBHOOK_AUTHORIZATION_UPDATED]
    meaning = {
        wire.AUTHORIZATION_COMPLETED: wire.UTILITY_CONNECTED,
        wire.AUTHORIZATION_FAILED: wire.UTILITY_ERROR,
        wire.AUTHORIZATION_INITIATED: wire.UTILITY_NOT_CONNECTED,
    }
    assert {d.payload["status"] for d in authorizations} == set(meaning)
    for d in authorizations:
        entry = sim.snapshot(d.partner_reference, at=d.happened_at)
        assert entry is not None
        changed = [
            u
            for u in entry["utility_connections"]
            if u["last_interaction_date_time_utc"] == entry["last_interaction_date_time_utc"]
        ]
        assert meaning[d.payload["status"]] in {u["status"] for u in changed}
        assert re.fullmatch(r"[A-Z_]+", d.payload["utility_name"])  # the enum (PGE), not the Connect name


def test_the_click_alone_says_created_and_nothing_of_the_utilities():
    after = {
        "id": "e",
        "connection_status": "NOT_STARTED",
        "utility_connections": [{"status": "NOT_CONNECTED"}],
    }

    [event] = entry_events("ref-1", None, after, str)

    assert event.payload == {
        "webhook_event_type": "connect_session.updated",
        "partner_reference": "ref-1",
        "status": "CREATED",
    }
    assert entry_events("ref-1", after, dict(after), str) == []  # no change, no webhook


def test_the_schedule_is_a_function_of_the_seed_not_of_how_the_clock_is_stepped():
    runs = []
    for seed, stepper in ((4, step_to_each_push), (4, step_hourly), (5, step_to_each_push)):
        receiver = Receiver()
        sim = simulator(receiver, seed=seed, webhook_faults=WebhookFaults(duplicate=0.2, out_of_order=0.2))
        sim.create_webhook(subscription())
        stepper(sim)
        runs.append((shape(sent(sim)), receiver.accepted_ids()))

    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]


def test_only_the_subscribed_types_of_what_happens_after_the_subscription_are_sent():
    receiver = Receiver()
    sim = simulator(receiver)
    sim.set_time(DEFAULT_START + timedelta(days=6))
    sim.create_webhook(subscription(types=[wire.WEBHOOK_METER_CREATED]))

    step_to_each_push(sim)

    deliveries = sent(sim)
    assert deliveries
    assert {d.event_type for d in deliveries} == {wire.WEBHOOK_METER_CREATED}
    assert min(d.happened_at for d in deliveries) > DEFAULT_START + timedelta(days=6)
    assert len(receiver.calls) == len(deliveries)


def test_each_subscription_gets_its_own_delivery_with_its_own_headers():
    receiver = Receiver()
    sim = simulator(receiver, customers=10)
    first = sim.create_webhook(subscription())
    second = sim.create_webhook(
        subscription(url="https://second.example/hook", types=[wire.WEBHOOK_METER_CREATED])
    )

    step_to_each_push(sim)

    deliveries = sent(sim)
    per_subscription = Counter(d.webhook_id for d in deliveries)
    meters = sum(
        1 for d in deliveries if d.webhook_id == first and d.event_type == wire.WEBHOOK_METER_CREATED
    )
    assert per_subscription[second] == meters > 0
    assert {url for url, *_ in receiver.calls} == {RECEIVER, "https://second.example/hook"}


# --- retries ------------------------------------------------------------------------------------------


def test_a_refused_delivery_is_retried_after_1_then_5_minutes():
    receiver = Receiver(refuse_first=2)
    sim = simulator(receiver, customers=10)
    sim.create_webhook(subscription())

    step_to_each_push(sim)

    for d in sent(sim, END - timedelta(hours=1)):
        assert [(a.at - d.due_at, a.status, a.retry) for a in d.attempts] == [
            (timedelta(0), 500, 0),
            (timedelta(minutes=1), 500, 1),
            (timedelta(minutes=6), 200, 2),
        ]
        assert d.outcome is Outcome.DELIVERED


def test_a_receiver_that_never_accepts_gets_four_attempts_then_the_delivery_failed():
    receiver = Receiver(refuse_first=100)
    sim = simulator(receiver, customers=5)
    sim.create_webhook(subscription())

    step_to_each_push(sim)

    deliveries = sent(sim, END - timedelta(hours=1))
    assert deliveries
    assert all(d.outcome is Outcome.FAILED for d in deliveries)
    assert all(
        [a.at - d.due_at for a in d.attempts] == [timedelta(minutes=m) for m in (0, 1, 6, 36)]
        for d in deliveries
    )


def test_a_retry_goes_with_the_settings_of_the_moment_and_a_deletion_cancels_it():
    receiver = Receiver()  # refuses the old secret (401)
    sim = simulator(receiver, customers=30)
    webhook_id = sim.create_webhook(subscription(secret="old"))
    first = sim.next_webhook_at()
    assert first is not None
    sim.set_time(first)
    [refused] = [d for d in sim.push_due_webhooks() if d.attempts]

    sim.update_webhook(webhook_id, subscription())  # the new secret, before the retry
    sim.set_time(first + timedelta(minutes=1))
    retried = {d.webhook_event_id: d for d in sim.push_due_webhooks()}[refused.webhook_event_id]
    sim.delete_webhook(webhook_id)
    step_to_each_push(sim)

    assert [a.status for a in retried.attempts] == [401, 200]
    assert receiver.calls[-1][1]["x-api-key"] == SECRET
    assert sim.next_webhook_at() is None
    assert all(d.outcome is not Outcome.PENDING for d in sim.webhook_deliveries)


# --- faults -----------------------------------------------------------------------------------------------


def faulty_run(faults: WebhookFaults, customers: int = 60) -> tuple[LeapSimulator, Receiver]:
    receiver = Receiver()
    sim = simulator(receiver, customers=customers, webhook_faults=faults)
    sim.create_webhook(subscription())
    step_to_each_push(sim)
    return sim, receiver


def test_faults_are_off_by_default():
    assert WebhookFaults() == WebhookFaults(duplicate=0, out_of_order=0, missed=0, wrong_secret=0)
    sim, _ = faulty_run(WebhookFaults(), customers=20)
    assert all(not d.faults for d in sent(sim))


def test_a_missed_delivery_is_never_sent_and_the_others_are_sent_once():
    sim, receiver = faulty_run(WebhookFaults(missed=0.3))

    deliveries = sent(sim)
    missed = [d for d in deliveries if d.faults == {WebhookFault.MISSED}]
    assert 0.2 < len(missed) / len(deliveries) < 0.4
    assert all(d.outcome is Outcome.MISSED and not d.attempts for d in missed)
    assert sorted(receiver.accepted_ids()) == sorted(
        d.webhook_event_id for d in deliveries if d not in missed
    )


def test_a_duplicate_is_the_same_event_accepted_again_a_minute_later():
    sim, receiver = faulty_run(WebhookFaults(duplicate=1.0), customers=20)

    for d in sent(sim, END - timedelta(hours=1)):
        first, again = d.attempts
        assert (first.fault, again.fault) == (None, WebhookFault.DUPLICATE)
        assert again.at - first.at == timedelta(minutes=1)
        assert len(d.accepted_attempts()) == 2
        assert d.delivered
    bodies = Counter(json.dumps(body) for _, _, body, _ in receiver.calls)
    assert set(bodies.values()) <= {1, 2}
    assert 2 in bodies.values()  # the same body, twice


def test_a_wrong_secret_comes_first_then_the_real_delivery():
    sim, receiver = faulty_run(WebhookFaults(wrong_secret=1.0), customers=20)

    deliveries = sent(sim)
    for d in deliveries:
        wrong, real = d.attempts
        assert (wrong.fault, wrong.status, real.fault, real.status) == (
            WebhookFault.WRONG_SECRET,
            401,
            None,
            200,
        )
        assert wrong.at == real.at == d.due_at
    wrong_values = {headers["x-api-key"] for _, headers, _, status in receiver.calls if status == 401}
    assert SECRET not in wrong_values
    assert len(receiver.calls) == 2 * len(deliveries)


def test_an_out_of_order_delivery_comes_just_after_the_next_one():
    sim, receiver = faulty_run(WebhookFaults(out_of_order=0.2))

    in_due_order = sent(sim)  # due time, then what happened first
    deliveries = {d.webhook_event_id: d for d in in_due_order}
    order = receiver.accepted_ids()
    assert sorted(order) == sorted(deliveries)  # still each exactly once
    held = [d for d in in_due_order if d.faults]
    assert len(held) > 10
    max_hold = WebhookFaults().max_hold
    for late in held:
        assert late.faults == {WebhookFault.OUT_OF_ORDER}
        assert late.attempts[0].fault is WebhookFault.OUT_OF_ORDER
        following = in_due_order[in_due_order.index(late) + 1 :]
        overtaking = next((d for d in following if not d.faults), None)
        if overtaking is None or overtaking.due_at > late.due_at + max_hold:
            assert late.attempts[0].at == late.due_at + max_hold
            continue
        # Sent right after the next delivery, with nothing in between but other held ones.
        assert late.attempts[0].at == overtaking.due_at
        between = order[order.index(overtaking.webhook_event_id) + 1 : order.index(late.webhook_event_id)]
        assert all(deliveries[event_id].faults for event_id in between)
        assert order.index(overtaking.webhook_event_id) < order.index(late.webhook_event_id)
    inversions = sum(1 for a, b in itertools.pairwise(order) if deliveries[a].due_at > deliveries[b].due_at)
    assert inversions > 5


def test_the_faults_are_drawn_from_the_seed():
    draws = [
        {
            d.webhook_event_id: d.faults
            for d in faulty_run(WebhookFaults(duplicate=0.3, missed=0.3), 20)[0].webhook_deliveries
        }
        for _ in range(2)
    ]
    other_seed = faulty_run(WebhookFaults(duplicate=0.3, missed=0.3, seed=99), 20)[0].webhook_deliveries

    assert draws[0] == draws[1]
    assert {d.webhook_event_id: d.faults for d in other_seed} != draws[0]


def test_invalid_fault_shares_are_refused():
    with pytest.raises(ValueError, match="missed"):
        WebhookFaults(missed=1.5)


# --- what changes the future ------------------------------------------------------------------------------


def test_looking_ahead_changes_nothing_when_customers_are_nudged_and_touched():
    results = []
    for look_ahead in (False, True):
        receiver = Receiver()
        sim = simulator(receiver, customers=80, webhook_faults=WebhookFaults(out_of_order=0.1))
        sim.create_webhook(subscription())
        step_to_each_push(sim, DEFAULT_START + timedelta(days=5))
        if look_ahead:
            sim.next_webhook_at()  # works events out ahead of the clock
        stalled = [r for r in sim.ref_ids if (e := sim.snapshot(r)) and e["connection_status"] != "COMPLETED"]
        told = [sim.message(ref_id, "agreement_pending", "b", sim.now) for ref_id in stalled]
        touched = sim.touch(0.2, random.Random(1))
        step_to_each_push(sim)
        results.append((shape(sent(sim)), receiver.accepted_ids()))
        moved = [t for t in told if t.moved_at is not None]
        assert moved  # some journeys were changed from now on
        touch_events = {
            d.partner_reference
            for d in sent(sim)
            if d.happened_at == DEFAULT_START + timedelta(days=5)
            and d.event_type == wire.WEBHOOK_CONNECT_SESSION_UPDATED
        }
        assert set(touched) <= touch_events

    assert results[0] == results[1]


def test_a_push_ahead_of_the_clock_is_refused():
    sim = simulator(Receiver(), customers=5)

    with pytest.raises(ValueError, match="ahead of the clock"):
        sim.push_due_webhooks(sim.now + timedelta(seconds=1))


# --- the Subscription API over HTTP -------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[LeapSimulator]:
    with simulator(Receiver(), customers=5) as sim:
        yield sim


def call(
    sim: LeapSimulator, method: str, path: str, body: Any = None, key: str | None = None
) -> requests.Response:
    headers = {wire.AUTH_HEADER: f"{wire.AUTH_SCHEME} {key or sim.api_key}"}
    return requests.request(method, f"{sim.base_url}{path}", json=body, headers=headers, timeout=5)


def test_the_api_creates_lists_replaces_and_deletes_with_uuid_ids(served):
    created = call(served, "POST", wire.WEBHOOKS_PATH, subscription())
    webhook_id = created.json()["webhook_id"]
    listed = call(served, "GET", wire.WEBHOOKS_PATH).json()
    replaced = call(
        served, "PUT", wire.webhook_path(webhook_id), {"receiver_url": RECEIVER, "event_types": ALL}
    )
    after_put = call(served, "GET", wire.WEBHOOKS_PATH).json()
    deleted = call(served, "DELETE", wire.webhook_path(webhook_id))

    assert created.status_code == 200
    assert UUID.fullmatch(webhook_id)
    assert listed == {"webhooks": [{"webhook_id": webhook_id, **subscription()}]}
    assert replaced.json() == {"webhook_id": webhook_id}
    assert after_put["webhooks"][0]["headers"] == []  # PUT replaced every setting
    assert deleted.status_code == 200
    assert "message" in deleted.json()
    assert call(served, "GET", wire.WEBHOOKS_PATH).json() == {"webhooks": []}


def test_ids_are_seeded():
    ids = []
    for seed in (3, 3, 4):
        sim = simulator(Receiver(), seed=seed, customers=5)
        ids.append(sim.create_webhook(subscription()))
    assert ids[0] == ids[1] != ids[2]


def test_the_api_wants_the_key_and_answers_in_its_error_shape(served):
    answer = call(served, "GET", wire.WEBHOOKS_PATH, key="wrong")

    assert answer.status_code == 401
    assert set(answer.json()) == {"error", "message"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not an object", "JSON object"),
        ({"event_types": ALL}, "receiver_url is required"),
        ({**subscription(), "receiver_url": "ftp://x.example/"}, "http(s) URL"),
        ({**subscription(), "event_types": []}, "non-empty list"),
        ({**subscription(), "event_types": ["meter.deleted"]}, "unknown event type"),
        ({**subscription(), "event_types": ["meter.created", "meter.created"]}, "each event type once"),
        ({**subscription(), "headers": [{"name": "x-api-key"}]}, "headers[0]"),
        ({**subscription(), "headers": [{"name": "x-api-key", "value": "a\r\nb"}]}, "headers[0]"),
        ({**subscription(), "headers": [{"name": "bad name", "value": "v"}]}, "headers[0]"),
        ({**subscription(), "secret": "x"}, "unknown field"),
    ],
    ids=[
        "not-object",
        "no-url",
        "not-http",
        "no-types",
        "unknown-type",
        "twice",
        "no-value",
        "crlf",
        "name",
        "field",
    ],
)
def test_an_invalid_body_is_400_saying_what(served, body: Any, says: str):
    answer = call(served, "POST", wire.WEBHOOKS_PATH, body)

    assert answer.status_code == 400
    assert says in answer.json()["message"]
    assert served.webhook_subscriptions == []


def test_an_unknown_id_is_404_and_a_wrong_method_405(served):
    unknown = "9f0c2a52-7f55-4b55-9e1f-3c1f3f6f4a10"
    webhook_id = call(served, "POST", wire.WEBHOOKS_PATH, subscription()).json()["webhook_id"]

    assert call(served, "PUT", wire.webhook_path(unknown), subscription()).status_code == 404
    assert call(served, "DELETE", wire.webhook_path(unknown)).status_code == 404
    assert (
        call(
            served, "POST", wire.webhook_test_path(unknown), {"webhook_event_type": "meter.created"}
        ).status_code
        == 404
    )
    assert call(served, "GET", wire.webhook_path(webhook_id)).status_code == 405
    assert call(served, "DELETE", wire.WEBHOOKS_PATH).status_code == 405
    assert call(served, "POST", wire.webhook_test_path(webhook_id), {"no": "type"}).status_code == 400
    assert call(served, "GET", f"{wire.WEBHOOKS_PATH}/{webhook_id}/other").status_code == 404


class _Endpoint(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_the_test_endpoint_posts_with_requests_by_default_and_reports_no_answer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Endpoint.received = []
    try:
        with LeapSimulator(seed=1, customers=5) as sim:  # the default transport
            url = f"http://127.0.0.1:{server.server_address[1]}/webhooks"
            webhook_id = call(sim, "POST", wire.WEBHOOKS_PATH, subscription(url=url)).json()["webhook_id"]
            payload = {
                "webhook_event_type": "meter.created",
                "meter_id": "m",
                "partner_reference": "ref-test",
            }
            answer = call(sim, "POST", wire.webhook_test_path(webhook_id), payload).json()
            server.shutdown()
            server.server_close()
            gone = call(sim, "POST", wire.webhook_test_path(webhook_id), payload).json()
            tests = sim.webhook_tests
    finally:
        server.server_close()

    assert (answer["is_successful"], answer["status_code"], answer["error"]) == (True, 202, None)
    [(headers, body)] = _Endpoint.received
    assert headers["x-api-key"] == SECRET
    assert json.loads(body)["payload"] == payload
    assert UUID.fullmatch(json.loads(body)["webhook_event_id"])
    assert (gone["is_successful"], gone["status_code"]) == (False, None)
    assert "did not answer" in gone["error"]
    assert [t.status for t in tests] == [202, 0]
