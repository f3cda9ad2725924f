"""What the demo measures for the cost model (``--measured FILE``, read by ``python -m devtools.cost``).

Per function of the main stack: its invocations by source, the records event-driven ones got, and
per invocation what the runner counted (devtools/local_runner/usage.py: calls, DynamoDB request units
by item size, SNS billed requests, the SQS requests of Lambda's pollers and SNS's deliveries to the
stack's queues), its wall time, and the log bytes and lines of the functions' stdout (counted here).
``totals`` sums every invocation; ``per_run_fixed`` is the smallest amount of each quantity in any one
scheduled run, the part every scheduled run costs whatever the population (docs/cost.md, how it
scales). Besides: the custom metrics the EMF documents
declared (with the hours they were emitted in), what the template declares that is billed by the
month (alarms, dashboards, schedules, secrets, queues Lambda polls), and the table's size at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.demo.model import DemoConfig, Run
from devtools.demo.world import World
from devtools.local_runner import InvocationRecord, LocalCloud

FORMAT = "leap-connect-tracker/measured/1"
EVENT_SOURCES = ("stream", "sqs")  # invocations an event source mapping made, with a batch of records
SCHEDULED = "schedule"
ENTRY_PROPORTIONAL = ("dynamodb.query_units.",)  # never part of a run's fixed amount (see _smallest)
CUSTOM_NAMESPACE_VARIABLE = "POWERTOOLS_METRICS_NAMESPACE"


@dataclass
class _Metric:
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    datapoints: int = 0
    hours: set[str] = field(default_factory=set)
    nonzero: bool = False
    functions: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "dimensions": dict(self.dimensions),
            "datapoints": self.datapoints,
            "hours_emitted": len(self.hours),
            "ever_nonzero": self.nonzero,
            "functions": sorted(self.functions),
        }


class OutputMeter:
    """Counts the functions' output per invocation (bytes, lines) and reads their EMF documents."""

    def __init__(self) -> None:
        self.cloud: LocalCloud | None = None  # attached once the world is up
        self._pending = ""
        self.unattributed_bytes = 0
        self.metrics: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Metric] = {}

    def feed(self, text: str) -> None:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        record = self.cloud.current_invocation if self.cloud is not None else None
        size = len(line.encode()) + 1  # the newline
        if record is None:
            self.unattributed_bytes += size
            return
        record.usage["log.bytes"] += size
        record.usage["log.events"] += 1
        if line.startswith('{"_aws"'):
            self._emf(json.loads(line), record)

    def _emf(self, document: Mapping[str, Any], record: InvocationRecord) -> None:
        hour = record.at.strftime("%Y-%m-%dT%H")
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = tuple(sorted((name, str(document[name])) for name in dimension_set))
                for metric in directive["Metrics"]:
                    key = (directive["Namespace"], metric["Name"], dimensions)
                    seen = self.metrics.setdefault(key, _Metric(*key))
                    value = document.get(metric["Name"], 0)
                    seen.datapoints += 1
                    seen.hours.add(hour)
                    seen.nonzero |= any(v != 0 for v in (value if isinstance(value, list) else [value]))
                    seen.functions.add(record.function)


def measurement(world: World, run: Run, config: DemoConfig, output: OutputMeter) -> dict[str, Any]:
    """Everything docs/cost.md prices, from the run (call while the world is up: it reads the table)."""
    cloud = world.cloud
    if cloud.usage.failures:
        raise RuntimeError(f"the usage meter failed, nothing is measured: {cloud.usage.failures[:3]}")
    resources = cloud.resources
    by_function = {f: c for f, c in cloud.aws_calls_by_function.items() if "/" not in f}  # the main stack's
    return {
        "format": FORMAT,
        "command": demo_command(config),
        "reference_ids": config.customers,
        "entries_at_end": len(run.stored),
        "hours": config.hours,
        "functions": _functions(cloud),
        "aws_calls": _call_names(sum(by_function.values(), Counter())),
        "aws_calls_by_function": {f: _call_names(counts) for f, counts in sorted(by_function.items())},
        "custom_metrics": [m.as_json() for _, m in sorted(output.metrics.items())],
        "custom_metric_alarms": _custom_metric_alarms(cloud),
        "dashboard_metrics": sorted(_dashboard_metrics(cloud)),
        "resources": {
            "alarms": len(resources.of_type("AWS::CloudWatch::Alarm")),
            "dashboards": len(resources.of_type("AWS::CloudWatch::Dashboard")),
            "schedules": len(cloud.schedules),
            "sqs_event_source_mappings": sum(
                ":sqs:" in str(r.properties.get("EventSourceArn", ""))
                for r in resources.of_type("AWS::Lambda::EventSourceMapping")
            ),
            "secrets_read": len(cloud.usage.secrets_read),
            "secrets_in_stack": len(resources.of_type("AWS::SecretsManager::Secret")),
            "log_retention_days": _log_retention_days(cloud),
            "kms_encrypted_in_use": _kms_encrypted(cloud),
            "customer_managed_keys": 1 if cloud.parameters.get("KmsKeyArn") else 0,
        },
        "tables": {
            table.logical_id: cloud.usage.tables.storage(table.ref)
            for table in resources.of_type("AWS::DynamoDB::Table")
        },
        "outreach": {
            "channels": str(cloud.parameters.get("OutreachChannels", "")),
            "messages": len(world.webhook.accepted()),
        },
        "unmodelled_dynamodb_operations": dict(cloud.usage.unmodelled),
        "unattributed_log_bytes": output.unattributed_bytes,
    }


