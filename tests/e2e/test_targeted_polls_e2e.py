"""Targeted polls end to end (docs/webhooks.md#targeted-polls): a poll request, as the webhook processor
sends it for a Connect-session webhook (``SqsPollRequests.request``), through PollRequestQueue and the
poller's event source mapping, to a ref_id poll of the Leap simulator, the table, the stream, the
emitter and a partner's queue: minutes after the request, not at the next hourly poll. A burst of
requests is two polls; a poll Leap keeps failing ends in the dead-letter queue its alarm watches.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from devtools.leap_simulator import LeapSimulator, server_error
from devtools.local_runner import LocalCloud
from leap_tracker import table
from leap_tracker.adapters.poll_requests import SqsPollRequests
from leap_tracker.config import TargetedPollSettings
from leap_tracker.events.diff import change_events
from leap_tracker.leap import wire
from tests.builders import guide_entry
from tests.e2e.support import emitted
from tests.fakes.lambda_runtime import printed

REF_ID = "Webhook-Customer-1"
TIMING = TargetedPollSettings()
SOON = timedelta(seconds=TIMING.delay_seconds)
AFTER_REFRESH = timedelta(seconds=TIMING.refresh_seconds)
REQUESTS = "PollRequestQueue"
DEAD_LETTERS = "PollRequestDeadLetterQueue"


def polls_of(leap: LeapSimulator, ref_id: str) -> list[datetime]:
    """When the simulator was asked for this Reference ID's entries (one per ref_id poll)."""
    name = wire.DEFAULT_CONNECT_WIRE.param_ref_id
    return [request.at for request in leap.request_log if request.query.get(name) == [ref_id]]


def requests_on(cloud: LocalCloud) -> SqsPollRequests:
    """What the webhook processor builds: SqsPollRequests(sqs_client, queue_url)."""
    return SqsPollRequests(cloud.client("sqs"), cloud.resources.queue_url(REQUESTS))


