"""The Webhook Subscription API client (adapters/leap_webhooks.py) against the simulator (a real server
on 127.0.0.1), and against canned answers for the shapes the simulator never sends."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from devtools.leap_simulator import LeapSimulator, http_error, rate_limited, server_error
from leap_tracker.adapters.leap_webhooks import (
    LeapWebhookNotFound,
    LeapWebhookRequestError,
    LeapWebhooksClient,
    WebhookHeader,
)
from leap_tracker.config import LeapApiSettings
from leap_tracker.leap import wire
from leap_tracker.leap.api import LeapAuthError, LeapInvalidResponse, LeapUnavailable
from tests.fakes.leap import CANNED_BASE_URL, canned_session, fast_leap_settings

RECEIVER = "https://abc123.lambda-url.us-east-1.on.aws/"
SECRET = WebhookHeader("x-api-key", "the-stack-secret")
ALL_TYPES = wire.WEBHOOK_EVENT_TYPES
SAMPLE = {
    wire.WEBHOOK_EVENT_TYPE: wire.WEBHOOK_METER_CREATED,
    wire.WEBHOOK_METER_ID: "00000000-0000-4000-8000-000000000000",
    wire.WEBHOOK_PARTNER_REFERENCE: "leap-tracker-webhooks-test",
    wire.WEBHOOK_TRANSMISSION_REGION: "CAISO",
}


class Receiver:
    """The simulator's transport: records what Leap sent, answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        self.calls.append((url, dict(headers), json.loads(body)))
        return self.status


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[LeapSimulator]:
    with LeapSimulator(seed=5, customers=20, webhook_transport=receiver) as simulator:
        yield simulator


@pytest.fixture
def leap(sim: LeapSimulator) -> Iterator[LeapWebhooksClient]:
    with LeapWebhooksClient(fast_leap_settings(sim)) as client:
        yield client


def test_a_subscription_is_created_listed_replaced_and_deleted(sim, leap):
    webhook_id = leap.create(RECEIVER, ALL_TYPES, [SECRET])
    [listed] = leap.subscriptions()

    assert (listed.webhook_id, listed.receiver_url, listed.event_types) == (webhook_id, RECEIVER, ALL_TYPES)
    assert listed.headers == (SECRET,)

    new_url = "https://other.lambda-url.us-east-1.on.aws/"
    assert leap.update(webhook_id, new_url, [wire.WEBHOOK_METER_CREATED], []) == webhook_id
    [replaced] = leap.subscriptions()
    # PUT replaces every setting: the header not sent again is gone.
    assert (replaced.receiver_url, replaced.event_types, replaced.headers) == (
        new_url,
        (wire.WEBHOOK_METER_CREATED,),
        (),
    )

    assert "deleted" in leap.delete(webhook_id)
    assert leap.subscriptions() == []
    assert [(r.method, r.path) for r in sim.request_log] == [
        ("POST", wire.WEBHOOKS_PATH),
        ("GET", wire.WEBHOOKS_PATH),
        ("PUT", wire.webhook_path(webhook_id)),
        ("GET", wire.WEBHOOKS_PATH),
        ("DELETE", wire.webhook_path(webhook_id)),
        ("GET", wire.WEBHOOKS_PATH),
    ]


def test_the_request_bodies_are_the_apis_names(sim, leap):
    leap.create(RECEIVER, [wire.WEBHOOK_METER_CREATED, wire.WEBHOOK_METER_CREATED], [SECRET])

    assert sim.request_log[-1].body == {
        "receiver_url": RECEIVER,
        "event_types": ["meter.created"],  # each type once
        "headers": [{"name": "x-api-key", "value": "the-stack-secret"}],
    }


def test_an_unknown_id_is_not_found_on_every_call(leap):
    unknown = "9f0c2a52-7f55-4b55-9e1f-3c1f3f6f4a10"

    for call, args in (
        (leap.update, (unknown, RECEIVER, ALL_TYPES, [])),
        (leap.delete, (unknown,)),
        (leap.send_test, (unknown, SAMPLE)),
    ):
        with pytest.raises(LeapWebhookNotFound) as caught:
            call(*args)
        assert caught.value.status == 404
        assert unknown in str(caught.value)


def test_a_body_leap_refuses_is_a_request_error_with_leaps_message(leap):
    with pytest.raises(LeapWebhookRequestError) as caught:
        leap.create(RECEIVER, ["meter.deleted"], [])

    assert caught.value.status == 400
    assert "unknown event type" in str(caught.value.message)
    assert not isinstance(caught.value, LeapWebhookNotFound)


