"""Emitter: the table stream's connection changes -> typed CloudEvents on the events topic.

Thin: each record's images become messages (``leap_tracker.emitter.stream``, pure), then one ordered
publishing pass sends them, 10 per PublishBatch call. A record whose events did not all publish, and
every record after it, is reported failed so the stream retries them in order (see
``leap_tracker.emitter.processor``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.secrets import log_pseudonyms
from leap_tracker.adapters.sns_publisher import SnsPublisher, events_publisher
from leap_tracker.config import Settings, load_settings
from leap_tracker.emitter.processor import InOrderStreamProcessor
from leap_tracker.emitter.stream import record_messages
from leap_tracker.events.diff import DiffRules
from leap_tracker.events.publishing import OutgoingMessage, publish_in_order

logger = Logger()
metrics = Metrics()


@dataclass(frozen=True, slots=True)
class Dependencies:
    rules: DiffRules
    publisher: SnsPublisher


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service.
    The log hash key (a FIFO topic's group ids are entry pseudonyms) is read here, once."""
    publisher = events_publisher(settings, client("sns"), log_pseudonyms(settings))
    return Dependencies(DiffRules.from_settings(settings), publisher)


@cache
def dependencies() -> Dependencies:
    """Built from the environment on the first invocation (cold start), reused while it is warm."""
    return build_dependencies(load_settings())


def prepare(record: DynamoDBRecord, rules: DiffRules) -> list[OutgoingMessage]:
    return record_messages(record.dynamodb.old_image, record.dynamodb.new_image, rules)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: Dependencies | None = None
) -> dict[str, Any]:
    """The Lambda entry point; without ``deps`` it uses the cold start's (tests pass their own)."""
    metrics.add_metric("RecordsReceived", MetricUnit.Count, len(event.get("Records", [])))
    deps = deps or dependencies()
    publisher = deps.publisher
    processor = InOrderStreamProcessor(lambda records: publish_in_order(records, publisher), logger=logger)
    try:
        return process_partial_response(event, partial(prepare, rules=deps.rules), processor, context)
    finally:
        outcome = processor.outcome
        metrics.add_metric("RecordsFailed", MetricUnit.Count, len(processor.fail_messages))
        metrics.add_metric("EventsPublished", MetricUnit.Count, outcome.published_messages)
        metrics.add_metric("PublishBatchCalls", MetricUnit.Count, outcome.calls)
        if outcome.failures:
            logger.warning("events not published", extra={"failures": outcome.failures})
