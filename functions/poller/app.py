"""Poller Lambda: hourly by EventBridge Scheduler ({"mode": "scheduled"}), on demand, or targeted.

Input: {"mode": "scheduled" | "incremental" | "full"}, {"mode": "ref_id", "ref_id": "..."}, an
EventBridge "Scheduled Event" (a classic rule: a scheduled run), or an SQS batch of PollRequestQueue:
targeted polls a Connect-session webhook asked for (``poll_requests``, docs/webhooks.md#targeted-polls),
each record a ref_id run when it is due, answered with a partial batch response.
Output: the run summary (see docs/poller.md). The work is ``leap_tracker.poller.run_poll``; this
handler turns its summary into metrics (``run_metrics``). A run that could not do its work raises
(``PollFailed``), so Lambda counts it in Errors, retries the asynchronous invocation (which resumes
from the checkpoint) and finally hands it to the failure destination.

After a run that did its work (completed or interrupted, not skipped) the handler counts the funnel
on funnel-index (``adapters.funnel``), publishes ``EntriesByStatus`` per ``ConnectionStatus`` and adds
the counts to the summary as ``entries_by_status``. A count that fails raises too, after the run's own
metrics are in (``log_metrics`` flushes them on the way out).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leap_tracker import table
from leap_tracker.adapters.aws import aws_client
from leap_tracker.adapters.continuation import LambdaContinuations
from leap_tracker.adapters.funnel import count_funnel
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.adapters.metrics import add_count
from leap_tracker.adapters.poll_requests import DynamoPollMarks, SqsPollRequests
from leap_tracker.adapters.poller_store import DynamoPollerStore
from leap_tracker.adapters.secrets import log_pseudonyms
from leap_tracker.adapters.sqs_batch import SqsBatchProcessor
from leap_tracker.config import MAX_SQS_DELAY_SECONDS, Settings, load_settings, plain_http_variables, require
from leap_tracker.outreach import deferral
from leap_tracker.poller.plan import next_continuation, wants_continuation
from leap_tracker.poller.request import (
    InvalidPollRequest,
    PollMode,
    PollRequest,
    is_queue_batch,
    parse_request,
)
from leap_tracker.poller.run import PollEnvironment, PollFailed, RunStatus, RunSummary, run_poll
from leap_tracker.poller.targeted import Outcome, TargetedResult, handle_poll_request
from leap_tracker.privacy import Pseudonyms
from leap_tracker.timeutil import utc_now
from leap_tracker.webhooks import targeted

logger = Logger()
metrics = Metrics()
FUNNEL_METRIC = "EntriesByStatus"
FUNNEL_DIMENSION = "ConnectionStatus"
# Published by every run, 0 included: the freshness alarm (template.yaml PollFreshnessAlarm) treats
# missing data as breaching. The other counts are published only when not zero (adapters.metrics).
DENSE_METRICS = frozenset({"PollPassCompleted"})


class Deferred(Exception):
    """Reported as a batch item failure on purpose: SQS delivers the poll request again when it is due."""


@dataclass(frozen=True, slots=True)
class Dependencies:
    settings: Settings
    leap: LeapHttpClient
    store: DynamoPollerStore
    pseudonyms: Pseudonyms
    count_funnel: Callable[[], Mapping[str, int]]  # stored connections per status (funnel-index)
    marks: DynamoPollMarks  # when each Reference ID's last targeted poll started
    sqs: Callable[[], Any]  # created on the first deferred poll request only
    continuations: LambdaContinuations  # the poller invoking itself to go on with a cut pass


def build_dependencies(settings: Settings, client: Callable[[str], Any] = aws_client) -> Dependencies:
    """What the handler works with, from its settings; ``client`` makes the AWS clients by service.
    The log hash key is read here, once."""
    table_name = require(settings.connections_table, "CONNECTIONS_TABLE")
    for variable in plain_http_variables(settings):
        logger.warning(f"{variable} is a loopback http:// URL: accepted for local runs only")
    dynamodb = client("dynamodb")
    return Dependencies(
        settings=settings,
        leap=LeapHttpClient(settings.leap),
        store=DynamoPollerStore(
            dynamodb,
            table_name,
            history_retention_days=settings.poller.history_retention_days,
            concurrency=settings.poller.dynamodb_concurrency,
        ),
        pseudonyms=log_pseudonyms(settings),
        count_funnel=partial(count_funnel, dynamodb, table_name),
        marks=DynamoPollMarks(dynamodb, table_name),
        sqs=cache(partial(client, "sqs")),
        continuations=LambdaContinuations(cache(partial(client, "lambda"))),
    )


@cache
def dependencies() -> Dependencies:
    """Built from the environment on the first invocation (cold start), reused while it is warm."""
    return build_dependencies(load_settings())


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: Dependencies | None = None
) -> dict[str, Any]:
    """The Lambda entry point; without ``deps`` it uses the cold start's (tests pass their own)."""
    if is_queue_batch(event):
        return poll_requests(event, context, deps or dependencies())
    try:
        request = parse_request(event)
    except InvalidPollRequest:
        add_count(metrics, "InvalidInput", 1)
        raise
    deps = deps or dependencies()
    run_id = _request_id(context)
    summary = _observed(
        deps, lambda: run_poll(request, run_id, _environment(deps, context), deps.settings.poller)
    )
    _add_metrics(run_metrics(summary))
    result = summary.as_dict()
    continued = _continue(deps, context, request, summary)
    if continued is not None:
        result["continued_by"] = continued.continuation
    if counts_funnel(summary):
        result["entries_by_status"] = _publish_funnel(deps, run_id)
    return result


