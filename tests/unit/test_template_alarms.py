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

A queue or function planted in a copy of the template without its alarm is reported.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
    }
    assert set(of_type(resources, "AWS::SQS::Queue")) - failure_queues(resources) - read_queues(
        resources
    ) == {
        "OutreachRequestsQueue"  # the partner's: only an age alarm can tell nobody reads it
    }


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


def test_the_dashboard_plots_only_metrics_a_handler_publishes_under_its_namespace() -> None:
    resources = stack({})
    namespace, service = metrics_environment(resources)
    published = "\n".join(path.read_text() for path in HANDLERS)
    custom = [line for line in plotted(dashboard(resources)) if not line[0].startswith("AWS/")]

    assert custom
    for line in custom:
        assert [line[0], *line[2:]] == [namespace, "service", service], line
        assert f'"{line[1]}"' in published, f"no handler publishes {line[1]}"
    for alarm in of_type(resources, ALARM).values():
        if alarm["Namespace"] == namespace:
            assert f'"{alarm["MetricName"]}"' in published, alarm["MetricName"]


def test_the_dashboard_has_no_per_type_or_per_reason_dimension() -> None:
    """Custom metrics cost per name and dimension value: only the service dimension Powertools adds."""
    assert all(len(line) == 4 for line in plotted(dashboard(stack({}))) if not line[0].startswith("AWS/"))
