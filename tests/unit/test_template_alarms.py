"""Alarms, dashboard and runbook (docs/operations.md), read from the TRANSFORMED template: what deploys.

- Every queue is watched: a queue that holds failures (a redrive target, an on-failure destination,
  a schedule's dead-letter queue) by its visible messages, a queue nothing in the stack reads by the
  age of its oldest message, and a queue a function reads has a dead-letter queue (so its failures
  land somewhere watched). Every function has an Errors and a Throttles alarm, a stream reader an
  IteratorAge alarm, and the poller's freshness metric an alarm that treats missing data as breaching.
- Every alarm notifies the AlarmTopic (and when OK again), is named so that the topic's policy lets
  CloudWatch publish it, and its description links a section of docs/operations.md that exists.
- The custom metrics' alarms use the namespace and ``service`` dimension the functions' Powertools
  environment gives them (tests/e2e/test_alarms_e2e.py compares them with what the handlers emit).
- The dashboard shows every queue, function and alarm, and plots only metrics a handler publishes.
- Every custom metric a handler publishes is on an alarm or the dashboard and is listed, with who
  publishes it and whether its zeros are, in docs/operations.md#custom-metrics; an alarm that does not
  treat missing data as not breaching watches a metric published with its zeros (``DENSE_METRICS``).

A queue or function planted in a copy of the template without its alarm is reported.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from functions.poller import app as poller_app
from leap_tracker.adapters.funnel import funnel_statuses
from tests.templates import (
    CONFIGURATIONS,
    PSEUDO,
    configurations,
    of_type,
    sam_template,
    stack,
)

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "docs" / "operations.md"
HANDLERS = sorted((REPO / "functions").glob("*/app.py"))
ALARM = "AWS::CloudWatch::Alarm"
ALARM_TOPIC = "AlarmTopic"
RUNBOOK_LINK = re.compile(r"docs/operations\.md#([a-z0-9-]+)")

Resources = dict[str, dict[str, Any]]


# --- what the stack holds -------------------------------------------------------------------------


def queue_of(arn: Any, resources: Resources) -> str | None:
    """The stack's queue an ARN reference (``X.Arn``) names, if it is one."""
    name = arn.removesuffix(".Arn") if isinstance(arn, str) else None
    return name if name in of_type(resources, "AWS::SQS::Queue") else None


def failure_queues(resources: Resources) -> set[str]:
    """Queues whose role is to hold failures: redrive targets of queues and subscriptions, on-failure
    destinations of event source mappings and asynchronous invocations, dead-letter queues of
    schedules and functions."""
    targets: list[Any] = []
    for kind in ("AWS::SQS::Queue", "AWS::SNS::Subscription"):
        targets += [
            p.get("RedrivePolicy", {}).get("deadLetterTargetArn") for p in of_type(resources, kind).values()
        ]
    for kind in ("AWS::Lambda::EventSourceMapping", "AWS::Lambda::EventInvokeConfig"):
        targets += [
            p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            for p in of_type(resources, kind).values()
        ]
    targets += [
        p["Target"].get("DeadLetterConfig", {}).get("Arn")
        for p in of_type(resources, "AWS::Scheduler::Schedule").values()
    ]
    targets += [
        p.get("DeadLetterConfig", {}).get("TargetArn")
        for p in of_type(resources, "AWS::Lambda::Function").values()
    ]
    return {queue for queue in (queue_of(t, resources) for t in targets) if queue}


def read_queues(resources: Resources) -> set[str]:
    """Queues a function of the stack reads (an event source mapping)."""
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    return {queue for queue in (queue_of(m["EventSourceArn"], resources) for m in mappings) if queue}


def stream_readers(resources: Resources) -> set[str]:
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    return {m["FunctionName"] for m in mappings if m["EventSourceArn"].endswith(".StreamArn")}


def metrics_environment(resources: Resources) -> tuple[str, str]:
    """The namespace and service name every function's Powertools metrics are published under."""
    found = {
        (
            p["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"],
            p["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"],
        )
        for p in of_type(resources, "AWS::Lambda::Function").values()
    }
    assert len(found) == 1, f"the functions publish under different namespaces or services: {found}"
    return found.pop()