def _continue(
    deps: Dependencies, context: LambdaContext, request: PollRequest, summary: RunSummary
) -> PollRequest | None:
    """A pass the time limit cut short goes on at once: the function invokes itself (asynchronously)
    with the next continuation (docs/poller.md#continuation). Refused, it raises: Lambda retries this
    invocation, which resumes the pass from the checkpoint."""
    interrupted = summary.status is RunStatus.INTERRUPTED
    follow = next_continuation(request, interrupted, summary.pages, deps.settings.poller)
    exhausted = follow is None and wants_continuation(request, interrupted, summary.pages)  # the chain's end
    add_count(metrics, "PollContinuationsExhausted", int(exhausted))
    if follow is None:
        return None
    deps.continuations.send(context.invoked_function_arn, follow)
    add_count(metrics, "PollContinued", 1)
    logger.info(
        "pass continues in a new invocation",
        extra={"run_id": summary.run_id, "continuation": follow.continuation, "pass": summary.pass_kind},
    )
    return follow


def poll_requests(event: dict[str, Any], context: LambdaContext, deps: Dependencies) -> dict[str, Any]:
    """A PollRequestQueue batch, one record after the other (the lease runs one poll at a time).
    A record not due yet, or meeting a pass under the lease, is deferred (its visibility set to when
    it is due, and reported failed); a failed poll is reported failed, so SQS retries it and finally
    dead-letters it. The funnel is not counted here: the hourly run does."""
    processor = SqsBatchProcessor(logger, deferrals=(Deferred,))
    response = process_partial_response(event, partial(poll_request, deps=deps), processor, context)
    add_count(metrics, "TargetedPollsDeferred", processor.deferred)
    add_count(metrics, "TargetedPollsFailed", processor.errors)
    return response


def poll_request(record: SQSRecord, lambda_context: LambdaContext, deps: Dependencies) -> str:
    message = targeted.parse_request_body(record.body)
    receives = int(record.attributes.approximate_receive_count)
    run_id = f"{_request_id(lambda_context)}/{record.message_id}"  # the lease owner: one per record
    env = _environment(deps, lambda_context)
    settings = deps.settings
    result = _observed(
        deps,
        lambda: handle_poll_request(
            message, receives, run_id, env, deps.marks, settings.poller, settings.targeted
        ),
    )
    if result.summary is not None:
        _add_metrics(run_metrics(result.summary))
    add_count(metrics, "TargetedPolls", int(result.outcome is Outcome.POLLED))
    add_count(metrics, "TargetedPollsCovered", int(result.outcome is Outcome.COVERED))
    _log_request(result, message, receives, deps.pseudonyms)
    if result.until is None:
        return result.outcome.value
    sqs = deps.sqs()
    queue_url = deferral.queue_url(sqs.meta.endpoint_url, record.event_source_arn)
    wait = deferral.visibility_seconds(result.until, utc_now())
    if result.outcome is Outcome.BUSY and targeted.requeue_when_busy(receives):
        SqsPollRequests(sqs, queue_url).requeue(message, min(wait, MAX_SQS_DELAY_SECONDS))
        return "requeued"
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=wait
    )
    raise Deferred(f"{result.outcome.value}: due again at {result.until.isoformat()}")


def _environment(deps: Dependencies, context: LambdaContext) -> PollEnvironment:
    return PollEnvironment(
        source=deps.leap,
        store=deps.store,
        now=utc_now,
        remaining_ms=context.get_remaining_time_in_millis,
        pseudonyms=deps.pseudonyms,
        retry_count=lambda: deps.leap.stats.retries,
    )