def messages_in(cloud: LocalCloud, queue: str) -> int:
    attributes = cloud.client("sqs").get_queue_attributes(
        QueueUrl=cloud.resources.queue_url(queue),
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def checkpoint_item(cloud: LocalCloud) -> dict[str, Any] | None:
    key = {table.PK: {"S": table.POLLER_PK}, table.SK: {"S": table.CHECKPOINT_SK}}
    answer = cloud.client("dynamodb").get_item(
        TableName=cloud.resources.table_name("ConnectionsTable"), Key=key, ConsistentRead=True
    )
    return answer.get("Item")


def advance_to(cloud: LocalCloud, moment: datetime) -> None:
    cloud.advance(seconds=(moment - cloud.now()).total_seconds())
    cloud.drain()


# moto makes a message whose visibility timeout ends now visible only once the clock is past it.
TICK = timedelta(seconds=1)


@pytest.fixture
def partner(cloud: LocalCloud, leap: LeapSimulator) -> str:
    """A partner queue on every event, after the first hourly poll stored the population (and
    REF_ID, a customer stalled on their utility login); the queue is empty from here on."""
    leap.put_entry(guide_entry(REF_ID, last=cloud.now() - timedelta(hours=3)))
    queue = cloud.subscribe_queue("EventsTopic")
    cloud.fire_schedule("PollerFunction")
    cloud.drain()
    baseline = emitted(cloud.drain_queue(queue))
    first_seen = [e["type"] for e in baseline if e["data"]["connection"][wire.ENTRY_REF_ID] == REF_ID]
    assert first_seen[:1] == ["connection.started"]
    cloud.advance(minutes=10)
    return queue


def test_a_change_reaches_the_partner_minutes_after_the_request_not_at_the_next_poll(
    cloud: LocalCloud, leap: LeapSimulator, partner: str
) -> None:
    before = leap.snapshot(REF_ID)
    assert before is not None
    after = guide_entry(
        REF_ID, status=wire.CONNECTION_COMPLETED, utility_status=wire.UTILITY_CONNECTED, last=cloud.now()
    )
    leap.put_entry(after)  # the customer completed; Leap's webhook says so at once
    checkpoint = checkpoint_item(cloud)
    requested_at = cloud.now()
    polls_before = len(polls_of(leap, REF_ID))

    requests_on(cloud).request(REF_ID, requested_at)
    advance_to(cloud, requested_at + SOON - timedelta(seconds=1))
    assert len(polls_of(leap, REF_ID)) == polls_before  # debounced: not yet
    assert emitted(cloud.drain_queue(partner)) == []

    advance_to(cloud, requested_at + SOON)
    received = emitted(cloud.drain_queue(partner))
    expected = change_events(before, after, sequence=2)
    assert {e["type"] for e in expected} >= {"connection.completed"}
    assert received == expected  # its events, two minutes after the request
    assert polls_of(leap, REF_ID)[polls_before:] == [requested_at + SOON]
    assert checkpoint_item(cloud) == checkpoint  # the hourly passes' checkpoint did not move
    assert [r.source for r in cloud.invocations if r.function == "PollerFunction"][-1] == "sqs"

    # Once more after Leap's hourly refresh (it finds nothing new), and then never again.
    advance_to(cloud, requested_at + SOON + AFTER_REFRESH + TICK)
    soon, *refresh = polls_of(leap, REF_ID)[polls_before:]
    assert refresh == [soon + AFTER_REFRESH + TICK]
    advance_to(cloud, requested_at + timedelta(hours=6))
    assert len(polls_of(leap, REF_ID)) == polls_before + 2
    assert emitted(cloud.drain_queue(partner)) == []
    assert messages_in(cloud, REQUESTS) == 0
    assert not [r for r in cloud.invocations if r.function == "PollerFunction" and r.failed]


def test_a_burst_of_ten_requests_is_two_polls(cloud: LocalCloud, leap: LeapSimulator, partner: str) -> None:
    leap.put_entry(guide_entry(REF_ID, status=wire.CONNECTION_ERROR, last=cloud.now()))
    first = cloud.now()
    polls_before = len(polls_of(leap, REF_ID))
    requests = requests_on(cloud)
    for n in range(10):  # ten webhooks of one customer over a minute and a half
        advance_to(cloud, first + timedelta(seconds=10 * n))
        requests.request(REF_ID, cloud.now())

    advance_to(cloud, first + SOON)
    assert [e["type"] for e in emitted(cloud.drain_queue(partner))] == ["connection.error"]
    for _ in range(10):  # the other nine come due, each covered by that poll, then all converge
        advance_to(cloud, cloud.now() + timedelta(seconds=10))
    advance_to(cloud, first + SOON + AFTER_REFRESH + TICK)
    advance_to(cloud, first + timedelta(hours=3))

    assert polls_of(leap, REF_ID)[polls_before:] == [first + SOON, first + SOON + AFTER_REFRESH + TICK]
    assert messages_in(cloud, REQUESTS) == 0
    assert messages_in(cloud, DEAD_LETTERS) == 0
    assert emitted(cloud.drain_queue(partner)) == []  # the second poll found nothing new


def test_a_poll_leap_keeps_failing_is_retried_then_dead_lettered_and_alarms(
    cloud: LocalCloud, leap: LeapSimulator, partner: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.set_env("PollerFunction", LEAP_BACKOFF_FACTOR="0.001", LEAP_MAX_RETRIES="1")
    leap.inject(server_error(), times=None)
    requested_at = cloud.now()
    requests_on(cloud).request(REF_ID, requested_at)
    capsys.readouterr()

    advance_to(cloud, requested_at + SOON)
    for _ in range(8):  # one visibility timeout (960 s) apart; the 9th receive dead-letters it
        advance_to(cloud, cloud.now() + timedelta(seconds=960) + TICK)

    attempts = [r for r in cloud.invocations if r.function == "PollerFunction" and r.source == "sqs"]
    assert len(attempts) == 8  # PollRequestQueue's maxReceiveCount
    assert all(len(r.result["batchItemFailures"]) == 1 and not r.failed for r in attempts)  # a partial batch
    assert messages_in(cloud, REQUESTS) == 0
    assert messages_in(cloud, DEAD_LETTERS) == 1
    _, lines = printed(capsys)
    assert [line["TargetedPollsFailed"] for line in lines if "TargetedPollsFailed" in line] == [[1.0]] * 8
    assert REF_ID not in "".join(str(line) for line in lines)  # only its pseudonym is logged

    [alarm] = [e for e in cloud.evaluate_alarms() if DEAD_LETTERS in e.queue]
    assert alarm.state == "ALARM"