def test_a_refused_key_is_fatal_and_names_the_environment(sim):
    with (
        LeapWebhooksClient(fast_leap_settings(sim, api_key="not-the-key")) as client,
        pytest.raises(LeapAuthError) as caught,
    ):
        client.subscriptions()

    assert f"the Leap environment at {sim.base_url}" in str(caught.value)
    assert "LEAP_API_KEY" in str(caught.value)
    assert sim.requests[wire.WEBHOOKS_PATH] == 1  # never retried


def test_403_names_production_and_the_secret_variable():
    session, adapter = canned_session(403, {"error": "Forbidden", "message": "no"})
    settings = LeapApiSettings(base_url=wire.PRODUCTION_BASE_URL, api_key_secret_arn="arn:aws:secret")
    # The canned host stands in for production's: mount it there.
    session.mount(wire.PRODUCTION_BASE_URL, adapter)
    client = LeapWebhooksClient(settings, key_provider=lambda: "k", session=session)

    with pytest.raises(LeapAuthError, match=r"production environment .*LEAP_API_KEY_SECRET_ARN"):
        client.subscriptions()


def test_reads_and_replacements_are_retried_with_the_layers_policy(sim, leap):
    webhook_id = leap.create(RECEIVER, ALL_TYPES, [SECRET])
    sim.inject(server_error(), times=2, path=wire.WEBHOOKS_PATH)
    sim.inject(rate_limited(retry_after_seconds=0), times=1, path=wire.webhook_path(webhook_id))
    sim.reset_requests()

    assert [s.webhook_id for s in leap.subscriptions()] == [webhook_id]
    assert leap.update(webhook_id, RECEIVER, ALL_TYPES, [SECRET]) == webhook_id
    assert sim.requests == {wire.WEBHOOKS_PATH: 3, wire.webhook_path(webhook_id): 2}


def test_a_create_is_not_retried_so_it_can_never_make_two(sim, leap):
    sim.inject(http_error(503), times=1, path=wire.WEBHOOKS_PATH)

    with pytest.raises(LeapUnavailable, match="503"):
        leap.create(RECEIVER, ALL_TYPES, [SECRET])

    assert sim.requests[wire.WEBHOOKS_PATH] == 1
    assert sim.webhook_subscriptions == []


def test_a_test_reports_what_the_receiver_answered(sim, leap, receiver):
    webhook_id = leap.create(RECEIVER, ALL_TYPES, [SECRET])

    accepted = leap.send_test(webhook_id, SAMPLE)
    receiver.status = 401
    refused = leap.send_test(webhook_id, SAMPLE)

    assert (accepted.is_successful, accepted.status_code, accepted.error) == (True, 200, None)
    assert accepted.response_time_ms is not None
    assert (refused.is_successful, refused.status_code) == (False, 401)
    assert "401" in str(refused.error)
    [(url, headers, body), _] = receiver.calls
    assert (url, headers["x-api-key"], body["payload"]) == (RECEIVER, "the-stack-secret", SAMPLE)
    assert set(body) == {"webhook_event_id", "payload"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"webhooks": "none"}, "not a list"),
        ({"webhooks": [{"receiver_url": RECEIVER}]}, "lacks its webhook_id"),
        (
            {"webhooks": [{"webhook_id": "w", "receiver_url": RECEIVER, "event_types": "meter.created"}]},
            "event_types",
        ),
        (["not", "an", "object"], "not a JSON object"),
        (b"<html>", "not JSON"),
    ],
    ids=["list-not-a-list", "no-id", "types-not-a-list", "not-an-object", "not-json"],
)
def test_a_list_answer_of_another_shape_is_an_invalid_response(body: Any, says: str):
    session, _ = canned_session(200, body)
    client = LeapWebhooksClient(LeapApiSettings(base_url=CANNED_BASE_URL, api_key="k"), session=session)

    with pytest.raises(LeapInvalidResponse, match=says):
        client.subscriptions()


def test_the_key_goes_as_a_bearer_header_with_the_settings_timeouts():
    session, adapter = canned_session(200, {"webhook_id": "w-1"})
    settings = LeapApiSettings(
        base_url=CANNED_BASE_URL, api_key="k-9", connect_timeout_seconds=1.5, read_timeout_seconds=7.0
    )

    assert LeapWebhooksClient(settings, session=session).create(RECEIVER, ALL_TYPES, []) == "w-1"

    [(request, options)] = adapter.requests
    assert request.headers[wire.AUTH_HEADER] == "Bearer k-9"
    assert options["timeout"] == (1.5, 7.0)
    assert "k-9" not in repr(LeapWebhooksClient(settings, session=session))
