"""Emitter: the table stream's connection changes -> typed CloudEvents on the events topic.

Thin: each record's images become messages (``leap_tracker.emitter.stream``, pure), then one
publishing pass sends them, 10 per PublishBatch call, each entry's changes in order
(``leap_tracker.events.publishing``). A record whose events did not all publish, and every record
after it, is reported failed so the stream retries them in order (see
``leap_tracker.emitter.processor``). Each failed record leaves a failure marker in the table, and
publishing a record deletes its marker (``leap_tracker.emitter.markers``: why a marker error fails the
whole invocation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.failure_markers import DynamoFailureMarkers
from leap_tracker.adapters.metrics import add_count
from leap_tracker.adapters.secrets import log_pseudonyms
from leap_tracker.adapters.sns_publisher import SnsPublisher, events_publisher
from leap_tracker.config import Settings, load_settings, require
from leap_tracker.emitter.markers import FailureMarkerStore, MarkerCounts, settle_markers
from leap_tracker.emitter.processor import InOrderStreamProcessor
from leap_tracker.emitter.stream import record_messages
from leap_tracker.events.diff import DiffRules
from leap_tracker.events.publishing import OutgoingMessage, publish_in_order
from leap_tracker.timeutil import utc_now

logger = Logger()
metrics = Metrics()


@dataclass(frozen=True, slots=True)
class Dependencies:
    rules: DiffRules
    publisher: SnsPublisher
    markers: FailureMarkerStore
    marker_retention_days: int  # a failure marker expires with the history it is replayed from


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service.
    The log hash key (a FIFO topic's group ids are entry pseudonyms) is read here, once."""
    publisher = events_publisher(settings, client("sns"), log_pseudonyms(settings))
    markers = DynamoFailureMarkers(
        client("dynamodb"), require(settings.connections_table, "CONNECTIONS_TABLE")
    )
    retention = settings.poller.history_retention_days  # the poller writes the history, with this TTL
    return Dependencies(DiffRules.from_settings(settings), publisher, markers, retention)


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
    deps = deps or dependencies()
    publisher = deps.publisher
    processor = InOrderStreamProcessor(lambda records: publish_in_order(records, publisher), logger=logger)
    counts = MarkerCounts()
    try:
        try:
            response = process_partial_response(event, partial(prepare, rules=deps.rules), processor, context)
        except BatchProcessingError:  # every record failed: they get their markers before Lambda retries
            settle(processor, deps, counts)
            raise
        settle(processor, deps, counts)  # a marker error raises: leap_tracker.emitter.markers says why
        return response
    finally:
        outcome = processor.outcome
        add_count(metrics, "RecordsFailed", len(processor.fail_messages))
        add_count(metrics, "EventsPublished", outcome.published_messages)
        if outcome.failures:
            logger.warning("events not published", extra={"failures": outcome.failures})
        # Records, calls and markers are no metric (no alarm or widget reads them): this line keeps them.
        logger.info(
            "emitter batch",
            extra={
                "records": len(event.get("Records", [])),
                "records_failed": len(processor.fail_messages),
                "events_published": outcome.published_messages,
                "publish_batch_calls": outcome.calls,
                "failure_markers_written": counts.written,
            },
        )


def settle(processor: InOrderStreamProcessor, deps: Dependencies, counts: MarkerCounts) -> None:
    """Write the failed records' markers and delete the published ones'; a marker error raises."""
    now = utc_now()
    settle_markers(
        deps.markers, processor.published, processor.failed, now, deps.marker_retention_days, counts
    )
    if counts.deleted:
        logger.info("failure markers cleared", extra={"deleted": counts.deleted})