def _call_names(counts: Mapping[tuple[str, str], int]) -> dict[str, int]:
    return {f"{service}.{operation}": n for (service, operation), n in sorted(counts.items())}


def write_measured(path: Path, measured: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def demo_command(config: DemoConfig) -> str:
    return (
        f"python -m devtools.demo --seed {config.seed} --customers {config.customers} --days {config.days} "
        f"--start-offset {config.start_offset_hours} --click-days {config.click_days}"
    )


# ------------------------------------------------------------------------------------ functions


def _functions(cloud: LocalCloud) -> dict[str, Any]:
    main = {logical_id: f for logical_id, f in cloud.functions.items() if "/" not in logical_id}
    records: dict[str, list[InvocationRecord]] = {logical_id: [] for logical_id in main}
    for record in cloud.invocations:
        if record.function in records:
            records[record.function].append(record)
    amounts = _invocation_amounts(cloud.invocations)
    result = {}
    for logical_id, function in sorted(main.items()):
        mine = records[logical_id]
        scheduled = [amounts[id(r)] for r in mine if r.source == SCHEDULED]
        properties = _function_properties(cloud, logical_id)
        result[logical_id] = {
            "memory_mb": function.memory_mb,
            "architecture": (properties.get("Architectures") or ["x86_64"])[0],
            "batch_size": _batch_size(cloud, function.name),
            "invocations_by_source": dict(sorted(Counter(r.source for r in mine).items())),
            "scheduled_runs": len(scheduled),
            "totals": _rounded(sum((amounts[id(r)] for r in mine), Counter())),
            "per_run_fixed": _rounded(_smallest(scheduled)),
        }
    return result


def _invocation_amounts(records: Iterable[InvocationRecord]) -> dict[int, Counter[str]]:
    """Each invocation's quantities: the runner's usage (log bytes included), its wall time, its records."""
    amounts: dict[int, Counter[str]] = {}
    for record in records:
        amount = Counter(record.usage)
        amount["invocations"] += 1
        amount["duration_ms"] += record.duration_seconds * 1000
        if record.source in EVENT_SOURCES:
            amount["records"] += record.batch_size
        amounts[id(record)] = amount
    return amounts


def _smallest(amounts: list[Counter[str]]) -> Counter[str]:
    """Quantity by quantity, the smallest amount any one of these runs had (absent counts as 0).

    Not for the bytes a query reads: a run that counts every entry of an index reads as many bytes
    each hour, yet they grow with the population (only the request's minimum is a fixed part).
    """
    if not amounts:
        return Counter()
    keys = {key for key in set().union(*amounts) if not key.startswith(ENTRY_PROPORTIONAL)}
    return Counter({key: min(amount.get(key, 0) for amount in amounts) for key in keys})


def _rounded(amounts: Mapping[str, float]) -> dict[str, float]:
    return {key: round(value, 3) for key, value in sorted(amounts.items()) if value}


def _function_properties(cloud: LocalCloud, logical_id: str) -> Mapping[str, Any]:
    resource = cloud.resources.get(logical_id)
    return resource.properties if resource is not None else {}


def _batch_size(cloud: LocalCloud, function_name: str) -> int | None:
    sizes = [
        int(r.properties.get("BatchSize", 10))
        for r in cloud.resources.of_type("AWS::Lambda::EventSourceMapping")
        if r.properties.get("FunctionName") == function_name
    ]
    return max(sizes) if sizes else None


# ------------------------------------------------------------------------------------- the stack


def _custom_metric_alarms(cloud: LocalCloud) -> list[dict[str, Any]]:
    namespaces = {f.full_environment().get(CUSTOM_NAMESPACE_VARIABLE) for f in cloud.functions.values()}
    return [
        {
            "alarm": alarm.logical_id,
            "metric": alarm.properties.get("MetricName"),
            "treat_missing_data": alarm.properties.get("TreatMissingData", "missing"),
        }
        for alarm in cloud.resources.of_type("AWS::CloudWatch::Alarm")
        if alarm.properties.get("Namespace") in namespaces
    ]


def _dashboard_metrics(cloud: LocalCloud) -> set[str]:
    names: set[str] = set()
    for dashboard in cloud.resources.of_type("AWS::CloudWatch::Dashboard"):
        body = dashboard.properties.get("DashboardBody", "{}")
        for widget in json.loads(body if isinstance(body, str) else json.dumps(body)).get("widgets", []):
            for line in widget.get("properties", {}).get("metrics", []):
                names.add(str(line[1]))
    return names


def _log_retention_days(cloud: LocalCloud) -> int:
    days = [
        int(g.properties.get("RetentionInDays", 0)) for g in cloud.resources.of_type("AWS::Logs::LogGroup")
    ]
    return max(days) if days else 0


def _kms_encrypted(cloud: LocalCloud) -> int:
    """Resources the functions use that encrypt with a KMS key (each asks KMS for data keys)."""
    tables = [
        t for t in cloud.resources.of_type("AWS::DynamoDB::Table") if t.properties.get("SSESpecification")
    ]
    topics = [t for t in cloud.resources.of_type("AWS::SNS::Topic") if t.properties.get("KmsMasterKeyId")]
    return len(tables) + len(topics)