def watching(
    resources: Resources, namespace: str, metric: str, dimensions: dict[str, str]
) -> list[dict[str, Any]]:
    """The alarms on that metric with exactly those dimensions."""
    return [
        alarm
        for alarm in of_type(resources, ALARM).values()
        if (alarm.get("Namespace"), alarm.get("MetricName")) == (namespace, metric)
        and {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])} == dimensions
    ]


def runbook_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown page's headings (not the comments in its code blocks)."""
    anchors, in_code = set(), False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#{1,6} (.+)", line)):
            title = match.group(1).strip().lower().replace("`", "")
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


# --- the findings ---------------------------------------------------------------------------------


def alarm_findings(resources: Resources, runbook: str) -> list[str]:
    """Everything unwatched or wrongly wired; empty for a stack with all its alarms."""
    findings: list[str] = []
    queues = set(of_type(resources, "AWS::SQS::Queue"))
    failures, read = failure_queues(resources), read_queues(resources)
    for queue in sorted(failures):
        if not _breaching_above(
            watching(
                resources,
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": f"{queue}.QueueName"},
            ),
            0,
        ):
            findings.append(f"{queue}: holds failures, but no alarm on its visible messages (> 0)")
    for queue in sorted(queues - failures - read):
        if not watching(
            resources, "AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": f"{queue}.QueueName"}
        ):
            findings.append(
                f"{queue}: nothing in the stack reads it, and no alarm on its oldest message's age"
            )
    for queue in sorted(read):
        if not queue_of(
            resources[queue]["Properties"].get("RedrivePolicy", {}).get("deadLetterTargetArn"), resources
        ):
            findings.append(f"{queue}: a function reads it, but its failures go to no dead-letter queue")
    for function in sorted(of_type(resources, "AWS::Lambda::Function")):
        for metric in ("Errors", "Throttles"):
            if not _breaching_above(watching(resources, "AWS/Lambda", metric, {"FunctionName": function}), 0):
                findings.append(f"{function}: no {metric} alarm (> 0)")
    for function in sorted(stream_readers(resources)):
        if not watching(resources, "AWS/Lambda", "IteratorAge", {"FunctionName": function}):
            findings.append(f"{function}: reads a stream, but no IteratorAge alarm")
    findings += _freshness_findings(resources)
    findings += _wiring_findings(resources, runbook)
    return findings


def _breaching_above(alarms: list[dict[str, Any]], threshold: float) -> bool:
    return any(
        a["ComparisonOperator"] == "GreaterThanThreshold" and float(a["Threshold"]) == threshold
        for a in alarms
    )


def _freshness_findings(resources: Resources) -> list[str]:
    namespace, service = metrics_environment(resources)
    alarms = watching(resources, namespace, "PollPassCompleted", {"service": service})
    fresh = [
        a
        for a in alarms
        if a["TreatMissingData"] == "breaching"
        and a["ComparisonOperator"] == "LessThanThreshold"
        and float(a["Threshold"]) == 1
        and a["Statistic"] == "Sum"
    ]
    return [] if fresh else ["no freshness alarm: PollPassCompleted sum < 1, missing data breaching"]


def _wiring_findings(resources: Resources, runbook: str) -> list[str]:
    findings = []
    anchors = runbook_anchors(runbook)
    namespace, service = metrics_environment(resources)
    prefix = f"{PSEUDO['AWS::StackName']}-"
    for name, alarm in sorted(of_type(resources, ALARM).items()):
        for actions in ("AlarmActions", "OKActions"):
            if alarm.get(actions) != [ALARM_TOPIC]:
                findings.append(f"{name}: {actions} {alarm.get(actions)} is not [{ALARM_TOPIC}]")
        if not alarm["AlarmName"].startswith(prefix):  # the topic policy's aws:SourceArn pattern
            findings.append(f"{name}: AlarmName {alarm['AlarmName']!r} does not start with the stack name")
        links = RUNBOOK_LINK.findall(alarm.get("AlarmDescription", ""))
        if not links:
            findings.append(f"{name}: the description links no docs/operations.md section")
        findings += [
            f"{name}: docs/operations.md has no section #{link}" for link in links if link not in anchors
        ]
        if alarm.get("Namespace", "").startswith("AWS/"):
            continue
        if alarm.get("Namespace") != namespace or alarm.get("Dimensions") != [
            {"Name": "service", "Value": service}
        ]:
            findings.append(f"{name}: not the functions' namespace {namespace!r} and service {service!r}")
    return findings


