"""outreach: re-engages stalled customers, exactly once per message (docs/outreach.md).

Two kinds of invocation, one domain service (``leap_tracker.outreach.service.Outreach``):

- an SQS batch from the outreach queue (change events): each record is decided on the customer's
  current snapshot. A record not yet actionable is deferred: its visibility is set to the remaining
  wait (at most 12 h) and it is reported failed, so SQS delivers it again when it is actionable (after
  several deferrals the customer is handed to the follow-up sweep instead). Failed sends are batch item
  failures too: the queue retries them, the dead-letter queue keeps what never succeeds.
- the hourly schedule ``{"mode": "follow_up"}``: customers whose follow-up is due are re-decided. A
  sweep in which any customer failed raises once the others are done (a sweep cut short by the time
  limit does not: the rest stays due).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.metrics import add_count
from leap_tracker.adapters.outreach_store import DynamoOutreachStore
from leap_tracker.adapters.secrets import log_pseudonyms, secret_provider
from leap_tracker.adapters.sns_publisher import SnsPublisher, events_publisher
from leap_tracker.adapters.sqs_batch import SqsBatchProcessor
from leap_tracker.adapters.webhook import WebhookChannel, secret_key
from leap_tracker.config import OutreachSettings, Settings, load_settings, plain_http_variables, require
from leap_tracker.outreach import deferral
from leap_tracker.outreach.decision import Action, Because, OutreachPolicy
from leap_tracker.outreach.ports import Channel, EventTopic, TopicChannel
from leap_tracker.outreach.service import DeliveryFailed, Outreach, OutreachResult
from leap_tracker.outreach.templates import check_connect_url_pattern, load_templates
from leap_tracker.privacy import Pseudonyms
from leap_tracker.timeutil import utc_now

logger = Logger()
metrics = Metrics()

FOLLOW_UP_MODE = "follow_up"
# A claim outlives the invocation by this much: after it, its holder is certainly gone.
LEASE_MARGIN = timedelta(seconds=30)


class Deferred(Exception):
    """Reported as a batch item failure on purpose: SQS redelivers the record once it is actionable."""


class FollowUpsFailed(RuntimeError):
    """Some due customers failed in a sweep (the rest were done): the invocation fails, so Lambda
    counts an error and retries it asynchronously, then sends it to ScheduledRunFailureQueue."""


@dataclass(frozen=True, slots=True)
class Dependencies:
    outreach: Outreach
    sqs: Callable[[], Any]  # created on the first deferral only
    follow_up_margin_ms: int  # the sweep starts no customer with less time left than this


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service.
    The log hash key is read here, once."""
    table_name = require(settings.connections_table, "CONNECTIONS_TABLE")
    for variable in plain_http_variables(settings):
        logger.warning(f"{variable} is a loopback http:// URL: accepted for local runs only")
    pseudonyms = log_pseudonyms(settings)
    sns = client("sns")
    audit = EventTopic(events_publisher(settings, sns, pseudonyms))
    outreach = Outreach(
        store=DynamoOutreachStore(client("dynamodb"), table_name),
        channels=build_channels(settings.outreach, sns),
        audit=audit,
        templates=load_templates(settings.outreach.templates_file),
        policy=OutreachPolicy.from_settings(settings),
        connect_url_pattern=check_connect_url_pattern(settings.outreach.connect_url_pattern),
        pseudonyms=pseudonyms,
    )
    margin_ms = int((settings.outreach.webhook_timeout_seconds + 5) * 1000)
    return Dependencies(outreach, cache(partial(client, "sqs")), margin_ms)


@cache
def dependencies() -> Dependencies:
    """Built from the environment on the first invocation (cold start), reused while it is warm."""
    return build_dependencies(load_settings())


def build_channels(settings: OutreachSettings, sns: Any) -> list[Channel]:
    """The configured channels; the webhook one is on only with a URL (a deploy refuses it without)."""
    channels: list[Channel] = []
    if "webhook" in settings.channels and settings.webhook_url:
        channels.append(
            WebhookChannel(settings.webhook_url, webhook_secret(settings), settings.webhook_timeout_seconds)
        )
    if "topic" in settings.channels:
        topic_arn = require(settings.topic_arn, "OUTREACH_TOPIC_ARN")
        channels.append(TopicChannel(EventTopic(SnsPublisher(sns, topic_arn))))
    return channels


