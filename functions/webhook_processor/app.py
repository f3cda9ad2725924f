"""webhook_processor: WebhookQueue's deliveries (Leap's webhooks as received) -> their effects.

Thin: each record becomes a delivery (``leap_tracker.webhooks.payloads.delivery``) and
``leap_tracker.webhooks.processing.WebhookProcessor`` does the rest (duplicate check, meter.created
verified against the Meters API then meter.appeared, a targeted poll request for connect_session.*,
enrollment events, unknown types kept). This handler wires the table, Leap, the events topic and
PollRequestQueue, and turns outcomes into metrics and log lines (Reference IDs as pseudonyms).

A ``meter.created`` the Meters API does not list yet is deferred: its visibility is set to the wait
the processor chose and it is reported failed, so SQS delivers it again then; after the last try it
is acknowledged and counted (the sweep reconciles). A record that fails for real (malformed, Leap
unavailable or refusing, SNS refusing, a table error) is reported alone, logged by message id and
reason, retried, and after WebhookQueue's maxReceiveCount lands in WebhookDeadLetterQueue. Once Leap
failed in a batch, its other meter.created records are not sent to Leap (they fail at once, retried).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.adapters.metrics import add_count, add_counts
from leap_tracker.adapters.poll_requests import SqsPollRequests
from leap_tracker.adapters.remembered_meters import DynamoRememberedMeters
from leap_tracker.adapters.secrets import log_pseudonyms
from leap_tracker.adapters.sns_publisher import events_publisher
from leap_tracker.adapters.sqs_batch import SqsBatchProcessor
from leap_tracker.adapters.watch_store import DynamoWatchStore
from leap_tracker.adapters.webhook_ledger import DynamoProcessedWebhooks
from leap_tracker.config import Settings, load_settings, plain_http_variables, require
from leap_tracker.leap import wire
from leap_tracker.leap.api import LeapError
from leap_tracker.meters.checks import EventsNotPublished
from leap_tracker.outreach import deferral
from leap_tracker.privacy import Pseudonyms, excerpt
from leap_tracker.timeutil import utc_now
from leap_tracker.webhooks import intake
from leap_tracker.webhooks.payloads import delivery
from leap_tracker.webhooks.processing import Outcome, Result, WebhookProcessor

logger = Logger()
metrics = Metrics()

_ATTRIBUTES = (intake.QUEUE_ATTR_EVENT_ID, intake.QUEUE_ATTR_EVENT_TYPE, intake.QUEUE_ATTR_RECEIVED_AT)


class Deferred(Exception):
    """Reported as a batch item failure on purpose: SQS delivers the record again after the wait."""


class LeapSkipped(Exception):
    """Leap failed on an earlier record of this batch: this meter.created is not sent to it now (its
    retries would spend the invocation's time); SQS delivers it again with the others."""


@dataclass(slots=True)
class Batch:
    """One invocation's state."""

    leap_failed: bool = False


@dataclass(frozen=True, slots=True)
class Dependencies:
    processor: WebhookProcessor
    leap: LeapHttpClient  # also the processor's Meters source: its counters become metrics
    sqs: Callable[[], Any]  # created on the first deferral only
    pseudonyms: Pseudonyms


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service.
    The log hash key is read here, once."""
    table_name = require(settings.connections_table, "CONNECTIONS_TABLE")
    queue_url = require(settings.webhooks.poll_request_queue_url, "POLL_REQUEST_QUEUE_URL")
    for variable in plain_http_variables(settings):
        logger.warning(f"{variable} is a loopback http:// URL: accepted for local runs only")
    pseudonyms = log_pseudonyms(settings)
    dynamodb, sqs = client("dynamodb"), cache(partial(client, "sqs"))
    leap = LeapHttpClient(settings.leap)
    processor = WebhookProcessor(
        ledger=DynamoProcessedWebhooks(dynamodb, table_name),
        watches=DynamoWatchStore(dynamodb, table_name),
        remembered=DynamoRememberedMeters(dynamodb, table_name),
        meters=leap,
        publisher=events_publisher(settings, client("sns"), pseudonyms),
        poll_requests=SqsPollRequests(sqs(), queue_url, timing=settings.targeted),
        settings=settings.webhooks,
        meter_settings=settings.meters,
    )
    return Dependencies(processor, leap, sqs, pseudonyms)


@cache
def dependencies() -> Dependencies:
    """Built from the environment on the first invocation (cold start), reused while it is warm."""
    return build_dependencies(load_settings())


def record_handler(record: SQSRecord, deps: Dependencies, batch: Batch) -> str:
    attributes = {name: _string_attribute(record, name) for name in _ATTRIBUTES}
    received = delivery(record.body, attributes)
    receive_count = int(record.attributes.approximate_receive_count)
    if batch.leap_failed and received.event_type == wire.WEBHOOK_METER_CREATED:
        raise LeapSkipped("Leap failed on an earlier record of this batch: retried later")
    try:
        outcome = deps.processor.process(received, utc_now(), receive_count)
    except LeapError:  # Leap unavailable or refusing: SQS retries the record
        batch.leap_failed = True
        add_count(metrics, "MetersApiFailures", 1)
        raise
    except EventsNotPublished:
        add_count(metrics, "EventsNotPublished", 1)
        raise
    add_counts(metrics, outcome_metrics(outcome))
    _log(outcome, received.event_type, received.event_id, receive_count, deps.pseudonyms)
    if outcome.result is Result.METER_DEFERRED and outcome.retry_after_seconds is not None:
        _put_back(record, outcome.retry_after_seconds, deps)
    return outcome.result.value


def _put_back(record: SQSRecord, seconds: int, deps: Dependencies) -> None:
    """Hide the record for ``seconds`` and report it failed: SQS delivers it again then."""
    sqs = deps.sqs()
    sqs.change_message_visibility(
        QueueUrl=deferral.queue_url(sqs.meta.endpoint_url, record.event_source_arn),
        ReceiptHandle=record.receipt_handle,
        VisibilityTimeout=seconds,
    )
    raise Deferred(f"meter not on the Meters API yet; again in {seconds} s")


def _log(
    outcome: Outcome, event_type: str, event_id: str, receive_count: int, pseudonyms: Pseudonyms
) -> None:
    logger.info(
        "webhook processed",
        extra={
            "result": outcome.result.value,
            "webhook_event_type": excerpt(event_type),
            "webhook_event_id": event_id,  # Leap's UUID: no customer in it
            "ref": pseudonyms.ref(outcome.ref_id) if outcome.ref_id else None,
            "receive_count": receive_count,
            "appeared": outcome.appeared,
            "retry_after_seconds": outcome.retry_after_seconds,
            "meter_searches": outcome.meter_searches,
            "malformed_meters": outcome.malformed_meters,
            "conflicts": outcome.conflicts,
        },
    )


def outcome_metrics(outcome: Outcome) -> dict[str, int]:
    """One record's metrics by name, zeros included (``add_counts`` publishes the non-zero ones)."""
    result = outcome.result
    return {
        "WebhookDuplicates": int(result is Result.DUPLICATE),
        "WebhookMetersAppeared": outcome.appeared,
        "WebhookMetersRemembered": int(result is Result.METER_REMEMBERED),
        "WebhookMetersUnconfirmed": int(result is Result.METER_UNCONFIRMED),
        "WebhookPollRequests": int(result is Result.POLL_REQUESTED),
        "EnrollmentEventsPublished": int(result is Result.ENROLLMENT_PUBLISHED),
        "WebhooksKept": int(result in (Result.KEPT, Result.METER_WITHOUT_REFERENCE)),
        "WebhooksUnknownType": int(result is Result.UNKNOWN_TYPE),
    }


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: Dependencies | None = None
) -> dict[str, Any]:
    """The Lambda entry point; without ``deps`` it uses the cold start's (tests pass their own)."""
    deps = deps or dependencies()  # a configuration error fails the invocation, not each record
    calls_before = deps.leap.stats.meters_requests
    refusals_before = deps.leap.stats.auth_refusals
    processor = SqsBatchProcessor(logger, deferrals=(Deferred,))
    handler = partial(record_handler, deps=deps, batch=Batch())
    response = process_partial_response(event, handler, processor, context)
    add_count(metrics, "WebhookMetersDeferred", processor.deferred)
    add_count(metrics, "WebhookRecordsFailed", processor.errors)
    add_count(metrics, "MetersApiCalls", deps.leap.stats.meters_requests - calls_before)
    add_count(metrics, "LeapAuthFailures", deps.leap.stats.auth_refusals - refusals_before)
    return response


def _string_attribute(record: SQSRecord, name: str) -> str | None:
    attribute = record.message_attributes[name]
    return attribute.string_value if attribute is not None else None
