"""CloudWatch alarms on SQS queue metrics, evaluated by the runner: moto stores alarms, evaluates none.

moto publishes no ``AWS/SQS`` metric, so :func:`evaluate_queue_alarms` reads each metric where SQS
would compute it, from the queue itself, at the current simulated instant:
``ApproximateNumberOfMessagesVisible`` (the queue's visible messages) and
``ApproximateAgeOfOldestMessage`` (seconds since the oldest message not deleted was sent). That
single value is compared with the alarm's threshold; ``Period``, ``EvaluationPeriods``,
``DatapointsToAlarm``, ``Statistic`` and ``TreatMissingData`` are not emulated. When the state
changes it is set with SetAlarmState, and CloudWatch's notification (its JSON shape) is published to
the SNS topics of the new state's actions (``AlarmActions`` for ALARM, ``OKActions`` for OK). Alarms on
any other metric are left as they are.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

QUEUE_METRICS = ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}


@dataclass(frozen=True, slots=True)
class AlarmEvaluation:
    """One alarm as the runner evaluated it."""

    name: str
    queue: str  # the QueueName dimension
    metric: str
    value: float
    threshold: float
    state: str  # "ALARM" or "OK"
    previous: str  # the state before this evaluation

    @property
    def changed(self) -> bool:
        return self.state != self.previous


def evaluate_queue_alarms(
    cloudwatch: Any, sqs: Any, sns: Any, *, now: datetime, region: str, account: str
) -> list[AlarmEvaluation]:
    """Evaluate every alarm on an SQS queue metric once, now; returns what each evaluated to."""
    evaluations = []
    for alarm in _metric_alarms(cloudwatch):
        queue = _queue_name(alarm)
        if alarm.get("Namespace") != "AWS/SQS" or alarm.get("MetricName") not in QUEUE_METRICS or not queue:
            continue
        value = _metric_value(alarm["MetricName"], queue, sqs, now=now, region=region, account=account)
        breaching = COMPARISONS[alarm["ComparisonOperator"]](value, float(alarm["Threshold"]))
        evaluation = AlarmEvaluation(
            name=alarm["AlarmName"],
            queue=queue,
            metric=alarm["MetricName"],
            value=value,
            threshold=float(alarm["Threshold"]),
            state="ALARM" if breaching else "OK",
            previous=alarm["StateValue"],
        )
        if evaluation.changed:
            _change_state(alarm, evaluation, cloudwatch, sns, now=now, region=region, account=account)
        evaluations.append(evaluation)
    return evaluations


def _metric_alarms(cloudwatch: Any) -> list[dict[str, Any]]:
    alarms: list[dict[str, Any]] = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        alarms += page["MetricAlarms"]
    return alarms


def _queue_name(alarm: dict[str, Any]) -> str | None:
    return next((d["Value"] for d in alarm.get("Dimensions", []) if d["Name"] == "QueueName"), None)


def _metric_value(metric: str, queue: str, sqs: Any, *, now: datetime, region: str, account: str) -> float:
    if metric == "ApproximateNumberOfMessagesVisible":
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return float(attributes["Attributes"]["ApproximateNumberOfMessages"])
    # SQS has no API that reads a message without receiving it: ask moto's backend for the send times.
    from moto.sqs.models import sqs_backends

    sent = [m.sent_timestamp for m in sqs_backends[account][region].get_queue(queue)._messages]
    return max(0.0, now.timestamp() - min(sent) / 1000) if sent else 0.0


def _change_state(
    alarm: dict[str, Any],
    evaluation: AlarmEvaluation,
    cloudwatch: Any,
    sns: Any,
    *,
    now: datetime,
    region: str,
    account: str,
) -> None:
    reason = (
        f"local runner: {evaluation.metric} of {evaluation.queue} is {evaluation.value:g} "
        f"({alarm['ComparisonOperator']} {evaluation.threshold:g}: {evaluation.state})"
    )
    cloudwatch.set_alarm_state(AlarmName=evaluation.name, StateValue=evaluation.state, StateReason=reason)
    if not alarm.get("ActionsEnabled", True):
        return
    notification = {
        "AlarmName": evaluation.name,
        "AlarmDescription": alarm.get("AlarmDescription"),
        "AWSAccountId": account,
        "NewStateValue": evaluation.state,
        "NewStateReason": reason,
        "StateChangeTime": now.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "Region": region,
        "AlarmArn": alarm["AlarmArn"],
        "OldStateValue": evaluation.previous,
        "Trigger": {
            "MetricName": evaluation.metric,
            "Namespace": "AWS/SQS",
            "Statistic": alarm.get("Statistic"),
            "Dimensions": [{"name": "QueueName", "value": evaluation.queue}],
            "Period": alarm.get("Period"),
            "EvaluationPeriods": alarm.get("EvaluationPeriods"),
            "ComparisonOperator": alarm["ComparisonOperator"],
            "Threshold": evaluation.threshold,
        },
    }
    actions = alarm.get("AlarmActions" if evaluation.state == "ALARM" else "OKActions", [])
    for topic in (arn for arn in actions if ":sns:" in arn):
        subject = f'{evaluation.state}: "{evaluation.name}" in {region}'
        sns.publish(TopicArn=topic, Subject=subject[:100], Message=json.dumps(notification))