def _request_id(context: LambdaContext) -> str:
    return getattr(context, "aws_request_id", "") or uuid.uuid4().hex


def _observed[T](deps: Dependencies, work: Callable[[], T]) -> T:
    """``work`` (a run), with Leap's refusals of the key counted and a failed run's one ERROR line
    and metrics; log_metrics flushes them on the way out of the exception too (PollFailed among them)."""
    refusals_before = deps.leap.stats.auth_refusals
    try:
        return work()
    except PollFailed as failure:
        _add_metrics(run_metrics(failure.summary))
        logger.error(str(failure), extra=failure.summary.for_log(deps.pseudonyms))
        raise
    finally:
        _add_auth_refusals(deps.leap.stats.auth_refusals - refusals_before)


def _log_request(
    result: TargetedResult, message: targeted.PollRequestMessage, receives: int, pseudonyms: Pseudonyms
) -> None:
    logger.info(
        "poll request",
        extra={
            "ref": pseudonyms.ref(message.ref_id),  # never the Reference ID itself
            "requested_at": targeted.instant_text(message.requested_at),
            "outcome": result.outcome.value,
            "stage": result.stage.value if result.stage else None,
            "until": result.until.isoformat() if result.until else None,
            "receive_count": receives,
        },
    )


def counts_funnel(summary: RunSummary) -> bool:
    """Whether the funnel is counted after this run: after every run that did its work (a pass, a part
    of one, a ref_id poll; its writes are in), not after a skipped one, which touched nothing while
    another run is midway (that run publishes the count when it ends)."""
    return summary.status is not RunStatus.SKIPPED


def _publish_funnel(deps: Dependencies, run_id: str) -> dict[str, int]:
    """Count the funnel and publish one EntriesByStatus per status (its own dimension, so one EMF
    line each: the handler's other metrics carry only ``service``). A known status is published at 0
    too (a funnel stage that emptied is a level, not a gap); OTHER, a status this code does not know,
    only when some entry has one. A failed count raises."""
    try:
        counts = dict(deps.count_funnel())
    except Exception as exc:
        logger.error(
            "funnel count failed (the run's own work is stored and its metrics published)",
            extra={"run_id": run_id, "error": f"{type(exc).__name__}: {exc}"},
        )
        raise
    for status, count in counts.items():
        if not count and status == table.FUNNEL_OTHER_STATUS:
            continue
        with single_metric(
            name=FUNNEL_METRIC,
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.namespace,
            default_dimensions={FUNNEL_DIMENSION: status},
        ):
            pass
    logger.info("funnel counted", extra={"run_id": run_id, "entries_by_status": counts})
    return counts


def run_metrics(summary: RunSummary) -> dict[str, int | list[float]]:
    """The run's metrics by name: counts (zeros included; ``_add_metrics`` publishes the non-zero ones
    and DENSE_METRICS), and LeapApiLatency with one value (ms) per page read. The rest of the summary
    (pages, unchanged and stale entries among it) is in the ``poll finished`` log line only."""
    return {
        "EntriesSeen": summary.entries_seen,
        "EntriesChanged": summary.changed,
        "EntriesInvalid": summary.invalid,
        "UnknownEnumValues": summary.unknown_values,
        "LeapRetries": summary.retries,
        "PageTokenRestarts": summary.token_restarts,
        "PollInterrupted": int(summary.status is RunStatus.INTERRUPTED),
        "PollSkipped": int(summary.status is RunStatus.SKIPPED),
        "PollFailed": int(summary.status in (RunStatus.FAILED, RunStatus.LEASE_LOST)),
        # The freshness alarm's metric: a pass read its last page (a ref_id poll is not a pass).
        "PollPassCompleted": int(
            summary.status is RunStatus.COMPLETED and summary.mode is not PollMode.REF_ID
        ),
        "LeapApiLatency": list(summary.api_latency_ms),
    }


def _add_auth_refusals(count: int) -> None:
    """Leap refused the API key (401/403): the LeapAuthFailures alarm's metric (the sweep's too)."""
    add_count(metrics, "LeapAuthFailures", count)


def _add_metrics(values: dict[str, int | list[float]]) -> None:
    for name, value in values.items():
        if isinstance(value, list):  # one data point per page: a latency
            for latency in value:
                metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=latency)
        else:
            add_count(metrics, name, value, dense=name in DENSE_METRICS)