# --- the template as it is ------------------------------------------------------------------------


@configurations
def test_every_queue_function_stream_and_the_freshness_metric_have_their_alarm(
    overrides: dict[str, str],
) -> None:
    assert alarm_findings(stack(overrides), RUNBOOK.read_text()) == []


def test_the_failure_queues_are_the_ones_the_issue_names() -> None:
    """The derivation above finds each queue the template keeps failures in, and only those."""
    resources = stack({})
    assert failure_queues(resources) == {
        "EmitterFailureQueue",
        "ScheduledRunFailureQueue",
        "OutreachDeadLetterQueue",
        "MeterWatchDeadLetterQueue",
        "OutreachRequestsDeadLetterQueue",
        "PollerFunctionHourlyQueue",
        "OutreachFunctionFollowUpQueue",
        "MeterSweepFunctionHourlyQueue",
        "InsightFunctionDailyQueue",
        "WebhookDeadLetterQueue",
        "PollRequestDeadLetterQueue",
    }
    unread = set(of_type(resources, "AWS::SQS::Queue")) - failure_queues(resources) - read_queues(resources)
    assert unread <= {
        "OutreachRequestsQueue",  # the partner's: only an age alarm can tell nobody reads it
        "WebhookQueue",  # read by the webhook processor; an age alarm watches it either way
        "WebhookRejectedQueue",  # read by an operator: its age alarm tells one is waiting
    }
    assert "OutreachRequestsQueue" in unread


def test_the_freshness_alarm_spans_the_parameter_hours_and_treats_no_data_as_stale() -> None:
    for hours in ("3", "12"):
        (alarm,) = watching(
            stack({"PollFreshnessHours": hours}),
            "LeapConnectTracker",
            "PollPassCompleted",
            {"service": "leap-connect-tracker"},
        )
        assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
            3600,
            hours,
            hours,
        )
        assert alarm["TreatMissingData"] == "breaching"


def test_every_section_of_the_runbook_is_linked_by_an_alarm() -> None:
    """No section for an alarm that does not exist (a renamed alarm leaves none behind)."""
    runbook = RUNBOOK.read_text()
    sections = runbook.split("\n## Runbook\n", 1)[1]
    linked = {
        link
        for alarm in of_type(stack({}), ALARM).values()
        for link in RUNBOOK_LINK.findall(alarm["AlarmDescription"])
    }
    assert runbook_anchors(sections) == linked


def test_the_alarm_email_is_subscribed_only_when_given() -> None:
    def emails(overrides: dict[str, str]) -> list[str]:
        subscriptions = of_type(stack(overrides), "AWS::SNS::Subscription").values()
        return [
            s["Endpoint"] for s in subscriptions if s["TopicArn"] == ALARM_TOPIC and s["Protocol"] == "email"
        ]

    assert emails({}) == []
    assert emails(CONFIGURATIONS["key, partners and webhook"]) == ["operations@partner.example"]


# --- planted in a copy: reported ------------------------------------------------------------------


def _a_partner_export_queue(sam: dict[str, Any]) -> None:
    sam["Resources"]["PartnerExportQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {"MessageRetentionPeriod": 1209600},
    }


