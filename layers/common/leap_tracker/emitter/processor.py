"""Powertools' batch processing for the table stream, made to keep each entry's events in order.

Powertools' ``BatchProcessor`` runs every record and reports each failed one; for a stream, Lambda then
resumes from the lowest failed sequence number. A record processed AFTER a failure would therefore be
published before the failed one is retried (a later change of an entry overtaking an earlier one), and
again on the retry. This processor differs in two things, nothing else:

1. it stops at the first record the record handler fails on, and reports that record and every later
   one as failed;
2. the record handler only PREPARES a record's messages (pure); ``publish`` then sends all prepared
   messages in one pass, 10 per SNS call across records and entries, each entry's changes in order
   (``events.publishing``: one change per entry a call, nothing more of an entry once one of its
   events was refused), and says how many leading records had every event accepted; the records from
   there on are reported failed too.

Retries are safe: event ids are deterministic, so a record published again yields the same ids.
When every record fails, Powertools raises (a function error), so the event source mapping bisects
the batch and a record that always fails ends alone in the on-failure destination.

Built only on Powertools' documented extension points ("Create your own partial processor"): the
``_prepare`` / ``_process_record`` / ``_clean`` hooks, ``success_handler`` and ``failure_handler``.
Records are prepared one by one in ``_process_record``, published together in ``_clean`` (as the
Powertools example writes its results there), then reported; ``BasePartialBatchProcessor`` builds the
response and raises when every record failed. tests/unit/test_emitter_processor.py holds Powertools
to that contract; pyproject.toml pins the minor series it was verified on. Afterwards ``published`` and
``failed`` say which records went out and which did not, and why (the handler's failure markers,
``leap_tracker.emitter.markers``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch import BasePartialBatchProcessor, EventType, ExceptionInfo
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from leap_tracker.events.publishing import OutgoingMessage, PublishOutcome


class RecordNotPublished(Exception):
    """A record's messages were not all accepted by the topic."""


class SkippedAfterFailure(Exception):
    """An earlier record of the batch failed: this one waits for the retry, to keep the order."""


Publish = Callable[[Sequence[Sequence[OutgoingMessage]]], PublishOutcome]


class InOrderStreamProcessor(BasePartialBatchProcessor):
    """Use with ``process_partial_response``. The record handler takes a ``DynamoDBRecord`` (only: no
    Lambda context) and returns that record's messages."""

    def __init__(self, publish: Publish, logger: Any = None) -> None:
        super().__init__(EventType.DynamoDBStreams, logger=logger)
        self._publish = publish
        self.outcome = PublishOutcome(published_records=0)
        self._records: list[DynamoDBRecord] = []
        self._prepared: list[list[OutgoingMessage]] = []
        self._handler_failure: ExceptionInfo | None = None

    def _prepare(self) -> None:
        super()._prepare()
        self.outcome = PublishOutcome(published_records=0)
        self._records, self._prepared, self._handler_failure = [], [], None

    def _process_record(self, record: dict[str, Any]) -> None:
        """Prepare one record's messages; after the first record the handler fails on, none."""
        parsed = DynamoDBRecord(record)
        self._records.append(parsed)
        if self._handler_failure is not None:
            return
        try:
            self._prepared.append(list(self.handler(parsed)))
        except Exception:
            self._handler_failure = sys.exc_info()

    async def _async_process_record(self, record: dict[str, Any]) -> None:
        raise NotImplementedError("the stream is processed synchronously, in order")

    def _clean(self) -> None:
        """Publish the prepared records in one ordered pass, report every record, then let Powertools
        answer (or raise when every record failed)."""
        self.outcome = self._publish(self._prepared)
        for position, record in enumerate(self._records):
            if position < self.outcome.published_records:
                self.success_handler(record, self._prepared[position])
            else:
                self.failure_handler(record, self._failure(position))
        super()._clean()

    @property
    def published(self) -> list[dict[str, Any]]:
        """After processing: the records whose messages all went out, in order, in Lambda's JSON form."""
        return [record.raw_event for record in self._records[: self.outcome.published_records]]

    @property
    def failed(self) -> list[tuple[dict[str, Any], BaseException]]:
        """After processing: the records reported failed, in order, in Lambda's JSON form, each with why."""
        return [
            (record.raw_event, info[1] or RecordNotPublished("no reason given"))
            for record, info in zip(self.fail_messages, self.exceptions, strict=True)
        ]

    def _failure(self, position: int) -> ExceptionInfo:
        prepared = len(self._prepared)
        if position < prepared and position == self.outcome.published_records:
            reasons = "; ".join(f"{event_id}: {why}" for event_id, why in self.outcome.failures.items())
            return _exc_info(RecordNotPublished(reasons or "not published"))
        if position == prepared and self._handler_failure is not None:
            return self._handler_failure
        return _exc_info(SkippedAfterFailure("an earlier record of this batch failed"))


def _exc_info(exception: Exception) -> tuple[type[BaseException], BaseException, None]:
    return type(exception), exception, None
