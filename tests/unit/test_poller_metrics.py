"""The poller handler's metrics of a run summary (``functions.poller.app.run_metrics``): one count per
name and run, and one latency per page read. What no alarm or dashboard widget reads (pages, unchanged
and stale entries) is in the run's ``poll finished`` line only; which counts keep their zeros when
published is ``DENSE_METRICS`` (the freshness alarm's)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.poller.app import DENSE_METRICS, run_metrics
from leap_tracker.poller.request import PollMode
from leap_tracker.poller.run import RunStatus, RunSummary

NO_OUTCOME = {"PollInterrupted": 0, "PollSkipped": 0, "PollFailed": 0, "PollPassCompleted": 0}


def counted(summary: RunSummary) -> dict[str, int]:
    """The summary's own counts, under the metric names they are published as."""
    return {
        "EntriesSeen": summary.entries_seen,
        "EntriesChanged": summary.changed,
        "EntriesInvalid": summary.invalid,
        "UnknownEnumValues": summary.unknown_values,
        "LeapRetries": summary.retries,
        "PageTokenRestarts": summary.token_restarts,
    }


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        pytest.param(RunStatus.COMPLETED, {**NO_OUTCOME, "PollPassCompleted": 1}, id="completed"),
        pytest.param(RunStatus.INTERRUPTED, {**NO_OUTCOME, "PollInterrupted": 1}, id="interrupted"),
        pytest.param(RunStatus.SKIPPED, {**NO_OUTCOME, "PollSkipped": 1}, id="skipped"),
        pytest.param(RunStatus.FAILED, {**NO_OUTCOME, "PollFailed": 1}, id="failed"),
        # its work was not done either
        pytest.param(RunStatus.LEASE_LOST, {**NO_OUTCOME, "PollFailed": 1}, id="lease-lost"),
    ],
)
def test_each_status_has_its_flag_and_the_counts_are_the_summarys(
    status: RunStatus, outcome: dict[str, int]
) -> None:
    summary = RunSummary(
        run_id="run-1",
        mode=PollMode.SCHEDULED,
        status=status,
        pages=3,
        entries_seen=25,
        changed=7,
        new=4,
        unchanged=16,
        stale=2,
        invalid=1,
        unknown_values=5,
        retries=6,
        token_restarts=1,
        api_latency_ms=[12.5, 40.0, 7.25],
    )

    metrics = run_metrics(summary)

    assert metrics == {**counted(summary), **outcome, "LeapApiLatency": [12.5, 40.0, 7.25]}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"EntriesSeen": 0, "LeapRetries": 0, "LeapApiLatency": []}),
        ({"pages": 2, "api_latency_ms": [1.0, 2.0]}, {"EntriesSeen": 0, "LeapApiLatency": [1.0, 2.0]}),
        ({"retries": 2, "status": RunStatus.FAILED}, {"LeapRetries": 2, "PollFailed": 1, "EntriesSeen": 0}),
    ],
    ids=["nothing-read", "two-pages", "failed-after-retries"],
)
def test_the_metrics_follow_the_summary(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    metrics = run_metrics(RunSummary(run_id="run-1", mode=PollMode.SCHEDULED, **fields))
    assert {name: metrics[name] for name in expected} == expected


def test_the_new_count_pages_unchanged_stale_and_the_ref_id_entries_are_not_metrics() -> None:
    summary = RunSummary(
        run_id="run-1", mode=PollMode.REF_ID, new=1, pages=2, unchanged=3, stale=1, entries=[{"id": "x"}]
    )
    metrics = run_metrics(summary)
    assert set(metrics) == {*counted(summary), *NO_OUTCOME, "LeapApiLatency"}
    assert {"pages": 2, "unchanged": 3, "stale": 1}.items() <= summary.as_dict().items()  # the log line's


def test_only_the_freshness_metric_keeps_its_zeros() -> None:
    """PollFreshnessAlarm treats missing data as breaching; every other count's zero is left out."""
    assert {"PollPassCompleted"} == DENSE_METRICS
    assert set(run_metrics(RunSummary(run_id="run-1", mode=PollMode.SCHEDULED))) >= DENSE_METRICS


@pytest.mark.parametrize(
    ("mode", "status", "completed"),
    [
        pytest.param(PollMode.SCHEDULED, RunStatus.COMPLETED, 1, id="scheduled-pass"),
        pytest.param(PollMode.FULL, RunStatus.COMPLETED, 1, id="full-pass"),
        pytest.param(PollMode.INCREMENTAL, RunStatus.COMPLETED, 1, id="incremental-pass"),
        pytest.param(PollMode.REF_ID, RunStatus.COMPLETED, 0, id="ref-id-poll-is-no-pass"),
        pytest.param(PollMode.SCHEDULED, RunStatus.INTERRUPTED, 0, id="pass-cut-short"),
        pytest.param(PollMode.SCHEDULED, RunStatus.SKIPPED, 0, id="lease-held"),
        pytest.param(PollMode.SCHEDULED, RunStatus.FAILED, 0, id="failed"),
    ],
)
def test_only_a_pass_that_read_its_last_page_counts_for_freshness(
    mode: PollMode, status: RunStatus, completed: int
) -> None:
    """PollPassCompleted is the freshness alarm's metric (template.yaml PollFreshnessAlarm): a poll of
    one Reference ID, or a run that stopped short, must not make a stalled poller look fresh."""
    summary = RunSummary(run_id="run-1", mode=mode, status=status)
    assert run_metrics(summary)["PollPassCompleted"] == completed
