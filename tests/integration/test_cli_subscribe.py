"""``leap-tracker subscribe`` and ``leap-tracker tail`` against moto, through main([...]): the queue and
subscription the subscriber template would make, and a temporary filtered queue that prints events as
they come and is removed on exit."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from leap_tracker_cli import main as cli

REGION = "us-east-1"
STACK = "leap-connect-tracker"


@pytest.fixture
def topic() -> Iterator[str]:
    """moto with the events topic and a stack (moto's CloudFormation) whose output names it."""
    with mock_aws():
        arn = boto3.client("sns", region_name=REGION).create_topic(Name="events")["TopicArn"]
        template = {
            "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},  # a stack needs one
            "Outputs": {"EventsTopicArn": {"Value": arn}},
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName=STACK, TemplateBody=json.dumps(template)
        )
        yield arn


def clients(receive_hook: Callable[[], None] | None = None) -> Callable[..., Any]:
    """The CLI's client factory on moto; ``receive_hook`` runs before the first ReceiveMessage."""

    def client(service: str, region_name: str | None = None) -> Any:
        made = boto3.client(service, region_name=region_name or REGION)
        return HookedSqs(made, receive_hook) if service == "sqs" and receive_hook else made

    return client


class HookedSqs:
    def __init__(self, sqs: Any, hook: Callable[[], None]) -> None:
        self._sqs, self._hook, self.receives = sqs, hook, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def receive_message(self, **request: Any) -> Any:
        self.receives += 1
        if self.receives == 1:
            self._hook()
        return self._sqs.receive_message(**request)


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, client: Callable[..., Any] | None = None
) -> tuple[int, str, str]:
    status = cli.main(list(argv), environ={}, client=client or clients())
    out = capsys.readouterr()
    return status, out.out, out.err


def publish(topic: str, event_type: str, event_id: str, region: str = "CAISO") -> None:
    event = {"id": event_id, "type": event_type, "data": {"connection": {"transmission_region": region}}}
    attributes = {"type": event_type, "transmission_region": region}
    boto3.client("sns", region_name=REGION).publish(
        TopicArn=topic,
        Message=json.dumps(event),
        MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        **({"MessageGroupId": "g", "MessageDeduplicationId": event_id} if topic.endswith(".fifo") else {}),
    )


