"""A poller run over fakes: lease, pagination, checkpoints, interruption, errors, and the metrics
the handler makes of its summary."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest

from functions.poller.app import run_metrics
from leap_tracker import table
from leap_tracker.config import PollerSettings
from leap_tracker.leap import wire
from leap_tracker.leap.api import (
    ConnectQuery,
    LeapAuthError,
    LeapPageTokenExpired,
    LeapRequestError,
    LeapUnavailable,
)
from leap_tracker.poller.ports import LeaseUse, PassKind
from leap_tracker.poller.request import PollMode, PollRequest
from leap_tracker.poller.run import PollEnvironment, PollFailed, RunStatus, RunSummary, run_poll
from tests.builders import T0, guide_entries, guide_entry, pages_of
from tests.fakes.leap import FakeSource
from tests.fakes.log_key import PSEUDONYMS
from tests.fakes.poller import FakeClock, MemoryStore, PageBudget

SETTINGS = PollerSettings()
EVERY_PAGE = PollerSettings(checkpoint_every_pages=1)  # a checkpoint after each page
SCHEDULED = PollRequest(PollMode.SCHEDULED)
METRIC_NAMES = {
    "EntriesSeen",
    "EntriesChanged",
    "EntriesInvalid",
    "UnknownEnumValues",
    "LeapApiLatency",
    "LeapRetries",
    "PollInterrupted",
}


class Harness:
    def __init__(self, pages: list[list[dict]]) -> None:
        self.source = FakeSource(pages)
        self.store = MemoryStore()
        self.metrics: dict[str, Any] = {}  # the handler's metrics of the last run (also a failed one)
        self.clock = FakeClock()
        self.runs = 0
        self.elapsed = 0.0  # the run's monotonic clock: moved by its sleeps only
        self.sleeps: list[float] = []
        self.on_sleep: Any = None  # called after each sleep (e.g. the holder releases the lease)

    def run(
        self,
        request: PollRequest = SCHEDULED,
        remaining: PageBudget | None = None,
        settings: PollerSettings = SETTINGS,
    ) -> RunSummary:
        self.runs += 1
        self.metrics = {}
        env = PollEnvironment(
            source=self.source,
            store=self.store,
            now=self.clock,
            remaining_ms=remaining or PageBudget(1000),
            pseudonyms=PSEUDONYMS,
            monotonic=lambda: self.elapsed,
            sleep=self._sleep,
        )
        try:
            summary = run_poll(request, f"run-{self.runs}", env, settings)
        except PollFailed as failed:
            self.metrics = run_metrics(failed.summary)
            raise
        self.metrics = run_metrics(summary)
        return summary

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


ENTRIES = guide_entries(25)


@pytest.fixture
def harness() -> Harness:
    return Harness(pages_of(ENTRIES, 10))


def test_a_first_poll_stores_every_entry_and_completes_a_full_pass(harness: Harness) -> None:
    summary = harness.run()
    assert summary.status is RunStatus.COMPLETED
    assert (summary.pass_kind, summary.pages, summary.entries_seen, summary.changed) == ("full", 3, 25, 25)
    assert sorted(harness.store.written) == sorted((e[wire.ENTRY_ID], 1) for e in ENTRIES)
    checkpoint = harness.store.checkpoint
    assert checkpoint.pending is None
    assert checkpoint.watermark == T0 - timedelta(hours=2) + timedelta(seconds=24)
    assert checkpoint.last_full_started_at == T0
    assert harness.store.lease is None
    assert set(harness.metrics) >= METRIC_NAMES
    assert harness.metrics["EntriesChanged"] == 25
    assert len(harness.metrics["LeapApiLatency"]) == 3


def test_a_second_poll_with_nothing_changed_writes_nothing(harness: Harness) -> None:
    harness.run()
    calls = harness.store.write_calls
    harness.clock.advance(hours=1)
    summary = harness.run()
    assert summary.pass_kind == "incremental"
    assert summary.query == {"last_interaction_date": "2025-01-10T08:00:24Z"}  # watermark - 2 h overlap
    assert (summary.changed, summary.unchanged) == (0, 25)
    assert harness.store.write_calls == calls


def test_changed_entries_and_only_they_are_written_with_their_next_sequence(harness: Harness) -> None:
    harness.run()
    later = T0 - timedelta(minutes=30)
    harness.source.pages[0][3] = guide_entry("ref-00003", status=wire.CONNECTION_COMPLETED, last=later)
    harness.source.pages[2][1] = guide_entry("ref-00021", status=wire.CONNECTION_ERROR, last=later)
    before = len(harness.store.written)
    harness.clock.advance(hours=1)
    summary = harness.run()
    assert (summary.changed, summary.unchanged) == (2, 23)
    assert harness.store.written[before:] == [(ENTRIES[3][wire.ENTRY_ID], 2), (ENTRIES[21][wire.ENTRY_ID], 2)]
    assert harness.store.checkpoint.watermark == later


def test_an_older_version_is_never_stored_over_a_newer_one(harness: Harness) -> None:
    harness.run()
    older = guide_entry("ref-00004", status=wire.CONNECTION_NOT_STARTED, last=T0 - timedelta(days=2))
    harness.source.pages[0][4] = older
    summary = harness.run(PollRequest(PollMode.FULL))
    assert (summary.stale, summary.changed) == (1, 0)
    assert harness.store.sequence_of(older[wire.ENTRY_ID]) == 1
    assert summary.as_dict()["stale"] == 1  # in the poll finished line; no metric shows it
    assert "EntriesStale" not in harness.metrics


def test_a_run_near_its_time_limit_stops_and_the_next_run_finishes_without_gaps_or_repeats(
    harness: Harness,
) -> None:
    first = harness.run(remaining=PageBudget(2))
    assert first.status is RunStatus.INTERRUPTED
    assert first.pages == 2
    assert "time limit" in first.reason
    pending = harness.store.checkpoint.pending
    assert pending is not None
    assert pending.page_token == "tok+/2="
    assert pending.pages_done == 2
    assert harness.store.checkpoint.watermark is None  # moves only when the pass completes
    assert harness.metrics["PollInterrupted"] == 1

    second = harness.run()
    assert second.resumed
    assert second.status is RunStatus.COMPLETED
    assert (second.pages, second.pass_pages_done) == (1, 3)
    assert harness.source.requests[-1][1] == "tok+/2="
    ids = [entry_id for entry_id, _ in harness.store.written]
    assert sorted(ids) == sorted(e[wire.ENTRY_ID] for e in ENTRIES)  # all, each once
    assert harness.store.checkpoint.pending is None


def test_no_time_at_all_reads_nothing(harness: Harness) -> None:
    summary = harness.run(remaining=PageBudget(0))
    assert summary.status is RunStatus.INTERRUPTED
    assert summary.pages == 0
    assert harness.source.requests == []
    assert harness.store.lease is None


def test_a_crash_after_a_pages_writes_replays_that_page_without_writing_it_again(harness: Harness) -> None:
    saves = harness.store.save_checkpoint

    def crash_on_second_checkpoint(checkpoint, owner, now):  # type: ignore[no-untyped-def]
        if harness.store.checkpoints_saved == 1:
            raise RuntimeError("the function was killed")
        saves(checkpoint, owner, now)

    harness.store.save_checkpoint = crash_on_second_checkpoint  # type: ignore[method-assign]
    with pytest.raises(PollFailed) as failed:
        harness.run(settings=EVERY_PAGE)
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert harness.store.lease is None  # released even so
    assert harness.metrics["PollFailed"] == 1
    harness.store.save_checkpoint = saves  # type: ignore[method-assign]
    replay = harness.run()
    assert replay.resumed
    assert replay.status is RunStatus.COMPLETED
    assert replay.unchanged == 10
    assert replay.changed == 5
    ids = [entry_id for entry_id, _ in harness.store.written]
    assert len(ids) == len(set(ids)) == 25


def test_a_run_that_cannot_get_the_lease_touches_nothing(harness: Harness) -> None:
    harness.store.lease = ("run-other", T0 + timedelta(minutes=10))
    summary = harness.run()
    assert summary.status is RunStatus.SKIPPED
    assert summary.as_dict()["reason"].startswith("lease held by run-other until 2025-01-10T12:10:00")
    assert harness.source.requests == []
    assert harness.store.checkpoints_saved == 0
    assert harness.store.lease == ("run-other", T0 + timedelta(minutes=10))
    assert harness.metrics["PollSkipped"] == 1


def test_an_expired_lease_is_taken_over(harness: Harness) -> None:
    harness.store.lease = ("run-crashed", T0 - timedelta(seconds=1))
    assert harness.run().status is RunStatus.COMPLETED


def test_a_lost_lease_stops_the_run_before_it_writes(harness: Harness) -> None:
    read = harness.store.read_snapshots

    def a_page_takes_20_seconds(*args, **kwargs):  # type: ignore[no-untyped-def]
        harness.clock.advance(seconds=20)
        if harness.store.write_calls == 1:  # page 1 written: the lease passes to another run
            harness.store.lease = ("run-thief", harness.clock() + timedelta(minutes=16))
        return read(*args, **kwargs)

    harness.store.read_snapshots = a_page_takes_20_seconds  # type: ignore[method-assign]
    with pytest.raises(PollFailed) as failed:  # the work was not done: a failure the platform counts
        harness.run(settings=PollerSettings(lease_seconds=60))  # renewed before a write past 30 s
    summary = failed.value.summary
    assert summary.status is RunStatus.LEASE_LOST
    assert summary.pages == 1
    assert len(harness.store.written) == 10
    assert harness.store.lease == ("run-thief", harness.store.lease[1])  # not released: not ours
    assert harness.store.checkpoint.pending is None  # nothing written after the loss, progress neither


def test_the_lease_is_renewed_once_half_of_it_is_gone_not_once_a_page(harness: Harness) -> None:
    renewals: list[Any] = []
    renew = harness.store.renew_lease
    harness.store.renew_lease = lambda owner, until: (renewals.append(until), renew(owner, until))  # type: ignore[method-assign]
    harness.run()  # default lease (960 s) and a clock that does not move: never
    assert renewals == []
    read = harness.store.read_snapshots

    def a_page_takes_20_seconds(*args, **kwargs):  # type: ignore[no-untyped-def]
        harness.clock.advance(seconds=20)
        return read(*args, **kwargs)

    harness.store.read_snapshots = a_page_takes_20_seconds  # type: ignore[method-assign]
    harness.run(
        PollRequest(PollMode.FULL), settings=PollerSettings(lease_seconds=60, checkpoint_every_pages=1)
    )
    # 3 pages of 20 s: page 2's checkpoint (40 s in) and page 3's (60 s in: 20 s after the renewal)
    assert len(renewals) == 1


def test_an_auth_error_ends_the_run_clearly_and_releases_the_lease(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.source.errors[1] = LeapAuthError("Leap rejected the API key (401) for the staging environment")
    with caplog.at_level(logging.ERROR), pytest.raises(PollFailed) as failed:
        harness.run()
    assert isinstance(failed.value.__cause__, LeapAuthError)
    assert "rejected the API key (401)" in str(failed.value)
    assert failed.value.summary.status is RunStatus.FAILED
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []  # the handler logs it, once
    assert harness.store.lease is None
    assert harness.store.checkpoint.pending is not None  # page 1 done: the next run resumes at page 2
    assert harness.metrics["PollFailed"] == 1


def test_a_refused_request_is_a_configuration_error(harness: Harness) -> None:
    harness.source.errors[0] = LeapRequestError("Leap refused the request (400 Bad Request)")
    with pytest.raises(PollFailed) as failed:
        harness.run()
    assert isinstance(failed.value.__cause__, LeapRequestError)
    assert harness.store.lease is None


def test_leap_unavailable_fails_the_run_and_the_next_resumes_from_the_checkpoint(harness: Harness) -> None:
    harness.source.errors[2] = LeapUnavailable("Leap still answered 503 when retries ran out")
    with pytest.raises(PollFailed) as raised:
        harness.run()
    failed = raised.value.summary
    assert failed.status is RunStatus.FAILED
    assert (failed.pages, failed.pass_pages_done) == (2, 2)
    assert "LeapUnavailable" in str(failed.error)
    assert str(raised.value) == (
        "poll failed: LeapUnavailable: Leap still answered 503 when retries ran out "
        "(2 page(s) stored by this run; the next run resumes from the checkpoint)"
    )
    assert harness.metrics["PollFailed"] == 1
    assert harness.store.lease is None
    assert harness.store.checkpoint.pending is not None
    assert harness.store.checkpoint.pending.page_token == "tok+/2="
    resumed = harness.run()
    assert resumed.resumed
    assert resumed.status is RunStatus.COMPLETED
    assert resumed.changed == 5


def test_an_expired_token_of_a_pass_read_in_order_goes_on_from_the_newest_date_read(
    harness: Harness,
) -> None:
    harness.run(remaining=PageBudget(1))
    pending = harness.store.checkpoint.pending
    assert pending is not None
    assert pending.in_order
    assert pending.listed_through == ENTRIES[9][wire.ENTRY_START]  # the newest start date of page 1
    harness.source.errors[1] = LeapPageTokenExpired("Leap refused the page token (400)")
    summary = harness.run()
    assert summary.status is RunStatus.COMPLETED
    assert summary.token_restarts == 1
    query = pending.query
    assert harness.source.requests[-4] == (query, "tok+/1=")  # refused
    assert harness.source.requests[-3] == (ConnectQuery(start_date=ENTRIES[9][wire.ENTRY_START]), None)
    assert harness.metrics["PageTokenRestarts"] == 1


def test_an_expired_token_of_a_pass_not_read_in_order_restarts_it_from_its_first_page(
    harness: Harness,
) -> None:
    first, second = harness.source.pages[0][2], harness.source.pages[0][7]
    first[wire.ENTRY_START], second[wire.ENTRY_START] = second[wire.ENTRY_START], first[wire.ENTRY_START]
    harness.run(remaining=PageBudget(1))
    pending = harness.store.checkpoint.pending
    assert pending is not None
    assert not pending.in_order
    harness.source.errors[1] = LeapPageTokenExpired("Leap refused the page token (400)")
    summary = harness.run()
    assert summary.status is RunStatus.COMPLETED
    assert summary.token_restarts == 1
    assert harness.source.requests[-4:] == [
        (pending.query, "tok+/1="),
        (pending.query, None),
        (pending.query, "tok+/1="),
        (pending.query, "tok+/2="),
    ]
    assert (summary.changed, summary.unchanged) == (15, 10)


def test_a_second_expired_token_in_one_run_fails_the_run(harness: Harness) -> None:
    harness.run(remaining=PageBudget(1))
    harness.source.errors[1] = LeapPageTokenExpired("refused")
    harness.source.errors[0] = LeapPageTokenExpired("refused again")  # impossible for Leap; bounds the loop
    with pytest.raises(PollFailed) as failed:
        harness.run()
    assert failed.value.summary.status is RunStatus.FAILED
    assert failed.value.summary.token_restarts == 1  # page one refused: not a token to go on without


def test_a_malformed_entry_is_quarantined_and_the_rest_of_its_page_stored(harness: Harness) -> None:
    broken = guide_entry("ref-00005")
    del broken[wire.ENTRY_CONNECTION_STATUS]
    harness.source.pages[0][5] = broken
    summary = harness.run()
    assert (summary.invalid, summary.changed) == (1, 24)
    [record] = harness.store.quarantine
    assert record.key == broken[wire.ENTRY_ID]
    assert "connection_status is missing" in record.reason
    assert harness.metrics["EntriesInvalid"] == 1


@pytest.mark.parametrize(
    ("unstorable", "keyed_by_id"),
    [
        pytest.param({wire.ENTRY_ID: "CAISO_u_" + "参" * 700}, False, id="id-of-700-cjk-characters"),
        pytest.param({wire.ENTRY_ID: "CAISO_u_\ud800"}, False, id="id-with-a-lone-surrogate"),
        pytest.param({wire.ENTRY_REF_ID: "参" * 700}, True, id="ref-id-of-700-cjk-characters"),
    ],
)
def test_an_entry_that_no_key_can_hold_is_quarantined_and_the_run_completes(
    harness: Harness, unstorable: dict[str, str], keyed_by_id: bool
) -> None:
    harness.source.pages[0][0] = {**harness.source.pages[0][0], **unstorable}
    summary = harness.run()
    assert summary.status is RunStatus.COMPLETED
    assert (summary.invalid, summary.changed) == (1, 24)
    [record] = harness.store.quarantine
    assert table.entry_id_fits(record.key)  # what DynamoDB would refuse never reaches a key
    expected_key = harness.source.pages[0][0][wire.ENTRY_ID] if keyed_by_id else record.key
    assert record.key == expected_key
    assert record.key.startswith("sha256:") is not keyed_by_id
    assert harness.store.checkpoint.pending is None


def test_a_table_that_refuses_writes_fails_the_run_after_checkpointing_the_pages_before(
    harness: Harness,
) -> None:
    write = harness.store.write_changes

    def refused_on_the_third_page(snapshots, quarantined, now):  # type: ignore[no-untyped-def]
        if harness.store.write_calls == 2:
            raise RuntimeError("ValidationException: the table refused the batch")
        write(snapshots, quarantined, now)

    harness.store.write_changes = refused_on_the_third_page  # type: ignore[method-assign]
    with pytest.raises(PollFailed) as failed:
        harness.run()
    assert failed.value.summary.pages == 2
    assert harness.store.checkpoint.pending.page_token == "tok+/2="  # type: ignore[union-attr]
    assert harness.store.lease is None


def test_a_table_that_refuses_the_lease_fails_the_run(harness: Harness) -> None:
    def refused(owner, now, until, use):  # type: ignore[no-untyped-def]
        raise RuntimeError("ProvisionedThroughputExceededException")

    harness.store.acquire_lease = refused  # type: ignore[method-assign]
    with pytest.raises(PollFailed, match="ProvisionedThroughputExceededException"):
        harness.run()
    assert harness.source.requests == []
    assert harness.metrics["PollFailed"] == 1


def test_a_failed_ref_id_poll_says_to_ask_again_and_its_log_form_shows_the_pseudonym(
    harness: Harness,
) -> None:
    harness.source.errors[0] = LeapUnavailable("503")
    with pytest.raises(PollFailed) as failed:
        harness.run(PollRequest(PollMode.REF_ID, "Customer-42"))
    assert str(failed.value).endswith("poll it again)")
    logged = failed.value.summary.for_log(PSEUDONYMS)
    assert "Customer-42" not in str(logged)
    assert logged["query"] == {"ref_id": PSEUDONYMS.ref("Customer-42")}
    assert "Customer-42" in str(failed.value.summary.as_dict())  # the caller's own answer keeps it


def test_leaps_answer_quoting_the_reference_id_reaches_no_message_in_clear(harness: Harness) -> None:
    harness.source.errors[0] = LeapRequestError("GET /connections: Leap refused (400): 'Customer-42' unknown")
    with pytest.raises(PollFailed) as failed:
        harness.run(PollRequest(PollMode.REF_ID, "Customer-42"))

    # The exception's message is what Lambda logs, and the summary's error is in the handler's line.
    assert "Customer-42" not in str(failed.value)
    assert f"'{PSEUDONYMS.ref('Customer-42')}' unknown" in str(failed.value)
    assert "Customer-42" not in str(failed.value.summary.for_log(PSEUDONYMS))


def test_a_ref_id_polls_entries_are_logged_by_pseudonym(harness: Harness) -> None:
    harness.source.pages = [[guide_entry("Customer-42")]]
    summary = harness.run(PollRequest(PollMode.REF_ID, "Customer-42"))
    entry_id = summary.entries[0]["id"]

    logged = summary.for_log(PSEUDONYMS)

    assert logged["entries"] == [{"entry": PSEUDONYMS.entry(entry_id), "outcome": "new", "sequence": 1}]
    assert "Customer-42" not in str(logged)


def test_unknown_values_are_counted_not_refused(harness: Harness) -> None:
    harness.source.pages[1][0] = guide_entry("ref-00010", status="PAUSED", last=T0 - timedelta(hours=2))
    summary = harness.run()
    assert (summary.unknown_values, summary.invalid, summary.changed) == (1, 0, 25)
    assert harness.metrics["UnknownEnumValues"] == 1


def test_a_ref_id_poll_stores_that_entry_and_leaves_the_pass_state_alone(harness: Harness) -> None:
    harness.run(remaining=PageBudget(1))
    checkpoint = harness.store.checkpoint
    harness.source.pages = [[guide_entry("ref-00001", status=wire.CONNECTION_COMPLETED, last=T0)]]
    summary = harness.run(PollRequest(PollMode.REF_ID, "ref-00001"))
    assert summary.status is RunStatus.COMPLETED
    assert summary.as_dict()["entries"] == [
        {"id": ENTRIES[1][wire.ENTRY_ID], "outcome": "changed", "sequence": 2}
    ]
    assert harness.source.requests[-1][0].ref_id == "ref-00001"
    assert harness.store.checkpoint == checkpoint


def test_a_ref_id_poll_says_when_leap_has_no_entry(harness: Harness) -> None:
    harness.source.pages = [[]]
    summary = harness.run(PollRequest(PollMode.REF_ID, "never-clicked"))
    assert summary.entries_seen == 0
    assert "no entry for this Reference ID" in summary.reason


def test_a_ref_id_poll_also_waits_for_the_lease(harness: Harness) -> None:
    harness.store.lease = ("run-hourly", T0 + timedelta(minutes=3))
    summary = harness.run(PollRequest(PollMode.REF_ID, "ref-00001"))
    assert summary.status is RunStatus.SKIPPED
    assert "lease held by run-hourly" in summary.reason


def test_explicit_full_replaces_an_unfinished_incremental_pass(harness: Harness) -> None:
    harness.run()
    harness.clock.advance(hours=1)
    harness.run(remaining=PageBudget(1))
    assert harness.store.checkpoint.pending.kind is PassKind.INCREMENTAL  # type: ignore[union-attr]
    summary = harness.run(PollRequest(PollMode.FULL))
    assert summary.pass_kind == "full"
    assert not summary.resumed
    assert summary.pages == 3
    assert harness.store.checkpoint.pending is None
    assert harness.store.checkpoint.last_full_started_at == harness.clock()


def test_the_summary_is_json_serialisable(harness: Harness) -> None:
    import json

    assert json.loads(json.dumps(harness.run().as_dict()))["status"] == "completed"


# --- who waits for the lease: a ref_id run's is short, a pass's is not -------------------------------


def test_a_pass_waits_for_a_ref_id_runs_lease_and_keeps_later_ref_id_runs_out(harness: Harness) -> None:
    harness.store.lease, harness.store.lease_use = (
        ("run-one-ref", T0 + timedelta(minutes=16)),
        LeaseUse.REF_ID,
    )
    announced: list[Any] = []

    def after(sleeps: int) -> None:
        announced.append(harness.store.waiting_pass)
        if sleeps == 3:
            assert harness.store.release_lease("run-one-ref")

    harness.on_sleep = after
    summary = harness.run()

    assert (summary.status, summary.pass_kind) == (RunStatus.COMPLETED, "full")
    assert harness.sleeps == [1.0, 1.0, 1.0]
    owner, until = announced[0]
    assert owner == "run-1"  # announced while it waited ...
    assert until == T0 + timedelta(seconds=SETTINGS.lease_wait_seconds + 1)
    assert harness.store.waiting_pass is None  # ... and withdrawn once it had the lease
    assert harness.store.lease is None


def test_a_waiting_pass_gives_up_after_the_wait_and_is_skipped_as_before(harness: Harness) -> None:
    harness.store.lease, harness.store.lease_use = ("run-stuck", T0 + timedelta(minutes=16)), LeaseUse.REF_ID
    summary = harness.run()

    assert summary.status is RunStatus.SKIPPED
    assert "lease held by run-stuck" in summary.reason
    assert sum(harness.sleeps) == SETTINGS.lease_wait_seconds
    assert harness.store.waiting_pass is None
    assert harness.source.requests == []


def test_a_lease_a_pass_holds_is_not_waited_for(harness: Harness) -> None:
    harness.store.lease = ("run-hourly", T0 + timedelta(minutes=16))
    for request in (SCHEDULED, PollRequest(PollMode.REF_ID, "ref-00001")):
        harness.store.acquire_attempts = 0
        summary = harness.run(request)
        assert summary.status is RunStatus.SKIPPED, request
        assert harness.store.acquire_attempts == 1
    assert harness.sleeps == []
    assert harness.store.waiting_pass is None


def test_a_ref_id_run_stands_back_for_a_waiting_pass(harness: Harness) -> None:
    harness.store.waiting_pass = ("run-hourly", T0 + timedelta(minutes=3))
    summary = harness.run(PollRequest(PollMode.REF_ID, "ref-00001"))

    assert summary.status is RunStatus.SKIPPED
    assert summary.reason.startswith("a pass (run-hourly) is waiting for the lease")
    assert harness.sleeps == []
    assert harness.source.requests == []
    assert harness.store.lease is None


def test_a_ref_id_run_waits_for_another_ref_id_runs_lease(harness: Harness) -> None:
    harness.store.lease, harness.store.lease_use = (
        ("run-other-ref", T0 + timedelta(minutes=16)),
        LeaseUse.REF_ID,
    )
    harness.on_sleep = lambda sleeps: sleeps == 2 and harness.store.release_lease("run-other-ref")
    harness.source.pages = [[guide_entry("ref-00001")]]

    summary = harness.run(PollRequest(PollMode.REF_ID, "ref-00001"))

    assert summary.status is RunStatus.COMPLETED
    assert len(harness.sleeps) == 2
    assert harness.store.waiting_pass is None  # only a pass announces itself


def test_without_a_wait_a_held_lease_skips_at_once(harness: Harness) -> None:
    harness.store.lease, harness.store.lease_use = (
        ("run-one-ref", T0 + timedelta(minutes=16)),
        LeaseUse.REF_ID,
    )
    env = PollEnvironment(
        source=harness.source,
        store=harness.store,
        now=harness.clock,
        remaining_ms=PageBudget(10),
        pseudonyms=PSEUDONYMS,
        sleep=harness.sleeps.append,
    )
    summary = run_poll(SCHEDULED, "run-x", env, PollerSettings(lease_wait_seconds=0))
    assert summary.status is RunStatus.SKIPPED
    assert harness.sleeps == []


# --- scale: checkpoints every N pages, reads, the next page asked for early --------------------------


def test_progress_is_recorded_every_n_pages_and_when_the_run_stops() -> None:
    harness = Harness(pages_of(guide_entries(70), 10))  # 7 pages
    summary = harness.run(remaining=PageBudget(5), settings=PollerSettings(checkpoint_every_pages=3))
    assert (summary.status, summary.pages) == (RunStatus.INTERRUPTED, 5)
    assert summary.checkpoints == harness.store.checkpoints_saved == 2  # after page 3, and at the stop
    assert harness.store.checkpoint.pending is not None
    assert harness.store.checkpoint.pending.page_token == "tok+/5="
    resumed = harness.run(settings=PollerSettings(checkpoint_every_pages=3))
    assert (resumed.pages, resumed.checkpoints) == (2, 1)  # the completion is the only write of it
    assert harness.store.checkpoint.pending is None


def test_a_failing_run_records_the_pages_it_finished_before_it_raises() -> None:
    harness = Harness(pages_of(guide_entries(70), 10))
    harness.source.errors[4] = LeapUnavailable("Leap still answered 503 when retries ran out")
    with pytest.raises(PollFailed):
        harness.run()  # 20 pages a checkpoint: none was due
    pending = harness.store.checkpoint.pending
    assert pending is not None
    assert (pending.page_token, pending.pages_done) == ("tok+/4=", 4)


def test_a_pass_reads_eventually_consistent_and_reads_again_what_it_would_write(harness: Harness) -> None:
    harness.run()
    harness.store.reads.clear()
    later = T0 - timedelta(minutes=30)
    harness.source.pages[1][0] = guide_entry("ref-00010", status=wire.CONNECTION_COMPLETED, last=later)
    harness.clock.advance(hours=1)
    summary = harness.run(PollRequest(PollMode.FULL))
    assert harness.store.reads == [(10, False), (10, False), (1, True), (5, False)]
    assert (summary.changed, summary.reconfirmed) == (1, 1)


def test_a_write_is_decided_on_the_consistent_read_not_on_a_stale_one(harness: Harness) -> None:
    harness.run()
    entry_id = ENTRIES[3][wire.ENTRY_ID]
    stored = harness.store.snapshots[entry_id]
    harness.store.lagging[entry_id] = None  # an eventually consistent read does not see it yet
    summary = harness.run(PollRequest(PollMode.FULL))
    assert summary.reconfirmed == 1  # "new" on the stale read; the consistent one finds it unchanged
    assert (summary.changed, summary.new, summary.unchanged) == (0, 0, 25)
    assert harness.store.snapshots[entry_id] is stored  # no second sequence 1 written over it


def test_a_ref_id_poll_reads_consistently_at_once(harness: Harness) -> None:
    harness.run()
    harness.store.reads.clear()
    harness.run(PollRequest(PollMode.REF_ID, "ref-00001"))
    assert {consistent for _, consistent in harness.store.reads} == {True}


def test_the_next_page_is_asked_for_before_the_current_one_is_stored(harness: Harness) -> None:
    write, iter_pages = harness.store.write_changes, harness.source.iter_pages
    asked = threading.Condition()  # notified each time the source was asked for a page
    seen: list[int] = []

    def noting_requests(*args, **kwargs):  # type: ignore[no-untyped-def]
        for page in iter_pages(*args, **kwargs):
            with asked:
                asked.notify_all()
            yield page

    def write_once_the_next_page_was_asked_for(*args, **kwargs):  # type: ignore[no-untyped-def]
        wanted = min(len(seen) + 2, 3)  # the page after this one (3 pages in all)
        with asked:  # without the prefetch it is asked for only after this write: the wait times out
            asked.wait_for(lambda: len(harness.source.requests) >= wanted, timeout=5)
        seen.append(len(harness.source.requests))
        return write(*args, **kwargs)

    harness.source.iter_pages = noting_requests  # type: ignore[method-assign]
    harness.store.write_changes = write_once_the_next_page_was_asked_for  # type: ignore[method-assign]
    summary = harness.run()
    assert summary.status is RunStatus.COMPLETED
    assert seen == [2, 3, 3]  # page 1 stored while page 2 was asked for, page 2 while page 3
