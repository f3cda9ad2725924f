"""The batch processor every SQS subscriber uses: failed records are reported, logged, never fatal.

Powertools' ``BatchProcessor`` reports each failed record as a batch item failure, but by default
raises when every record of a batch failed: a function error, so SQS retries the whole batch and
nothing says which message was at fault. Here a fully failed batch is answered like any other (each
record reported alone: retried, then dead-lettered after the queue's maxReceiveCount), and each
rejected record is logged with its message id and the reason: the exception's type and message.

Never the body: it carries the customer's Reference ID. The reason is logged with the record's
customer identifiers (the CloudEvent subject, the connection's id and ref_id, a Leap webhook's
partner_reference, a poll request's ref_id) masked, since a domain
exception may name the entry it failed on. No traceback is logged for the same reason, only where the
exception was raised.

Only Powertools' documented hook is extended (``failure_handler``, "Extending BatchProcessor"); the
logger is the handler's, handed over, so logging stays at the handler edge.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any, Protocol

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, ExceptionInfo, FailureResponse

from leap_tracker.leap import wire
from leap_tracker.webhooks import targeted

MASK = "<redacted>"


class RecordLogger(Protocol):
    """What the processor needs of a logger (Powertools' Logger and ``logging.Logger`` both fit)."""

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None: ...

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None: ...


class SqsBatchProcessor(BatchProcessor):
    """Use with ``process_partial_response``; build one per invocation with the handler's logger.

    ``deferrals``: exception types a record handler raises to report a record failed on purpose, so
    that SQS delivers it again later (outreach's deferral). A deferral is not an error: it is logged
    at DEBUG and counted in ``deferred``, apart from ``errors``.
    """

    def __init__(self, logger: RecordLogger, deferrals: tuple[type[Exception], ...] = ()) -> None:
        # Powertools' own ``logger`` argument stays unset: it would log every failure, deferrals too,
        # with a traceback that may quote an identifier.
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self._record_logger = logger
        self._deferrals = deferrals

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> FailureResponse:
        self._log_rejection(record, exception)
        return super().failure_handler(record, exception)

    @property
    def deferred(self) -> int:
        """Records of the last batch reported failed on purpose, to be delivered again later."""
        return sum(1 for _, error, _ in self.exceptions if isinstance(error, self._deferrals))

    @property
    def errors(self) -> int:
        """Records of the last batch that failed for real (retried, then dead-lettered)."""
        return len(self.exceptions) - self.deferred

    def _log_rejection(self, record: Any, exception: ExceptionInfo) -> None:
        _, error, trace = exception
        body = getattr(record, "body", None)
        fields = {
            "message_id": getattr(record, "message_id", None),
            "receive_count": _receive_count(record),
            "exception_type": type(error).__name__,
            "reason": mask_identifiers(str(error), body if isinstance(body, str) else ""),
            "raised_at": _raised_at(trace),
        }
        if isinstance(error, self._deferrals):
            self._record_logger.debug("record deferred", extra=fields)
        else:
            self._record_logger.warning("record rejected", extra=fields)


def mask_identifiers(text: str, body: str) -> str:
    """``text`` with every customer identifier that ``body`` (a CloudEvent, or not) carries masked."""
    for identifier in _identifiers(body):
        text = text.replace(identifier, MASK)
    return text


def _identifiers(body: str) -> list[str]:
    """The CloudEvent subject and the connection's id and ref_id, or a Leap webhook's
    partner_reference, as written and as repr() shows them; longest first, so an entry id is masked
    whole before the Reference ID inside it."""
    try:
        event = json.loads(body)
    except ValueError:
        return []
    if not isinstance(event, dict):
        return []
    data = event.get("data")
    connection = data.get("connection") if isinstance(data, dict) else None
    payload = event.get(wire.WEBHOOK_PAYLOAD)
    values = [event.get("subject")]
    if isinstance(connection, dict):
        values += [connection.get(wire.ENTRY_ID), connection.get(wire.ENTRY_REF_ID)]
    if isinstance(payload, dict):
        values.append(payload.get(wire.WEBHOOK_PARTNER_REFERENCE))
    values.append(event.get(targeted.REF_ID_FIELD))  # a targeted poll request (PollRequestQueue)
    found = {form for v in values if isinstance(v, str) and v for form in (v, repr(v)[1:-1])}
    return sorted(found, key=len, reverse=True)


def _receive_count(record: Any) -> int | None:
    try:
        return int(record.attributes.approximate_receive_count)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _raised_at(trace: Any) -> str | None:
    """The innermost frame as ``file:line (function)``: where, without the traceback's messages."""
    if trace is None:
        return None
    frame = traceback.extract_tb(trace)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} ({frame.name})"