def _a_new_dead_letter_queue(sam: dict[str, Any]) -> None:
    sam["Resources"]["MeterWatchParkingQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    redrive = sam["Resources"]["MeterWatchQueue"]["Properties"]["RedrivePolicy"]
    redrive["deadLetterTargetArn"] = {"Fn::GetAtt": ["MeterWatchParkingQueue", "Arn"]}


def _a_read_queue_without_redrive(sam: dict[str, Any]) -> None:
    del sam["Resources"]["MeterWatchQueue"]["Properties"]["RedrivePolicy"]


def _a_new_function(sam: dict[str, Any]) -> None:
    report = copy.deepcopy(sam["Resources"]["MeterWatchFunction"])
    del report["Properties"]["Events"]
    sam["Resources"]["ReportFunction"] = report


def _no_iterator_age_alarm(sam: dict[str, Any]) -> None:
    sam["Resources"]["EmitterIteratorAgeAlarm"]["Properties"]["MetricName"] = "Duration"


def _freshness_without_breaching(sam: dict[str, Any]) -> None:
    sam["Resources"]["PollFreshnessAlarm"]["Properties"]["TreatMissingData"] = "notBreaching"


def _an_alarm_to_another_topic(sam: dict[str, Any]) -> None:
    sam["Resources"]["MeterWatchErrorsAlarm"]["Properties"]["AlarmActions"] = [{"Ref": "EventsTopic"}]


def _a_link_to_no_section(sam: dict[str, Any]) -> None:
    alarm = sam["Resources"]["MetersApiFailuresAlarm"]["Properties"]
    alarm["AlarmDescription"] = "Meters API failures. Runbook: docs/operations.md#meters-api-trouble"


def _a_description_without_link(sam: dict[str, Any]) -> None:
    sam["Resources"]["EmitterThrottlesAlarm"]["Properties"]["AlarmDescription"] = "The emitter is throttled."


def _another_service_name(sam: dict[str, Any]) -> None:
    alarm = sam["Resources"]["LeapAuthFailuresAlarm"]["Properties"]
    alarm["Dimensions"] = [{"Name": "service", "Value": "leap-tracker"}]


PLANTS: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (_a_partner_export_queue, "PartnerExportQueue: nothing in the stack reads it"),
    (_a_new_dead_letter_queue, "MeterWatchParkingQueue: holds failures, but no alarm"),
    (
        _a_read_queue_without_redrive,
        "MeterWatchQueue: a function reads it, but its failures go to no dead-letter queue",
    ),
    (_a_new_function, "ReportFunction: no Errors alarm"),
    (_a_new_function, "ReportFunction: no Throttles alarm"),
    (_no_iterator_age_alarm, "EmitterFunction: reads a stream, but no IteratorAge alarm"),
    (_freshness_without_breaching, "no freshness alarm"),
    (_an_alarm_to_another_topic, "MeterWatchErrorsAlarm: AlarmActions ['EventsTopic']"),
    (_a_link_to_no_section, "MetersApiFailuresAlarm: docs/operations.md has no section #meters-api-trouble"),
    (
        _a_description_without_link,
        "EmitterThrottlesAlarm: the description links no docs/operations.md section",
    ),
    (_another_service_name, "LeapAuthFailuresAlarm: not the functions' namespace"),
]


@pytest.mark.parametrize(
    ("plant", "reported"), PLANTS, ids=[f"{p.__name__.strip('_')}-{n}" for n, (p, _) in enumerate(PLANTS)]
)
def test_a_planted_gap_is_reported(plant: Callable[[dict[str, Any]], None], reported: str) -> None:
    sam = copy.deepcopy(sam_template())
    plant(sam)

    findings = alarm_findings(stack({}, sam), RUNBOOK.read_text())

    assert any(finding.startswith(reported) for finding in findings), findings


# --- the dashboard --------------------------------------------------------------------------------


