"""A pass the time limit cuts short goes on in a new invocation at once (docs/poller.md#continuation),
through the local runner from template.yaml: the poller invokes itself (its role's
PollerSelfInvokePolicy), Lambda queues the event, the next round runs it at the same simulated minute,
and the pass completes with every entry stored once and no page read twice. A pass whose page token
Leap refuses on the way finishes from the newest start date it read, not from its first page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud
from leap_tracker.config import PollerSettings
from leap_tracker.leap import wire
from tests.e2e.conftest import E2E_SEED, E2E_START, TEMPLATE
from tests.fakes.dynamodb import stored_connections
from tests.fakes.poller import PageBudget

CUSTOMERS = 60
PAGE_SIZE = 10  # six pages
POLLER = "PollerFunction"
NAMES = wire.DEFAULT_CONNECT_WIRE


@pytest.fixture
def leap() -> Iterator[LeapSimulator]:
    with LeapSimulator(
        seed=E2E_SEED, customers=CUSTOMERS, start=E2E_START, listing_order="start_date"
    ) as sim:
        sim.advance(days=20)  # every customer has clicked
        yield sim


@pytest.fixture
def cloud(leap: LeapSimulator) -> Iterator[LocalCloud]:
    with LocalCloud(
        TEMPLATE,
        start=leap.now,
        parameters={"LeapApiBaseUrl": leap.base_url},
        secrets={"LeapApiKeySecretArn": leap.api_key},
    ) as local:
        local.set_env(POLLER, LEAP_PAGE_SIZE=str(PAGE_SIZE))
        yield local


def connect_requests(leap: LeapSimulator) -> list[dict[str, list[str]]]:
    return [request.query for request in leap.request_log if request.path == NAMES.path]


def runs_of(cloud: LocalCloud) -> list:  # type: ignore[type-arg]
    return [record for record in cloud.invocations if record.function == POLLER]


def first_run_cut_after(cloud: LocalCloud, pages: int) -> None:
    """The scheduled run, with time for ``pages`` page checks, then the time limit; later runs have time."""
    budget = PageBudget(pages)
    cloud.set_remaining_time(POLLER, lambda: 900_000 if budget() else 0)
    cloud.fire_schedule(POLLER)
    cloud.set_remaining_time(POLLER, None)


def stored_sequences(cloud: LocalCloud) -> list[int]:
    stored = stored_connections(cloud.client("dynamodb"), cloud.resources.table_name("ConnectionsTable"))
    return sorted(int(item["sequence"]["N"]) for item in stored.values())


def test_a_pass_cut_by_the_time_limit_goes_on_at_once_in_the_next_invocation(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    first_run_cut_after(cloud, pages=3)
    first = runs_of(cloud)[-1].result
    assert first["status"] == "interrupted"
    assert (first["pages"], first["continued_by"]) == (3, 1)
    assert [sent[1:] for sent in cloud.function_invokes.sent] == [
        (POLLER, {"mode": "scheduled", "continuation": 1})
    ]

    cloud.drain()
    first_run, second_run = runs_of(cloud)
    assert second_run.source == "async"
    assert second_run.at - first_run.at <= timedelta(minutes=1)  # not at the next hourly run
    second = second_run.result
    assert second["status"] == "completed"
    assert (second["continuation"], second["resumed"], second["pages"]) == (1, True, 3)
    assert second["pass_pages_done"] == 6
    assert len(connect_requests(leap)) == 6  # no page read twice
    assert stored_sequences(cloud) == [1] * CUSTOMERS  # every entry, written once
    assert len(cloud.function_invokes.sent) == 1  # the completed pass asks for nothing more


def test_a_pass_whose_token_expired_mid_way_finishes_without_reading_from_the_start_again(
    cloud: LocalCloud, leap: LeapSimulator
) -> None:
    first_run_cut_after(cloud, pages=3)
    read_first = connect_requests(leap)
    assert len(read_first) == 3
    leap.expire_page_tokens()  # Leap refuses every token issued so far

    cloud.drain()
    second = runs_of(cloud)[-1].result
    assert second["status"] == "completed"
    assert second["token_restarts"] == 1
    later = connect_requests(leap)[3:]
    refused, *rest = later
    assert refused.get(NAMES.param_page_token)  # the stored token, refused
    start = PollerSettings().full_reconciliation_start
    assert all(query[NAMES.param_start_date] != [start] for query in rest)  # never page one again
    boundary = rest[0][NAMES.param_start_date][0]
    assert boundary > start
    assert len(rest) <= 4  # the 30 entries after the first 3 pages (and those at the boundary again)
    assert stored_sequences(cloud) == [1] * CUSTOMERS  # every entry, written once


class OnePageARun:
    """A remaining time with room for one page check in each poller run, then the time limit."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.checks: dict[int, int] = {}

    def __call__(self) -> int:
        run = len(runs_of(self.cloud))  # the runs finished so far: this one is the next
        self.checks[run] = self.checks.get(run, 0) + 1
        return 900_000 if self.checks[run] == 1 else 0


def test_a_continuation_chain_is_bounded(cloud: LocalCloud, leap: LeapSimulator) -> None:
    cloud.set_env(POLLER, POLLER_MAX_CONTINUATIONS="2")
    cloud.set_remaining_time(POLLER, OnePageARun(cloud))
    cloud.fire_schedule(POLLER)
    cloud.drain()
    results = [record.result for record in runs_of(cloud)]
    assert [r["continuation"] for r in results] == [0, 1, 2]
    assert [r.get("continued_by") for r in results] == [1, 2, None]  # the third does not continue
    assert all(r["status"] == "interrupted" and r["pages"] == 1 for r in results)
    assert len(connect_requests(leap)) == 3  # the next scheduled run takes the pass up
