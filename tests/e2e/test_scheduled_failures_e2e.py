"""Scheduled runs that cannot do their work fail where the platform counts and retries them.

Through the local runner, as deployed: EventBridge Scheduler invokes asynchronously, Lambda retries a
failed invocation twice (1, then 2 minutes later) and then sends it to the template's
``EventInvokeConfig`` on-failure destination, the ``ScheduledRunFailureQueue``. A failure returned as
data instead would be a successful invocation: no error counted, no retry, nothing in that queue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from devtools.leap_simulator import LeapSimulator, http_error, server_error, slow
from devtools.local_runner import LocalCloud, PartnerMessage
from leap_tracker import table
from leap_tracker.adapters.poller_store import checkpoint_from_item
from leap_tracker.adapters.watch_store import item_from_watch
from leap_tracker.config import MeterWatchSettings
from leap_tracker.leap import wire
from leap_tracker.meters import schedule
from tests.e2e.support import put_items

FAILURES = "ScheduledRunFailureQueue"
PAGE_SIZE = 10  # the simulated customers in several pages
# Test-sized Leap client: the retries still happen, without seconds of real backoff.
FAST_LEAP = {"LEAP_BACKOFF_FACTOR": "0.001", "LEAP_MAX_RETRIES": "2", "LEAP_PAGE_SIZE": str(PAGE_SIZE)}


def acknowledge(_event: Any, _context: Any) -> dict[str, list[Any]]:
    return {"batchItemFailures": []}


def prepared(cloud: LocalCloud) -> LocalCloud:
    cloud.set_env(**FAST_LEAP)
    # Downstream of the table is not under test: its subscribers acknowledge and do nothing.
    cloud.override_handler("EmitterFunction", acknowledge)
    return cloud


def run_the_async_retries(cloud: LocalCloud) -> None:
    """What Lambda does after a failed asynchronous invocation: retry 1 and 3 minutes later."""
    cloud.drain()
    cloud.advance(minutes=1)
    cloud.drain()
    cloud.advance(minutes=2)
    cloud.drain()


def attempts(cloud: LocalCloud, function: str) -> list[Any]:
    return [record for record in cloud.invocations if record.function == function]


def the_one_failure(cloud: LocalCloud) -> PartnerMessage:
    [failure] = cloud.drain_queue(FAILURES)
    context = failure.body["requestContext"]
    assert (context["condition"], context["approximateInvokeCount"]) == ("RetriesExhausted", 3)
    return failure


def checkpoint(cloud: LocalCloud) -> Any:
    key = {table.PK: {"S": table.POLLER_PK}, table.SK: {"S": table.CHECKPOINT_SK}}
    item = cloud.client("dynamodb").get_item(
        TableName=cloud.resources.table_name("ConnectionsTable"), Key=key, ConsistentRead=True
    )
    return checkpoint_from_item(item["Item"])


def stored_connections(cloud: LocalCloud) -> int:
    pages = (
        cloud.client("dynamodb")
        .get_paginator("scan")
        .paginate(TableName=cloud.resources.table_name("ConnectionsTable"))
    )
    return sum(
        1
        for page in pages
        for item in page["Items"]
        if item[table.PK]["S"].startswith(table.CONNECTION_PREFIX)
    )


# --- the poller -------------------------------------------------------------------------------------


def test_a_poll_leap_answers_500_on_every_retry_ends_in_the_failure_queue(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    prepared(cloud)
    leap.inject(server_error(), times=None)

    first = cloud.fire_schedule("PollerFunction")
    run_the_async_retries(cloud)

    assert first.failed
    assert [record.failed for record in attempts(cloud, "PollerFunction")] == [True, True, True]
    failure = the_one_failure(cloud)
    assert failure.body["requestPayload"] == {"mode": "scheduled"}
    assert failure.body["responsePayload"]["errorType"] == "PollFailed"
    assert "Leap still answered 500 when retries ran out" in failure.body["responsePayload"]["errorMessage"]
    assert cloud.dropped_async_events == []


def test_a_poll_leap_refuses_the_key_for_ends_in_the_failure_queue(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    prepared(cloud)
    leap.inject(http_error(401), times=None)

    cloud.fire_schedule("PollerFunction")
    run_the_async_retries(cloud)

    failure = the_one_failure(cloud)
    assert failure.body["responsePayload"]["errorType"] == "PollFailed"
    assert "Leap rejected the API key (401)" in failure.body["responsePayload"]["errorMessage"]
    assert stored_connections(cloud) == 0


def test_a_poll_that_failed_on_page_3_is_resumed_there_by_lambdas_retry(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    prepared(cloud)
    cloud.advance(days=20)  # every simulated customer has clicked
    visible = len(leap.entries_at())
    pages = -(-visible // PAGE_SIZE)
    assert pages > 3
    leap.inject(slow(0), times=2)  # the first two pages are answered normally (first armed, first used)
    leap.inject(server_error(), times=None)  # then page 3 and all its retries get 500

    first = cloud.fire_schedule("PollerFunction")
    assert first.failed
    assert stored_connections(cloud) == 2 * PAGE_SIZE
    pending = checkpoint(cloud).pending
    assert pending is not None
    assert pending.pages_done == 2

    leap.clear_faults()  # Leap recovers before Lambda's first retry
    run_the_async_retries(cloud)

    [failed, retry] = attempts(cloud, "PollerFunction")
    assert failed is first
    assert (retry.source, retry.failed) == ("async-retry", False)
    assert retry.result["resumed"] is True
    assert (retry.result["status"], retry.result["pages"], retry.result["pass_pages_done"]) == (
        "completed",
        pages - 2,
        pages,
    )
    assert retry.result["changed"] == visible - 2 * PAGE_SIZE  # the first two pages are not rewritten
    assert stored_connections(cloud) == visible
    assert checkpoint(cloud).pending is None
    assert cloud.drain_queue(FAILURES) == []


# --- the meter sweep --------------------------------------------------------------------------------


def test_a_sweep_leap_answers_500_on_every_retry_ends_in_the_failure_queue(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    prepared(cloud)
    now = cloud.advance(days=3)
    watches = [
        schedule.new_watch(
            entry_id=f"CAISO_{n:04d}_{ref}",
            ref_id=ref,
            transmission_region="CAISO",
            completed_at=now - timedelta(days=2),
            sequence=2,
            now=now - timedelta(days=2),
            settings=MeterWatchSettings(),
        )
        for n, ref in enumerate(leap.ref_ids[:5])
    ]
    connections = [
        {**table.connection_key(w.entry_id), table.ITEM_TYPE: table.CONNECTION_ITEM_TYPE} for w in watches
    ]
    put_items(cloud, [item_from_watch(w) for w in watches] + connections)
    leap.inject(server_error(), times=None, path=wire.METERS_SEARCH_PATH)

    first = cloud.fire_schedule("MeterSweepFunction")
    run_the_async_retries(cloud)

    assert first.failed
    assert [record.failed for record in attempts(cloud, "MeterSweepFunction")] == [True, True, True]
    failure = the_one_failure(cloud)
    assert failure.body["requestPayload"]["scheduled_time"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert failure.body["responsePayload"]["errorType"] == "SweepIncomplete"
    assert "Leap still answered 500" in failure.body["responsePayload"]["errorMessage"]
    assert leap.requests[wire.METERS_SEARCH_PATH] == 3 * 3  # each attempt: the request and 2 retries
