"""The SQS subscribers' batch processor: every failure reported and logged, never the body."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from leap_tracker.adapters.sqs_batch import MASK, SqsBatchProcessor, mask_identifiers

ENTRY_ID = "CAISO_62631455-9dfd-433b-9482-fd043f2336d4_Client 7"
REF_ID = "Client 7"
CLOUD_EVENT = json.dumps(
    {
        "type": "connection.error",
        "subject": REF_ID,
        "data": {"connection": {"id": ENTRY_ID, "ref_id": REF_ID}},
    }
)


@dataclass
class RecordingLogger:
    lines: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.lines.append(("DEBUG", str(msg), kwargs["extra"]))

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.lines.append(("WARNING", str(msg), kwargs["extra"]))

    def text(self) -> str:
        return json.dumps(self.lines)


class Later(Exception):
    """A deferral: reported failed on purpose."""


def message(message_id: str, body: str, receive_count: str = "1") -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "handle",
        "body": body,
        "attributes": {"ApproximateReceiveCount": receive_count},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:queue",
        "awsRegion": "us-east-1",
    }


def handle(record: SQSRecord) -> str:
    """Bodies say what to do: ok, later, or anything else (parsed as JSON, as the subscribers do)."""
    if record.body == "ok":
        return "done"
    if record.body == "later":
        raise Later("not actionable until 2025-03-05T09:00:00+00:00")
    event = json.loads(record.body)
    raise ValueError(f"{event['data']['connection']['id']}: claim in flight")


def run(records: list[dict[str, Any]]) -> tuple[dict[str, Any], SqsBatchProcessor, RecordingLogger]:
    log = RecordingLogger()
    processor = SqsBatchProcessor(log, deferrals=(Later,))
    response = process_partial_response({"Records": records}, handle, processor)
    return response, processor, log


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def test_a_batch_whose_every_record_fails_is_a_partial_response_not_a_crash() -> None:
    records = [message("m1", "not json"), message("m2", "[1, 2]"), message("m3", CLOUD_EVENT)]

    response, processor, log = run(records)

    assert failed_ids(response) == ["m1", "m2", "m3"]
    assert processor.errors == 3
    assert processor.deferred == 0
    assert [(level, msg, extra["message_id"]) for level, msg, extra in log.lines] == [
        ("WARNING", "record rejected", "m1"),
        ("WARNING", "record rejected", "m2"),
        ("WARNING", "record rejected", "m3"),
    ]


def test_each_rejected_record_is_logged_with_its_id_and_reason_never_its_body() -> None:
    response, _, log = run([message("good", "ok"), message("bad", "not json", receive_count="3")])

    assert failed_ids(response) == ["bad"]
    ((level, msg, extra),) = log.lines  # the good record logs nothing here
    assert (level, msg) == ("WARNING", "record rejected")
    assert extra["message_id"] == "bad"
    assert extra["receive_count"] == 3
    assert extra["exception_type"] == "JSONDecodeError"
    assert extra["reason"] == "Expecting value: line 1 column 1 (char 0)"
    assert extra["raised_at"].startswith("decoder.py:")
    assert "not json" not in log.text()


def test_customer_identifiers_in_a_reason_are_masked() -> None:
    _, _, log = run([message("m1", CLOUD_EVENT)])

    ((_, _, extra),) = log.lines
    assert extra["exception_type"] == "ValueError"
    assert extra["reason"] == f"{MASK}: claim in flight"
    assert extra["raised_at"].startswith("test_sqs_batch.py:")
    assert extra["raised_at"].endswith(" (handle)")
    assert REF_ID not in log.text()
    assert "62631455" not in log.text()


def test_a_deferral_is_reported_but_logged_at_debug_and_counted_apart() -> None:
    response, processor, log = run([message("d1", "later"), message("e1", "not json"), message("ok", "ok")])

    assert failed_ids(response) == ["d1", "e1"]
    assert (processor.deferred, processor.errors) == (1, 1)
    levels = {extra["message_id"]: (level, msg) for level, msg, extra in log.lines}
    assert levels == {"d1": ("DEBUG", "record deferred"), "e1": ("WARNING", "record rejected")}
    assert log.lines[0][2]["reason"] == "not actionable until 2025-03-05T09:00:00+00:00"


def test_a_processor_reused_for_the_next_batch_counts_that_batch_only() -> None:
    log = RecordingLogger()
    processor = SqsBatchProcessor(log, deferrals=(Later,))
    process_partial_response({"Records": [message("a", "later"), message("b", "x")]}, handle, processor)

    response = process_partial_response({"Records": [message("c", "ok")]}, handle, processor)

    assert response == {"batchItemFailures": []}
    assert (processor.deferred, processor.errors) == (0, 0)


@pytest.mark.parametrize(
    ("text", "body", "expected"),
    [
        (f"{ENTRY_ID}: in flight", CLOUD_EVENT, f"{MASK}: in flight"),  # the entry id whole, ref id in it
        (f"ref {REF_ID!r} unknown", CLOUD_EVENT, f"ref '{MASK}' unknown"),
        ("Client 7 is quoted", "Client 7", "Client 7 is quoted"),  # not JSON: no identifier known
        ("no ids here", json.dumps({"subject": 7, "data": {"connection": ["x"]}}), "no ids here"),
        ("ref A\\nB", json.dumps({"subject": "A\nB"}), f"ref {MASK}"),  # as repr() writes it
        ("ref Q9", json.dumps({"data": {"connection": {"ref_id": "Q9"}}}), f"ref {MASK}"),
        ("x", json.dumps([1]), "x"),
        ("empty subject", json.dumps({"subject": ""}), "empty subject"),
        # A Leap webhook delivery (WebhookQueue): its partner_reference is the Reference ID.
        ("refused: Cust-9", json.dumps({"payload": {"partner_reference": "Cust-9"}}), f"refused: {MASK}"),
        ("Cust-9", json.dumps({"payload": "Cust-9"}), "Cust-9"),
        # A targeted poll request (PollRequestQueue): its ref_id.
        (
            "poll of Cust-9 failed",
            json.dumps({"ref_id": "Cust-9", "requested_at": "x"}),
            f"poll of {MASK} failed",
        ),
    ],
)
def test_mask_identifiers(text: str, body: str, expected: str) -> None:
    assert mask_identifiers(text, body) == expected