def webhook_secret(settings: OutreachSettings) -> Callable[[], str]:
    """The signing secret: from Secrets Manager (cached, so a rotation is picked up), else the local one."""
    if settings.webhook_secret and not settings.webhook_secret_arn:
        secret_key(settings.webhook_secret)  # a malformed local secret fails the cold start
    return secret_provider(
        settings.webhook_secret_arn,
        settings.webhook_secret,
        settings.webhook_secret_cache_seconds,
        missing="OUTREACH_WEBHOOK_URL is set without OUTREACH_WEBHOOK_SECRET_ARN to sign with",
    )


def lease_until(now: datetime, context: LambdaContext) -> datetime:
    return now + timedelta(milliseconds=context.get_remaining_time_in_millis()) + LEASE_MARGIN


def handle_record(record: SQSRecord, lambda_context: LambdaContext, deps: Dependencies) -> str:
    now = utc_now()
    try:
        outcome = deps.outreach.handle_event(record.json_body, now, lease_until(now, lambda_context))
    except DeliveryFailed:  # the queue retries it; counted for the delivery failures alarm
        add_count(metrics, "OutreachDeliveryFailures", 1)
        raise
    _log(outcome, deps.outreach.pseudonyms)
    if outcome.action is not Action.DEFER or outcome.until is None:
        return outcome.action.value
    if deferral.hand_over_to_sweep(int(record.attributes.approximate_receive_count)):
        deps.outreach.hand_over(outcome.entry_id, outcome.until)
        return "handed_over"
    sqs = deps.sqs()
    sqs.change_message_visibility(
        QueueUrl=deferral.queue_url(sqs.meta.endpoint_url, record.event_source_arn),
        ReceiptHandle=record.receipt_handle,
        VisibilityTimeout=deferral.visibility_seconds(outcome.until, now),
    )
    raise Deferred(f"not actionable until {outcome.until.isoformat()}")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: Dependencies | None = None
) -> dict[str, Any]:
    """The Lambda entry point; without ``deps`` it uses the cold start's (tests pass their own)."""
    deps = deps or dependencies()  # a configuration error fails the invocation, not each record
    _warn_without_channel(deps)
    if event.get("mode") == FOLLOW_UP_MODE:
        return follow_up(context, deps)
    processor = SqsBatchProcessor(logger, deferrals=(Deferred,))
    response = process_partial_response(event, partial(handle_record, deps=deps), processor, context)
    add_count(metrics, "OutreachDeferred", processor.deferred)
    add_count(metrics, "OutreachRecordsFailed", processor.errors)
    return response


def follow_up(context: LambdaContext, deps: Dependencies) -> dict[str, Any]:
    now = utc_now()
    summary = deps.outreach.run_follow_ups(
        now,
        lease_until(now, context),
        has_time=lambda: context.get_remaining_time_in_millis() > deps.follow_up_margin_ms,
    )
    for outcome in summary.outcomes:
        _log(outcome, deps.outreach.pseudonyms)
    result = {
        "due": summary.due,
        "sent": sum(1 for o in summary.outcomes if o.action is Action.SEND),
        "suppressed": sum(1 for o in summary.outcomes if o.action is Action.SUPPRESS),
        "deferred": sum(1 for o in summary.outcomes if o.action is Action.DEFER),
        "failed": summary.failed,
        "stopped_early": summary.stopped_early,
    }
    add_count(metrics, "FollowUpsFailed", summary.failed)
    add_count(metrics, "OutreachDeliveryFailures", summary.delivery_failures)
    logger.info("follow-up sweep", extra=result)
    if summary.failed:  # the others are done; failing counts an error and runs Lambda's async retries
        raise FollowUpsFailed(f"{summary.failed} of {summary.due} due customers failed; they stay due")
    return result


def _warn_without_channel(deps: Dependencies) -> None:
    """Once per invocation: with no channel every due message is suppressed (``no_channel``)."""
    if not deps.outreach.channels:
        logger.warning(
            "no outreach channel is configured (OUTREACH_CHANNELS=webhook without OUTREACH_WEBHOOK_URL): "
            "due messages are suppressed as no_channel and decided again by the follow-up sweep"
        )


def _log(outcome: OutreachResult, pseudonyms: Pseudonyms) -> None:
    add_count(metrics, "OutreachSent", int(outcome.action is Action.SEND))
    add_count(metrics, "OutreachSuppressed", int(outcome.action is Action.SUPPRESS))
    add_count(metrics, "OutreachNoChannel", int(outcome.because is Because.NO_CHANNEL))
    logger.info(
        "outreach decision",
        extra={
            "entry": pseudonyms.entry(outcome.entry_id),  # never the id: it embeds the Reference ID
            "action": outcome.action.value,
            "reason": outcome.reason,
            "because": outcome.because.value if outcome.because else None,
            "attempt": outcome.attempt,
            "until": outcome.until.isoformat() if outcome.until else None,
        },
    )