def received(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def queue_attributes(url: str) -> dict[str, str]:
    sqs = boto3.client("sqs", region_name=REGION)
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


# --- subscribe ------------------------------------------------------------------------------------------


def test_subscribe_makes_the_queue_its_dead_letter_queues_and_a_filtered_raw_subscription(
    topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        capsys, "subscribe", "--policy", "completions", "--queue-name", "crm", "--stack-name", STACK, "--json"
    )

    assert (status, err) == (0, "")
    made = json.loads(out)
    assert (made["filter"], made["topic_arn"]) == ("completions", topic)
    queue = queue_attributes(made["queue_url"])
    dead_letter, undelivered = made["dead_letter_queue_urls"]
    assert queue["SqsManagedSseEnabled"] == "true"
    assert json.loads(queue["RedrivePolicy"]) == {
        "deadLetterTargetArn": queue_attributes(dead_letter)["QueueArn"],
        "maxReceiveCount": 5,
    }
    policy = json.loads(queue["Policy"])["Statement"]
    assert policy[0]["Condition"] == {"ArnEquals": {"aws:SourceArn": topic}}
    assert policy[1]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert json.loads(queue_attributes(undelivered)["Policy"]) == json.loads(queue["Policy"])
    sns = boto3.client("sns", region_name=REGION)
    subscription = sns.get_subscription_attributes(SubscriptionArn=made["subscription_arn"])["Attributes"]
    assert subscription["RawMessageDelivery"] == "true"
    assert json.loads(subscription["RedrivePolicy"]) == {
        "deadLetterTargetArn": queue_attributes(undelivered)["QueueArn"]
    }

    publish(topic, "connection.completed", "e-1")
    publish(topic, "connection.error", "e-2")

    assert [event["id"] for event in received(made["queue_url"])] == ["e-1"]


def test_subscribe_with_an_own_policy_on_the_body_and_fifo_queues(
    topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo_topic = boto3.client("sns", region_name=REGION).create_topic(
        Name="events.fifo", Attributes={"FifoTopic": "true"}
    )["TopicArn"]
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"data": {"connection": {"transmission_region": ["PJM"]}}}))

    status, out, _ = run(
        capsys,
        "subscribe",
        "--policy-file",
        str(policy),
        "--scope",
        "MessageBody",
        "--queue-name",
        "pjm",
        "--fifo",
        "--topic-arn",
        fifo_topic,
    )

    assert status == 0
    assert "pjm.fifo receives" in out
    urls = [line.split()[-1] for line in out.splitlines() if "https://" in line]
    assert [url.rsplit("/", 1)[1] for url in urls] == [
        "pjm.fifo",
        "pjm-dead-letter.fifo",
        "pjm-undelivered.fifo",
    ]
    publish(fifo_topic, "connection.error", "e-1", region="PJM")
    publish(fifo_topic, "connection.error", "e-2", region="CAISO")
    assert [event["id"] for event in received(urls[0])] == ["e-1"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--policy", "completions", "--scope", "MessageBody"], "--scope is for --policy-file"),
        (["--policy-file", "/no/such/file.json"], "--policy-file /no/such/file.json"),
        (["--policy", "completions"], "cannot find the events topic: pass --stack-name or --topic-arn"),
    ],
    ids=["scope-with-a-ready-policy", "missing-file", "no-topic"],
)
def test_what_subscribe_cannot_do_is_exit_status_2_saying_why(
    topic: str, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    status, out, err = run(capsys, "subscribe", "--queue-name", "q", *argv)

    assert (status, out) == (2, "")
    assert says in err
    assert boto3.client("sqs", region_name=REGION).list_queues().get("QueueUrls", []) == []


def test_an_unknown_policy_name_is_refused_by_the_command_line(topic: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["subscribe", "--policy", "no-such", "--queue-name", "q"], environ={}, client=clients())

    assert exit_.value.code == 2


# --- tail -----------------------------------------------------------------------------------------------


def test_tail_prints_the_filtered_events_as_they_come_and_removes_its_queue(
    topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def events_arrive() -> None:  # once the temporary queue is subscribed
        publish(topic, "connection.completed", "e-1")
        publish(topic, "connection.error", "e-2")  # not a completion: filtered out
        publish(topic, "connection.completed", "e-3")
        publish(topic, "connection.completed", "e-4")  # after --max-messages: not shown

    status, out, err = run(
        capsys,
        "tail",
        "--policy",
        "completions",
        "--max-messages",
        "2",
        "--stack-name",
        STACK,
        client=clients(events_arrive),
    )

    assert (status, err) == (0, "")
    *events, summary = out.splitlines()
    assert [json.loads(line)["id"] for line in events] == ["e-1", "e-3"]
    assert summary.startswith("2 event(s) of completions; removed the queue leap-tracker-tail-")
    assert boto3.client("sqs", region_name=REGION).list_queues().get("QueueUrls", []) == []
    assert boto3.client("sns", region_name=REGION).list_subscriptions()["Subscriptions"] == []


def test_tail_stops_at_its_time_bound_and_on_ctrl_c_and_removes_its_queue_either_way(
    topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    quiet = run(capsys, "tail", "--seconds", "0", "--topic-arn", topic, "--json")
    stopped = run(capsys, "tail", "--topic-arn", topic, "--json", client=clients(interrupted))

    for status, out, _ in (quiet, stopped):
        assert status == 0
        assert json.loads(out)["events"] == 0
    assert boto3.client("sqs", region_name=REGION).list_queues().get("QueueUrls", []) == []
    assert boto3.client("sns", region_name=REGION).list_subscriptions()["Subscriptions"] == []
