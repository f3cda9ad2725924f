"""meter_watch: connection.completed events (SQS, raw SNS delivery) -> one meter watch per connection.

Thin: each record's body is a CloudEvent; ``leap_tracker.meters.opening.open_watch`` opens the watch
idempotently, and at once satisfied (``meter.appeared`` published, the watch closed) when a
``meter.created`` webhook came first and its meters were remembered. A record that fails (malformed
event, table error, SNS refusing that meter.appeared) is reported to SQS alone, even when the whole
batch fails, logged by message id and reason (``leap_tracker.adapters.sqs_batch``), retried, and
after the queue's maxReceiveCount lands in the dead-letter queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.metrics import add_count
from leap_tracker.adapters.remembered_meters import DynamoRememberedMeters
from leap_tracker.adapters.secrets import log_pseudonyms
from leap_tracker.adapters.sns_publisher import events_publisher
from leap_tracker.adapters.sqs_batch import SqsBatchProcessor
from leap_tracker.adapters.watch_store import DynamoWatchStore
from leap_tracker.config import MeterWatchSettings, Settings, load_settings, require
from leap_tracker.leap import wire
from leap_tracker.meters.checks import EventsNotPublished
from leap_tracker.meters.opening import EarlyMeters, OpenResult, open_watch
from leap_tracker.privacy import Pseudonyms, excerpt
from leap_tracker.timeutil import utc_now

logger = Logger()
metrics = Metrics()


@dataclass(frozen=True, slots=True)
class Dependencies:
    store: DynamoWatchStore
    settings: MeterWatchSettings
    pseudonyms: Pseudonyms
    early: EarlyMeters  # meters webhooks remembered, and the topic their meter.appeared goes to


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service.
    The log hash key is read here, once."""
    table_name = require(settings.connections_table, "CONNECTIONS_TABLE")
    dynamodb = client("dynamodb")
    pseudonyms = log_pseudonyms(settings)
    early = EarlyMeters(
        DynamoRememberedMeters(dynamodb, table_name), events_publisher(settings, client("sns"), pseudonyms)
    )
    return Dependencies(DynamoWatchStore(dynamodb, table_name), settings.meters, pseudonyms, early)


@cache
def dependencies() -> Dependencies:
    """Built from the environment on the first invocation (cold start), reused while it is warm."""
    return build_dependencies(load_settings())


def record_handler(record: SQSRecord, deps: Dependencies) -> OpenResult:
    event = json.loads(record.body)
    try:
        result = open_watch(deps.store, event, utc_now(), deps.settings, deps.early)
    except EventsNotPublished:  # nothing saved: SQS redelivers, and the same event id goes out
        add_count(metrics, "EventsNotPublished", 1)
        raise
    # The event id and the entry's pseudonym: ref ids are the partner's free text (a customer's).
    line = {"result": result.value, "event_id": excerpt(event.get("id"))}
    if result is not OpenResult.IGNORED:  # a completion open_watch checked: its entry id is a string
        line["entry"] = deps.pseudonyms.entry(event["data"]["connection"][wire.ENTRY_ID])
    logger.info("meter watch", extra=line)
    # A redelivery or an ignored event is no metric; the line above counts them (its ``result``).
    add_count(metrics, "WatchesOpened", int(result in (OpenResult.OPENED, OpenResult.REOPENED)))
    add_count(metrics, "WatchesOpenedSatisfied", int(result is OpenResult.APPEARED))
    return result


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: Dependencies | None = None
) -> dict[str, Any]:
    """The Lambda entry point; without ``deps`` it uses the cold start's (tests pass their own)."""
    deps = deps or dependencies()  # a configuration error fails the invocation, not each record
    processor = SqsBatchProcessor(logger)
    response = process_partial_response(event, partial(record_handler, deps=deps), processor, context)
    add_count(metrics, "MeterWatchRecordsFailed", processor.errors)
    return response
