"""devtools/cost.py: the monthly cost from a measured run. Linear where it must be, fixed costs fixed,
prices proportional, the biggest items ranked, and the markdown docs/cost.md is generated from."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from devtools import cost

HOURS = 10
IDS = 100


def measured() -> dict[str, Any]:
    """A small measured run: a scheduled poller with a fixed part per run, an SQS-driven function."""
    return {
        "format": "leap-connect-tracker/measured/1",
        "command": "python -m devtools.demo --customers 100",
        "reference_ids": IDS,
        "entries_at_end": IDS,
        "hours": HOURS,
        "functions": {
            "PollerFunction": {
                "memory_mb": 512,
                "architecture": "arm64",
                "batch_size": None,
                "invocations_by_source": {"schedule": 10},
                "scheduled_runs": 10,
                "totals": {
                    "invocations": 10,
                    "duration_ms": 2000.0,
                    "dynamodb.write_units.table": 300,
                    "dynamodb.query_min_units.index:funnel-index": 5.0,
                    "dynamodb.query_units.index:funnel-index": 2.0,
                    "calls:secretsmanager.GetSecretValue": 10,
                    "log.bytes": 10_000,
                    "log.events": 100,
                },
                "per_run_fixed": {
                    "invocations": 1,
                    "duration_ms": 50.0,
                    "dynamodb.write_units.table": 5,
                    "dynamodb.query_min_units.index:funnel-index": 0.5,
                    "calls:secretsmanager.GetSecretValue": 1,
                    "log.bytes": 200,
                    "log.events": 2,
                },
            },
            "OutreachFunction": {
                "memory_mb": 256,
                "architecture": "arm64",
                "batch_size": 10,
                "invocations_by_source": {"sqs": 20},
                "scheduled_runs": 0,
                "totals": {
                    "invocations": 20,
                    "records": 40,
                    "duration_ms": 1000.0,
                    "sqs.esm_requests": 40,
                    "sqs.deliveries": 40,
                    "sns.billed_requests": 5,
                },
                "per_run_fixed": {},
            },
        },
        "aws_calls": {"dynamodb.PutItem": 300, "secretsmanager.GetSecretValue": 10},
        "custom_metrics": [
            _metric("PollPassCompleted", nonzero=False),
            _metric("LeapAuthFailures", nonzero=False),
            _metric("EntriesSeen", nonzero=True),
            _metric("PagesFetched", nonzero=True),
        ],
        "custom_metric_alarms": [
            {"alarm": "Freshness", "metric": "PollPassCompleted", "treat_missing_data": "breaching"},
            {"alarm": "Auth", "metric": "LeapAuthFailures", "treat_missing_data": "notBreaching"},
        ],
        "dashboard_metrics": ["EntriesSeen", "PollPassCompleted"],
        "resources": {
            "alarms": 4,
            "dashboards": 1,
            "schedules": 1,
            "sqs_event_source_mappings": 1,
            "secrets_read": 2,
            "secrets_in_stack": 1,
            "log_retention_days": 30,
            "kms_encrypted_in_use": 2,
            "customer_managed_keys": 0,
        },
        "tables": {
            "ConnectionsTable": {
                "items": 200,
                "bytes": 200_000,
                "indexes": {"due-index": {"items": 10, "bytes": 5_000}},
            }
        },
        "outreach": {"channels": "webhook", "messages": 30},
    }


def _metric(name: str, nonzero: bool) -> dict[str, Any]:
    return {
        "namespace": "LeapConnectTracker",
        "name": name,
        "dimensions": {"service": "leap-connect-tracker"},
        "datapoints": HOURS,
        "hours_emitted": HOURS,
        "ever_nonzero": nonzero,
        "functions": ["PollerFunction"],
    }


def row(breakdown: cost.Breakdown, item: str, function: str | None = None) -> float:
    """The monthly dollars of one item (all functions, or one)."""
    lines = [
        line
        for line in breakdown.lines
        if line.quantity.item == item and (function is None or line.quantity.function == function)
    ]
    assert lines, f"no line {item!r}"
    return sum(line.usd for line in lines)


def month(
    population: int, hours: float = HOURS, data: dict[str, Any] | None = None, **kwargs: Any
) -> cost.Breakdown:
    return cost.monthly_cost(data or measured(), population, hours, **kwargs)


# --- how each kind of quantity scales --------------------------------------------------------------


def test_what_grows_with_the_entries_is_linear_in_the_population() -> None:
    one, two, three = month(10_000), month(20_000), month(30_000)

    deliveries = [row(b, "messages SNS delivers to the stack's queues") for b in (one, two, three)]
    assert deliveries[1] == pytest.approx(2 * deliveries[0])
    assert deliveries[2] == pytest.approx(3 * deliveries[0])
    # The poller's writes: a fixed part per run plus a part per entry, so linear but not proportional.
    writes = [row(b, "writes (table)") for b in (one, two, three)]
    assert writes[2] - writes[1] == pytest.approx(writes[1] - writes[0])
    assert writes[1] < 2 * writes[0]


def test_fixed_costs_do_not_change_with_the_population() -> None:
    small, large = month(1_000), month(1_000_000)

    for item in (
        "custom metrics (EMF: names x dimension sets)",
        "alarms",
        "dashboards",
        "secrets the functions read",
    ):
        assert row(small, item) == row(large, item) > 0
    assert row(small, "scheduled invocations") == row(large, "scheduled invocations") > 0
    assert row(small, "GetSecretValue calls (cached 5 minutes)") == row(
        large, "GetSecretValue calls (cached 5 minutes)"
    )


def test_a_run_of_half_the_hours_doubles_what_happens_per_hour_but_not_what_is_fixed_or_stored() -> None:
    full, half = month(10_000, HOURS), month(10_000, HOURS / 2)

    assert row(half, "messages SNS delivers to the stack's queues") == pytest.approx(
        2 * row(full, "messages SNS delivers to the stack's queues")
    )
    assert row(half, "scheduled invocations") == pytest.approx(2 * row(full, "scheduled invocations"))
    assert row(half, "alarms") == row(full, "alarms")
    assert row(half, "storage (ConnectionsTable)") == row(full, "storage (ConnectionsTable)")


def test_storage_grows_with_the_population_only() -> None:
    assert row(month(20_000), "storage (ConnectionsTable)") == pytest.approx(
        2 * row(month(10_000), "storage (ConnectionsTable)")
    )
    expected = 200_000 / cost.GB * (10_000 / IDS) * cost.PRICES["dynamodb.storage"].usd
    assert row(month(10_000), "storage (ConnectionsTable)") == pytest.approx(expected)


def test_a_scheduled_runs_fixed_part_is_per_hour_and_the_rest_per_entry() -> None:
    (writes,) = [
        q
        for q in cost.billable_quantities(measured())
        if q.item == "writes (table)" and q.function == "PollerFunction"
    ]

    assert writes.terms == (
        cost.Term(5 * 10, cost.Scaling.HOURS),
        cost.Term(300 - 50, cost.Scaling.ENTRY_HOURS),
    )
    per_month = cost.HOURS_PER_MONTH / HOURS
    assert cost.monthly_amount(writes, 100.0, per_month) == pytest.approx(
        50 * per_month + 250 * 100 * per_month
    )


def test_batch_driven_invocations_grow_slower_than_their_records_until_batches_are_full() -> None:
    # 40 records in 20 invocations with BatchSize 10: batches can hold 5 times more.
    def requests(scale: int) -> float:
        return (
            row(month(IDS * scale), "requests", "OutreachFunction") / cost.PRICES["lambda.requests"].usd * 1e6
        )

    per_month = cost.HOURS_PER_MONTH / HOURS
    assert requests(1) == pytest.approx(20 * per_month)
    assert requests(2) == pytest.approx(20 * per_month)  # twice the records, batches twice as full
    assert requests(5) == pytest.approx(20 * per_month)
    assert requests(50) == pytest.approx(20 * 10 * per_month)  # full batches: linear from there
    deliveries = row(month(IDS * 50), "messages SNS delivers to the stack's queues")
    assert deliveries == pytest.approx(40 * 50 * per_month * cost.PRICES["sqs.requests"].usd / 1e6)


def test_a_query_costs_at_least_its_minimum_units() -> None:
    per_month = cost.HOURS_PER_MONTH / HOURS
    price = cost.PRICES["dynamodb.read_units"].usd / 1e6
    # At the measured size the 50 queries cost their minimum (5 units), not their 2 units of bytes...
    assert row(month(IDS), "queries (index funnel-index)") == pytest.approx(5 * per_month * price)
    # ...at 100 times the entries the bytes (2 units, all per entry) win over the fixed minimum.
    assert row(month(IDS * 100), "queries (index funnel-index)") == pytest.approx(200 * per_month * price)


# --- prices ---------------------------------------------------------------------------------------


def test_a_doubled_price_doubles_its_line_and_nothing_else() -> None:
    key = "dynamodb.write_units"
    base = month(10_000)
    doubled = month(10_000, prices=cost.PRICES.with_price(key, 2 * cost.PRICES[key].usd))

    for before, after in zip(base.lines, doubled.lines, strict=True):
        factor = 2 if before.quantity.price == key else 1
        assert after.usd == pytest.approx(factor * before.usd)
    assert doubled.total > base.total


def test_the_price_table_has_its_date_and_a_price_for_every_quantity() -> None:
    assert cost.PRICES.taken == "2026-12-01"
    assert "us-east-1" in cost.PRICES.region
    for quantity in cost.billable_quantities(measured()):
        assert cost.PRICES[quantity.price].usd > 0
    with pytest.raises(KeyError):
        cost.PRICES.with_price("no.such.price", 1.0)


# --- the breakdown -------------------------------------------------------------------------------


def test_the_rows_are_ranked_by_cost_and_add_up_to_the_total() -> None:
    breakdown = month(100_000)
    dollars = [r.usd for r in breakdown.rows]

    assert dollars == sorted(dollars, reverse=True)
    assert breakdown.biggest(3) == list(breakdown.rows[:3])
    assert sum(dollars) == pytest.approx(breakdown.total)
    assert sum(breakdown.by_function().values()) == pytest.approx(breakdown.total)


def test_the_metrics_review_never_proposes_to_silence_an_alarm_that_needs_zeros() -> None:
    review = cost.review_metrics(measured())

    assert review.unused == ("PagesFetched",)
    # Both were always 0; only the alarm that treats missing data as not breaching can do without.
    assert review.only_when_nonzero == ("LeapAuthFailures",)
    data = measured()
    data["custom_metrics"].append(
        _metric("EntriesByStatus", True) | {"dimensions": {"service": "s", "ConnectionStatus": "PARTIAL"}}
    )
    assert "EntriesByStatus[ConnectionStatus=PARTIAL]" in cost.review_metrics(data).metrics


# --- the markdown and the command ------------------------------------------------------------------


def test_the_markdown_has_both_populations_the_price_date_and_the_command() -> None:
    text = cost.render(measured(), [10_000, 100_000])

    assert "### 10,000 Reference IDs: $" in text
    assert "### 100,000 Reference IDs: $" in text
    assert "taken 2026-12-01" in text
    assert "`python -m devtools.demo --customers 100`" in text
    assert "not fetched live" in text


def test_the_generated_block_of_the_doc_is_replaced_and_nothing_else() -> None:
    doc = f"intro\n{cost.DOC_BEGIN}\nold numbers\n{cost.DOC_END}\noutro\n"

    updated = cost.update_doc(doc, "new numbers\n")

    assert updated == f"intro\n{cost.DOC_BEGIN}\n\nnew numbers\n\n{cost.DOC_END}\noutro\n"
    assert cost.update_doc(updated, "new numbers\n") == updated
    with pytest.raises(ValueError, match="no"):
        cost.update_doc("a doc without the markers", "x")


def test_the_command_prints_the_tables_and_updates_the_doc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "measured.json"
    data.write_text(json.dumps(measured()), encoding="utf-8")
    doc = tmp_path / "cost.md"
    doc.write_text(f"# Cost\n{cost.DOC_BEGIN}\n{cost.DOC_END}\n", encoding="utf-8")

    assert cost.main(["--measured", str(data), "--population", "5000", "--update-doc", str(doc)]) == 0

    printed = capsys.readouterr().out
    assert "### 5,000 Reference IDs: $" in printed
    assert printed.strip() in doc.read_text(encoding="utf-8")


def test_the_duration_factor_multiplies_the_duration_lines_only() -> None:
    data = copy.deepcopy(measured())
    base = month(10_000, data=data)
    slower = month(10_000, data=data, assumptions=cost.Assumptions(duration_factor=3))

    assert row(slower, "duration (arm64)") == pytest.approx(3 * row(base, "duration (arm64)"))
    assert row(slower, "requests") == row(base, "requests")
