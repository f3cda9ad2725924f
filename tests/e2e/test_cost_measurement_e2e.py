"""``python -m devtools.demo --measured FILE`` at a small size: what it writes agrees with the runner's
own counters, and devtools/cost.py prices it (docs/cost.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devtools import cost
from tests.templates import of_type, sam_template

SMALL = {"seed": 99, "customers": 25, "days": 2, "start_offset_hours": 48}
SCHEDULED = ("PollerFunction", "MeterSweepFunction")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo run in a process of its own, as ``make cost`` runs it: Powertools' loggers keep the
    stream they found when a function was first imported, and in this test process another test may
    have imported it first (its log lines would then never reach the demo's meter)."""
    path = tmp_path_factory.mktemp("cost") / "measured.json"
    argv = [
        sys.executable,
        "-m",
        "devtools.demo",
        "--quiet",
        "--seed",
        str(SMALL["seed"]),
        "--customers",
        str(SMALL["customers"]),
        "--days",
        str(SMALL["days"]),
        "--start-offset",
        str(SMALL["start_offset_hours"]),
        "--report-dir",
        str(path.parent / "report"),
        "--measured",
        str(path),
    ]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "layers" / "common")])}
    finished = subprocess.run(argv, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def test_the_run_is_described_by_its_population_and_hours(measured: dict[str, Any]) -> None:
    assert measured["reference_ids"] == SMALL["customers"]
    assert measured["hours"] == SMALL["days"] * 24
    assert "--customers 25 --days 2 --start-offset 48" in measured["command"]
    assert measured["unattributed_log_bytes"] == 0
    assert measured["unmodelled_dynamodb_operations"] == {}


def test_the_calls_counted_per_invocation_add_up_to_the_runners_counters(measured: dict[str, Any]) -> None:
    per_invocation: Counter[str] = Counter()
    for function in measured["functions"].values():
        for key, value in function["totals"].items():
            if key.startswith("calls:"):
                per_invocation[key.removeprefix("calls:")] += int(value)

    assert dict(per_invocation) == measured["aws_calls"]


def test_each_function_has_its_invocations_durations_and_units(measured: dict[str, Any]) -> None:
    functions = measured["functions"]
    assert set(functions) == set(of_type(sam_template()["Resources"], "AWS::Serverless::Function"))
    for name, function in functions.items():
        totals = function["totals"]
        assert totals["invocations"] == sum(function["invocations_by_source"].values()), name
        assert totals["duration_ms"] > 0, name
        assert totals["log.bytes"] > 0, name
    for name in SCHEDULED:
        assert functions[name]["scheduled_runs"] == measured["hours"]
        assert functions[name]["per_run_fixed"]["invocations"] == 1
    poller = functions["PollerFunction"]["totals"]
    writes = sum(poller.get(f"calls:dynamodb.{op}", 0) for op in ("PutItem", "UpdateItem", "DeleteItem"))
    assert poller["dynamodb.write_units.table"] >= writes  # at least one unit a write
    outreach = functions["OutreachFunction"]["totals"]
    assert 0 < outreach["sqs.deliveries"] <= outreach["records"]


def test_the_custom_metrics_and_the_table_are_measured(measured: dict[str, Any]) -> None:
    metrics = {m["name"]: m for m in measured["custom_metrics"]}
    assert metrics["PollPassCompleted"]["dimensions"] == {"service": "leap-connect-tracker"}
    assert metrics["PollPassCompleted"]["hours_emitted"] == measured["hours"]
    # A count is published only when not zero, unless its alarm needs the zeros (missing = breaching):
    # those are there every hour; a failure counter on a notBreaching alarm is absent from a healthy run.
    dense = {a["metric"] for a in measured["custom_metric_alarms"] if a["treat_missing_data"] == "breaching"}
    assert dense == {"PollPassCompleted"}
    assert all(metrics[name]["hours_emitted"] == measured["hours"] for name in dense)
    assert all(m["ever_nonzero"] for m in metrics.values() if m["name"] != "EntriesByStatus")
    assert cost.review_metrics(measured).unused == ()  # every metric is on an alarm or the dashboard
    table = measured["tables"]["ConnectionsTable"]
    assert table["items"] >= SMALL["customers"]
    assert table["bytes"] > 100 * table["items"]  # the sizes plus the 100-byte overhead of each item


def test_the_cost_model_prices_the_measured_run(measured: dict[str, Any]) -> None:
    small = cost.monthly_cost(measured, 10_000, measured["hours"])
    large = cost.monthly_cost(measured, 100_000, measured["hours"])

    assert 0 < small.total < large.total
    assert {row.service for row in large.rows} >= {"Lambda", "DynamoDB", "SNS", "SQS", "CloudWatch"}
    assert "### 10,000 Reference IDs" in cost.render(measured)
