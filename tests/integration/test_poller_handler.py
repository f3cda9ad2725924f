"""The poller Lambda handler: configuration from the environment, inputs, summary, logs and EMF metrics.

Each test builds the handler's dependencies from the environment it sets (as a cold start does) and
passes them in.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.leap_simulator import LeapSimulator, server_error
from functions.poller import app
from leap_tracker import table
from leap_tracker.adapters.continuation import ContinuationRefused, LambdaContinuations
from leap_tracker.adapters.funnel import funnel_statuses
from leap_tracker.config import ConfigError, load_settings
from leap_tracker.leap.api import LeapAuthError, LeapUnavailable
from leap_tracker.poller.request import InvalidPollRequest
from leap_tracker.poller.run import PollFailed
from leap_tracker.timeutil import utc_now
from tests.fakes.dynamodb import scan_items, stored_connections
from tests.fakes.lambda_runtime import FakeLambdaContext, emf_metrics, emf_units, logs_in_capture, printed
from tests.fakes.poller import PageBudget

EVENTS = Path(__file__).resolve().parents[2] / "events"


def event(name: str, **changes: Any) -> dict[str, Any]:
    return {**json.loads((EVENTS / name).read_text()), **changes}


@pytest.fixture
def sim() -> Iterator[LeapSimulator]:
    with LeapSimulator(seed=3, customers=30, api_key="sk-live-SECRET-never-logged") as simulator:
        simulator.advance(days=20)
        yield simulator


@pytest.fixture
def configure(
    sim: LeapSimulator, connections_table: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., app.Dependencies]:
    """Set the function's environment (the template's variables, overridable) and build what a cold
    start would build from it."""

    def apply(**overrides: str) -> app.Dependencies:
        variables = {
            "CONNECTIONS_TABLE": connections_table,
            "LEAP_API_BASE_URL": sim.base_url,
            "LEAP_API_KEY": sim.api_key,
            "LEAP_PAGE_SIZE": "10",
            "LEAP_BACKOFF_FACTOR": "0.001",
            "LEAP_MAX_RETRIES": "2",
            **overrides,
        }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return app.build_dependencies(load_settings())

    return apply


def output_lines(captured: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    text, lines = printed(captured)
    assert "SECRET" not in text  # the API key never reaches a log line or a metric
    return lines


def test_a_scheduled_invocation_polls_and_reports(
    configure: Callable[..., app.Dependencies],
    sim: LeapSimulator,
    dynamodb: Any,
    connections_table: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deps = configure()
    with logs_in_capture(app.logger):
        summary = app.lambda_handler(event("poller-scheduled.json"), FakeLambdaContext(), deps)
    assert summary["status"] == "completed"
    assert summary["pass"] == "full"
    assert summary["run_id"] == FakeLambdaContext.aws_request_id
    assert summary["changed"] == summary["entries_seen"] == sim.customers
    assert json.loads(json.dumps(summary)) == summary
    assert len(stored_connections(dynamodb, connections_table)) == sim.customers

    lines = output_lines(capsys)
    metrics = emf_metrics(lines)
    assert metrics["EntriesChanged"] == [sim.customers]
    assert metrics["PollPassCompleted"] == [1]  # the freshness alarm's metric
    assert len(metrics["LeapApiLatency"]) == 3
    # A zero count is left out (no data is a zero to the dashboard and to a notBreaching alarm), and
    # what nothing reads as a metric is in the run's line only.
    assert not {"PollInterrupted", "PollFailed", "LeapAuthFailures", "LeapRetries"} & set(metrics)
    assert not {"PagesFetched", "EntriesUnchanged", "EntriesStale"} & set(metrics)
    [finished] = [line for line in lines if line.get("message") == "poll finished"]
    assert (finished["pages"], finished["unchanged"], finished["stale"]) == (3, 0, 0)
    units = emf_units(lines)
    assert units.pop("LeapApiLatency") == "Milliseconds"
    assert set(units.values()) == {"Count"}
    pages = [line for line in lines if line.get("message") == "page stored"]
    assert len(pages) == 3
    assert all(line["function_request_id"] == FakeLambdaContext.aws_request_id for line in pages)

    # The funnel, counted on funnel-index after the run: the stored snapshots' statuses, exactly.
    stored = Counter(
        item[table.CONN_STATUS]["S"] for item in stored_connections(dynamodb, connections_table).values()
    )
    assert summary["entries_by_status"] == {status: stored.get(status, 0) for status in funnel_statuses()}
    assert sum(summary["entries_by_status"].values()) == sim.customers
    assert summary["entries_by_status"][table.FUNNEL_OTHER_STATUS] == 0  # no status this code does not know
    published = {s: n for s, n in summary["entries_by_status"].items() if s != table.FUNNEL_OTHER_STATUS}
    assert funnel_metrics(lines) == published  # OTHER only when some entry has one


def funnel_metrics(lines: list[dict[str, Any]]) -> dict[str, float]:
    """ConnectionStatus -> the EntriesByStatus value published, one EMF line per status."""
    found: dict[str, float] = {}
    for line in lines:
        if app.FUNNEL_METRIC in line:
            [dimensions] = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
            assert sorted(dimensions) == [app.FUNNEL_DIMENSION, "service"]
            assert line["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
                {"Name": app.FUNNEL_METRIC, "Unit": "Count"}
            ]
            [found[line[app.FUNNEL_DIMENSION]]] = line[app.FUNNEL_METRIC]
    return found


def test_a_failed_funnel_count_fails_the_invocation_after_the_runs_metrics_are_published(
    configure: Callable[..., app.Dependencies],
    sim: LeapSimulator,
    dynamodb: Any,
    connections_table: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refused() -> dict[str, int]:
        raise RuntimeError("funnel-index refused the Query")

    deps = dataclasses.replace(configure(), count_funnel=refused)
    with logs_in_capture(app.logger), pytest.raises(RuntimeError, match="refused the Query"):
        app.lambda_handler(event("poller-scheduled.json"), FakeLambdaContext(), deps)
    assert len(stored_connections(dynamodb, connections_table)) == sim.customers  # the run's work is in
    lines = output_lines(capsys)
    metrics = emf_metrics(lines)  # flushed on the way out of the exception
    assert (metrics["PollPassCompleted"], metrics["EntriesChanged"]) == ([1], [sim.customers])
    assert funnel_metrics(lines) == {}
    [error] = [line for line in lines if line.get("level") == "ERROR"]
    assert error["message"].startswith("funnel count failed")


def test_the_funnel_publishes_a_known_status_at_zero_and_other_when_some_entry_has_it(
    configure: Callable[..., app.Dependencies], capsys: pytest.CaptureFixture[str]
) -> None:
    counts = dict.fromkeys(funnel_statuses(), 0) | {"COMPLETED": 4, table.FUNNEL_OTHER_STATUS: 2}
    deps = dataclasses.replace(configure(), count_funnel=lambda: counts)

    summary = app.lambda_handler(event("poller-scheduled.json"), FakeLambdaContext(), deps)

    assert summary["entries_by_status"] == counts
    assert funnel_metrics(output_lines(capsys)) == counts  # the zeros of the known statuses are levels


def test_a_skipped_run_counts_no_funnel(
    configure: Callable[..., app.Dependencies], capsys: pytest.CaptureFixture[str]
) -> None:
    counted: list[int] = []

    def count() -> dict[str, int]:
        counted.append(1)
        return {}

    deps = dataclasses.replace(configure(), count_funnel=count)
    deps.store.acquire_lease("another-run", utc_now(), utc_now() + timedelta(minutes=16))
    summary = app.lambda_handler(event("poller-scheduled.json"), FakeLambdaContext(), deps)
    assert summary["status"] == "skipped"
    assert "entries_by_status" not in summary
    assert counted == []
    metrics = emf_metrics(output_lines(capsys))
    assert (metrics["PollSkipped"], metrics["PollPassCompleted"]) == ([1], [0])  # the alarm's zero too


def test_every_sample_event_is_a_valid_input(
    configure: Callable[..., app.Dependencies], sim: LeapSimulator
) -> None:
    deps = configure()
    for path in sorted(EVENTS.glob("poller-*.json")):
        summary = app.lambda_handler(json.loads(path.read_text()), FakeLambdaContext(), deps)
        assert summary["status"] == "completed", path.name


def test_one_reference_id_on_demand(configure: Callable[..., app.Dependencies], sim: LeapSimulator) -> None:
    deps = configure()
    ref_id = sim.ref_ids[4]
    summary = app.lambda_handler(event("poller-ref-id.json", ref_id=ref_id), FakeLambdaContext(), deps)
    assert summary["pass"] == "ref_id"
    assert summary["query"] == {"ref_id": ref_id}
    [entry] = summary["entries"]
    assert entry["outcome"] == "new"
    assert entry["sequence"] == 1
    assert entry["id"].endswith(ref_id)


def test_a_bad_input_is_a_clear_error_that_touches_nothing(
    configure: Callable[..., app.Dependencies],
    dynamodb: Any,
    connections_table: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deps = configure()
    with pytest.raises(InvalidPollRequest, match='needs a non-empty string "ref_id"'):
        app.lambda_handler({"mode": "ref_id"}, FakeLambdaContext(), deps)
    assert scan_items(dynamodb, connections_table) == []
    assert emf_metrics(output_lines(capsys))["InvalidInput"] == [1]


def test_a_wrong_key_ends_the_run_with_one_clear_error_line(
    configure: Callable[..., app.Dependencies],
    dynamodb: Any,
    connections_table: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deps = configure(LEAP_API_KEY="sk-live-SECRET-but-wrong")
    with logs_in_capture(app.logger), pytest.raises(PollFailed) as failed:
        app.lambda_handler(event("poller-scheduled.json"), FakeLambdaContext(), deps)
    assert isinstance(failed.value.__cause__, LeapAuthError)
    lines = output_lines(capsys)
    errors = [line for line in lines if line.get("level") == "ERROR"]
    assert len(errors) == 1
    assert "Leap rejected the API key (401)" in errors[0]["message"]
    assert "LEAP_API_KEY" in errors[0]["message"]  # says which setting to fix
    metrics = emf_metrics(lines)
    assert metrics["PollFailed"] == [1]
    assert metrics["LeapAuthFailures"] == [1]  # the LeapAuthFailures alarm's metric
    assert metrics["PollPassCompleted"] == [0]  # published with its zero: the freshness alarm's
    leases = [i for i in scan_items(dynamodb, connections_table) if i[table.SK]["S"] == table.LEASE_SK]
    assert leases == []


def test_too_little_time_left_stops_before_the_first_page(
    configure: Callable[..., app.Dependencies], sim: LeapSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deps = configure(POLLER_TIME_MARGIN_SECONDS="60")
    with logs_in_capture(app.logger):
        summary = app.lambda_handler(
            event("poller-scheduled.json"), FakeLambdaContext(remaining_ms=59_999), deps
        )
    assert summary["status"] == "interrupted"
    assert summary["pages"] == 0
    assert sim.requests == {}
    assert emf_metrics(output_lines(capsys))["PollInterrupted"] == [1]


def test_leap_answering_500_to_every_retry_makes_the_invocation_fail_with_its_metrics_flushed(
    configure: Callable[..., app.Dependencies],
    sim: LeapSimulator,
    dynamodb: Any,
    connections_table: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deps = configure()
    sim.inject(server_error(), times=None)
    with logs_in_capture(app.logger), pytest.raises(PollFailed) as failed:
        app.lambda_handler(event("poller-scheduled.json"), FakeLambdaContext(), deps)
    assert isinstance(failed.value.__cause__, LeapUnavailable)
    assert "Leap still answered 500 when retries ran out" in str(failed.value)
    lines = output_lines(capsys)
    [error] = [line for line in lines if line.get("level") == "ERROR"]
    assert error["message"] == str(failed.value)
    assert (error["status"], error["pages"], error["retries"]) == ("failed", 0, 2)  # LEAP_MAX_RETRIES
    metrics = emf_metrics(lines)  # log_metrics flushed them although the handler raised
    assert metrics["PollFailed"] == [1]
    assert "LeapAuthFailures" not in metrics  # Leap failed, but did not refuse the key
    assert metrics["LeapRetries"] == [2]
    assert (metrics["PollPassCompleted"], "LeapApiLatency" in metrics) == ([0], False)  # no page read
    items = scan_items(dynamodb, connections_table)
    assert [i for i in items if i[table.SK]["S"] == table.LEASE_SK] == []  # released
    assert [i for i in items if i[table.SK]["S"] == table.CHECKPOINT_SK] == []  # no page was done


def test_a_failed_ref_id_poll_logs_no_reference_id(
    configure: Callable[..., app.Dependencies], sim: LeapSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deps = configure()
    sim.inject(server_error(), times=None)
    ref_id = sim.ref_ids[2]
    with logs_in_capture(app.logger), pytest.raises(PollFailed):
        app.lambda_handler(event("poller-ref-id.json", ref_id=ref_id), FakeLambdaContext(), deps)
    out = capsys.readouterr()
    assert out.out.count('"level":"ERROR"') == 1
    assert ref_id not in out.out + out.err


def test_an_eventbridge_scheduled_event_is_a_scheduled_run(
    configure: Callable[..., app.Dependencies], sim: LeapSimulator
) -> None:
    deps = configure()
    # `sam local generate-event cloudwatch scheduled-event`: what a classic EventBridge rule sends.
    summary = app.lambda_handler(event("eventbridge-scheduled-event.json"), FakeLambdaContext(), deps)
    assert (summary["status"], summary["mode"], summary["pass"]) == ("completed", "scheduled", "full")
    assert summary["changed"] == sim.customers


def test_a_loopback_http_leap_url_is_accepted_for_local_runs_with_a_warning(
    configure: Callable[..., app.Dependencies], sim: LeapSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sim.base_url.startswith("http://127.0.0.1:")  # the simulator: what local runs use

    with logs_in_capture(app.logger):
        configure()

    warnings = [line for line in output_lines(capsys) if line.get("level") == "WARNING"]
    assert [line["message"] for line in warnings] == [
        "LEAP_API_BASE_URL is a loopback http:// URL: accepted for local runs only"
    ]


def test_a_plain_http_leap_url_elsewhere_fails_the_cold_start_naming_the_variable(
    configure: Callable[..., app.Dependencies],
) -> None:
    with pytest.raises(ConfigError, match=r"^LEAP_API_BASE_URL must be an https:// URL"):
        configure(LEAP_API_BASE_URL="http://api.leap.energy")


# --- a pass the time limit cut short continues in a new invocation --------------------------------


class CutShort(FakeLambdaContext):
    """A context with time for ``checks`` page checks, then the time limit."""

    def __init__(self, checks: int) -> None:
        self.budget = PageBudget(checks)

    def get_remaining_time_in_millis(self) -> int:
        return 900_000 if self.budget() else 0


class RecordingLambda:
    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        return {"StatusCode": self.status}


def test_a_cut_pass_invokes_the_function_again_at_once(
    configure: Callable[..., app.Dependencies], capsys: pytest.CaptureFixture[str]
) -> None:
    client = RecordingLambda()
    deps = dataclasses.replace(configure(), continuations=LambdaContinuations(lambda: client))
    context = CutShort(2)
    with logs_in_capture(app.logger):
        summary = app.lambda_handler(event("poller-scheduled.json"), context, deps)
    assert (summary["status"], summary["pages"], summary["continued_by"]) == ("interrupted", 2, 1)
    [call] = client.calls
    assert call["FunctionName"] == context.invoked_function_arn
    assert call["InvocationType"] == "Event"
    assert json.loads(call["Payload"]) == {"mode": "scheduled", "continuation": 1}
    metrics = emf_metrics(output_lines(capsys))
    assert metrics["PollContinued"] == [1]
    assert "PollContinuationsExhausted" not in metrics

    again = app.lambda_handler(json.loads(call["Payload"]), FakeLambdaContext(), deps)
    assert (again["status"], again["continuation"], again["resumed"]) == ("completed", 1, True)
    assert "continued_by" not in again
    assert len(client.calls) == 1


def test_a_refused_continuation_fails_the_invocation_so_lambda_retries_it(
    configure: Callable[..., app.Dependencies],
) -> None:
    deps = dataclasses.replace(configure(), continuations=LambdaContinuations(lambda: RecordingLambda(500)))
    with pytest.raises(ContinuationRefused, match="answered 500"):
        app.lambda_handler(event("poller-scheduled.json"), CutShort(2), deps)
    pending = deps.store.load_checkpoint().pending
    assert pending is not None  # the retry of this invocation resumes the pass from here
    assert pending.pages_done == 2


def test_the_last_continuation_of_a_chain_does_not_continue_and_says_so(
    configure: Callable[..., app.Dependencies], capsys: pytest.CaptureFixture[str]
) -> None:
    client = RecordingLambda()
    deps = dataclasses.replace(
        configure(POLLER_MAX_CONTINUATIONS="3"), continuations=LambdaContinuations(lambda: client)
    )
    app.lambda_handler(event("poller-scheduled.json"), CutShort(1), deps)  # a pass is left unfinished
    capsys.readouterr()
    with logs_in_capture(app.logger):
        summary = app.lambda_handler({"mode": "scheduled", "continuation": 3}, CutShort(1), deps)
    assert (summary["status"], summary["resumed"]) == ("interrupted", True)
    assert "continued_by" not in summary
    assert len(client.calls) == 1  # the first run's; the third continuation asks for no fourth
    assert emf_metrics(output_lines(capsys))["PollContinuationsExhausted"] == [1]


def test_a_continuation_with_no_pass_left_does_nothing(configure: Callable[..., app.Dependencies]) -> None:
    client = RecordingLambda()
    deps = dataclasses.replace(configure(), continuations=LambdaContinuations(lambda: client))
    summary = app.lambda_handler({"mode": "scheduled", "continuation": 2}, FakeLambdaContext(), deps)
    assert (summary["status"], summary["pages"]) == ("completed", 0)
    assert summary["reason"].startswith("nothing to continue")
    assert client.calls == []