def dashboard(resources: Resources) -> dict[str, Any]:
    (board,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    return json.loads(board["DashboardBody"])


def plotted(body: dict[str, Any]) -> list[list[Any]]:
    """Every metric line of the dashboard's metric widgets, without its options."""
    return [
        [part for part in line if not isinstance(part, dict)]
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for line in widget["properties"]["metrics"]
    ]


def test_the_dashboard_shows_every_queue_function_and_alarm() -> None:
    resources = stack({})
    body = dashboard(resources)
    lines = plotted(body)

    queues = {
        line[3]
        for line in lines
        if line[:3] == ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName"]
    }
    assert queues == {f"{q}.QueueName" for q in of_type(resources, "AWS::SQS::Queue")}
    for metric in ("Errors", "Throttles"):
        functions = {line[3] for line in lines if line[:3] == ["AWS/Lambda", metric, "FunctionName"]}
        assert functions == set(of_type(resources, "AWS::Lambda::Function")), metric
    assert ["AWS/Lambda", "IteratorAge", "FunctionName", "EmitterFunction"] in lines
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(
        f"{a}.Arn" for a in of_type(resources, ALARM)
    )
    assert {w["properties"]["region"] for w in body["widgets"] if w["type"] == "metric"} == {
        PSEUDO["AWS::Region"]
    }


def test_the_dashboard_plots_custom_metrics_under_the_functions_namespace_and_service() -> None:
    resources = stack({})
    namespace, service = metrics_environment(resources)
    custom = [line for line in plotted(dashboard(resources)) if not line[0].startswith("AWS/")]

    assert custom
    for line in custom:
        assert [line[0], *line[2:4]] == [namespace, "service", service], line


# --- the custom metrics: handlers, alarms, dashboard and docs/operations.md agree ------------------
#
# What a handler publishes is read from its source: the name at each add_count / add_metric /
# single_metric call (a string or a module constant), and the keys of the dict a ``*_metrics``
# function returns (the poller's run_metrics, the sweep's sweep_metrics, forwarded by a loop or
# add_counts). Its counts with their zeros: the names in its DENSE_METRICS, or add_count(dense=True).

EMITTERS = {"add_count": 1, "add_metric": 0, "single_metric": 0}  # the name's position among the args
# Alarms that act the same on no data and on zero: the metric they watch may leave its zeros out.
SPARSE_SAFE = {"notBreaching", "ignore"}


def _constants(tree: ast.Module) -> dict[str, Any]:
    """The module's NAME = "text" and NAME = frozenset({"text", ...}) constants."""
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found[node.targets[0].id] = value.value
            elif isinstance(value, ast.Call) and getattr(value.func, "id", None) == "frozenset":
                found[node.targets[0].id] = {e.value for e in ast.walk(value) if isinstance(e, ast.Constant)}
    return found


def _callee(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def published_metrics(sources: dict[str, str]) -> tuple[dict[str, set[str]], set[str], list[str]]:
    """From the handlers' sources (by function directory): metric -> the handlers publishing it, the
    metrics published with their zeros, and what cannot be read or breaks the zero rule."""
    by_metric: dict[str, set[str]] = {}
    dense: set[str] = set()
    findings: list[str] = []
    for handler, source in sorted(sources.items()):
        tree = ast.parse(source)
        constants = _constants(tree)
        dense |= constants.get("DENSE_METRICS", set())
        forwarded = [
            key.value
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_metrics")
            for ret in ast.walk(node)
            if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict)
            for key in ret.value.keys
            if isinstance(key, ast.Constant)
        ]
        names = set(forwarded)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            callee = _callee(call)
            if callee == "add_counts" and not forwarded:
                findings.append(f"{handler}:{call.lineno}: add_counts without a *_metrics function")
            if callee not in EMITTERS:
                continue
            keywords = {k.arg: k.value for k in call.keywords}
            position = EMITTERS[callee]
            node = keywords.get("name", call.args[position] if len(call.args) > position else None)
            if isinstance(node, ast.Constant):
                name = node.value
            elif isinstance(node, ast.Name) and isinstance(constants.get(node.id), str):
                name = constants[node.id]
            else:
                if not forwarded:
                    findings.append(f"{handler}:{call.lineno}: a metric name that is not written out")
                continue
            names.add(name)
            if isinstance(keywords.get("dense"), ast.Constant) and keywords["dense"].value is True:
                dense.add(name)
            unit = keywords.get(
                "unit", call.args[1] if callee == "add_metric" and len(call.args) > 1 else None
            )
            if callee == "add_metric" and isinstance(unit, ast.Attribute) and unit.attr == "Count":
                findings.append(f"{handler}:{call.lineno}: {name} is a Count published without add_count")
        for name in names:
            by_metric.setdefault(name, set()).add(handler)
    return by_metric, dense, findings


def documented_metrics(runbook: str) -> dict[str, tuple[set[str], bool]]:
    """docs/operations.md#custom-metrics: metric -> (the handlers publishing it, published every run)."""
    section = runbook.split("\n## Custom metrics\n", 1)[1].split("\n## ", 1)[0]
    found: dict[str, tuple[set[str], bool]] = {}
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        names, handlers, when, _ = (cell.strip() for cell in row.strip("|").split(" | "))
        publishers = {h.strip().replace(" ", "_") for h in handlers.split(",")}
        for name in re.findall(r"`(\w+)`", names):
            found[name] = (publishers, when.startswith("every run"))
    return found


def metric_findings(resources: Resources, sources: dict[str, str], runbook: str) -> list[str]:
    """Every custom metric that no handler publishes, nothing shows, the runbook does not list (or
    lists otherwise), or whose alarm needs zeros its handler does not publish; empty when they agree."""
    namespace, _ = metrics_environment(resources)
    published, dense, findings = published_metrics(sources)
    alarms = {a["MetricName"]: a for a in of_type(resources, ALARM).values() if a["Namespace"] == namespace}
    plotted_names = {line[1] for line in plotted(dashboard(resources)) if line[0] == namespace}
    for name in sorted(set(alarms) - set(published)):
        findings.append(f"{name}: an alarm watches it, but no handler publishes it")
    for name in sorted(plotted_names - set(published)):
        findings.append(f"{name}: the dashboard plots it, but no handler publishes it")
    for name in sorted(set(published) - set(alarms) - plotted_names):
        findings.append(f"{name}: published, but on no alarm and not on the dashboard")
    for name, alarm in sorted(alarms.items()):
        treat = alarm.get("TreatMissingData", "missing")
        if treat not in SPARSE_SAFE and name in published and name not in dense:
            findings.append(
                f"{name}: its alarm treats missing data as {treat}, but its zeros are not published"
            )
    documented = documented_metrics(runbook)
    for name in sorted(set(published) | set(documented)):
        if name not in documented:
            findings.append(f"{name}: published, but docs/operations.md#custom-metrics does not list it")
        elif name not in published:
            findings.append(
                f"{name}: docs/operations.md#custom-metrics lists it, but no handler publishes it"
            )
        elif documented[name] != (published[name], name in dense):
            findings.append(
                f"{name}: docs/operations.md#custom-metrics says {documented[name]}, "
                f"the handlers {(published[name], name in dense)}"
            )
    return findings


def handler_sources() -> dict[str, str]:
    return {path.parent.name: path.read_text() for path in HANDLERS}


def test_handlers_alarms_dashboard_and_runbook_agree_on_the_custom_metrics() -> None:
    published, dense, _ = published_metrics(handler_sources())

    assert metric_findings(stack({}), handler_sources(), RUNBOOK.read_text()) == []
    assert dense == {"PollPassCompleted"}  # the freshness alarm's: missing data is breaching
    assert len(published) > 30  # the reading of the sources finds them (a broken parse finds none)
    assert published["LeapAuthFailures"] == {"poller", "meter_sweep", "webhook_processor"}


def _edit(sources: dict[str, str], handler: str, old: str, new: str) -> dict[str, str]:
    assert old in sources[handler], old
    return {**sources, handler: sources[handler].replace(old, new, 1)}


RETRIES = 'add_count(metrics, "OutreachRecordsFailed", processor.errors)'
SOURCE_PLANTS: list[tuple[Callable[[dict[str, str]], dict[str, str]], str]] = [
    (
        lambda s: _edit(s, "outreach", RETRIES, f'{RETRIES}\n    add_count(metrics, "OutreachRetried", 1)'),
        "OutreachRetried: published, but on no alarm and not on the dashboard",
    ),
    (
        lambda s: _edit(s, "outreach", RETRIES, f'{RETRIES}\n    add_count(metrics, "OutreachRetried", 1)'),
        "OutreachRetried: published, but docs/operations.md#custom-metrics does not list it",
    ),
    (
        lambda s: _edit(
            s, "poller", '"LeapRetries": summary.retries,', '"LeapRetries": summary.retries, "X": 1,'
        ),
        "X: published, but on no alarm",
    ),
    (
        lambda s: _edit(
            _edit(s, "meter_sweep", '"MetersApiFailures": summary.leap_failures,', ""),
            "webhook_processor",
            'add_count(metrics, "MetersApiFailures", 1)',
            "",
        ),
        "MetersApiFailures: an alarm watches it, but no handler publishes it",
    ),
    (
        lambda s: _edit(
            s, "emitter", 'add_count(metrics, "EventsPublished"', 'add_count(metrics, "EventsSent"'
        ),
        "EventsPublished: the dashboard plots it, but no handler publishes it",
    ),
    (
        lambda s: _edit(s, "poller", 'frozenset({"PollPassCompleted"})', "frozenset()"),
        "PollPassCompleted: its alarm treats missing data as breaching, but its zeros are not published",
    ),
    (
        lambda s: _edit(
            s,
            "meter_watch",
            RETRIES.replace("OutreachRecordsFailed", "MeterWatchRecordsFailed"),
            'metrics.add_metric(name="MeterWatchRecordsFailed", unit=MetricUnit.Count, value=0)',
        ),
        "meter_watch:",  # its zeros would be published: a Count goes through add_count
    ),
    (
        lambda s: _edit(
            s, "outreach", RETRIES, 'name = "OutreachRecordsFailed"\n    add_count(metrics, name, 1)'
        ),
        "outreach:",  # a name the reading cannot see
    ),
]


@pytest.mark.parametrize(
    ("plant", "reported"),
    SOURCE_PLANTS,
    ids=[f"{n}-{reported.split(':')[0]}" for n, (_, reported) in enumerate(SOURCE_PLANTS)],
)
def test_a_metric_planted_in_a_handler_is_reported(
    plant: Callable[[dict[str, str]], dict[str, str]], reported: str
) -> None:
    findings = metric_findings(stack({}), plant(handler_sources()), RUNBOOK.read_text())

    assert any(finding.startswith(reported) for finding in findings), findings


def test_a_dashboard_line_or_alarm_without_a_publisher_is_reported() -> None:
    sam = copy.deepcopy(sam_template())
    board = sam["Resources"]["OperationsDashboard"]["Properties"]
    body = board["DashboardBody"]["Fn::Sub"]
    board["DashboardBody"]["Fn::Sub"] = body.replace('"PageTokenRestarts"', '"PagesFetched"', 1)
    sam["Resources"]["MetersApiFailuresAlarm"]["Properties"]["MetricName"] = "MeterSearchFailures"

    findings = metric_findings(stack({}, sam), handler_sources(), RUNBOOK.read_text())

    assert "PagesFetched: the dashboard plots it, but no handler publishes it" in findings
    assert "MeterSearchFailures: an alarm watches it, but no handler publishes it" in findings
    assert "PageTokenRestarts: published, but on no alarm and not on the dashboard" in findings
    assert "MetersApiFailures: published, but on no alarm and not on the dashboard" not in findings  # plotted


def test_a_runbook_that_lists_a_metric_otherwise_is_reported() -> None:
    runbook = RUNBOOK.read_text()
    row = next(line for line in runbook.splitlines() if line.startswith("| `InvalidInput` |"))
    changed = runbook.replace(row, row.replace("| poller |", "| poller, emitter |"))
    gone = runbook.replace(row + "\n", "")

    [finding] = metric_findings(stack({}), handler_sources(), changed)
    assert finding.startswith("InvalidInput: docs/operations.md#custom-metrics says"), finding
    assert metric_findings(stack({}), handler_sources(), gone) == [
        "InvalidInput: published, but docs/operations.md#custom-metrics does not list it"
    ]


def test_the_dashboard_has_no_per_type_or_per_reason_dimension() -> None:
    """Custom metrics cost per name and dimension value: only the service dimension Powertools adds,
    and the funnel's ConnectionStatus, which has exactly the values a count reports (known + OTHER)."""
    custom = [line for line in plotted(dashboard(stack({}))) if not line[0].startswith("AWS/")]
    funnel = [line for line in custom if line[1] == poller_app.FUNNEL_METRIC]
    assert all(len(line) == 4 for line in custom if line not in funnel)
    assert all(len(line) == 6 and line[4] == poller_app.FUNNEL_DIMENSION for line in funnel), funnel
    assert sorted(line[5] for line in funnel) == sorted(funnel_statuses())
