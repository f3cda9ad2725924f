"""Powertools' batch processor for the table stream, made to keep each entry's events in order.

Powertools' ``BatchProcessor`` runs every record and reports each failed one; for a stream, Lambda then
resumes from the lowest failed sequence number. A record processed AFTER a failure would therefore be
published before the failed one is retried (a later change of an entry overtaking an earlier one), and
again on the retry. This subclass changes two things, nothing else:

1. it stops at the first record the record handler fails on, and reports that record and every later
   one as failed;
2. the record handler only PREPARES a record's messages (pure); ``publish`` then sends all prepared
   messages in one ordered pass (10 per SNS call across records, not one call per record) and says how
   many leading records got through, and the records from there on are reported failed too.

Retries are safe: event ids are deterministic, so a record published again yields the same ids.
When every record fails, Powertools raises (a function error), so the event source mapping bisects
the batch and a record that always fails ends alone in the on-failure destination.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

from leap_tracker.events.publishing import OutgoingMessage, PublishOutcome


class RecordNotPublished(Exception):
    """A record's messages were not all accepted by the topic."""


class SkippedAfterFailure(Exception):
    """An earlier record of the batch failed: this one waits for the retry, to keep the order."""


Publish = Callable[[Sequence[Sequence[OutgoingMessage]]], PublishOutcome]


class InOrderStreamProcessor(BatchProcessor):
    """Use with ``process_partial_response``; the record handler returns a record's messages."""

    def __init__(self, publish: Publish, **kwargs: Any) -> None:
        super().__init__(EventType.DynamoDBStreams, **kwargs)
        self._publish = publish
        self.outcome = PublishOutcome(published_records=0)

    def process(self) -> list[tuple]:
        records = [self._to_batch_type(record, self.event_type) for record in self.records]
        prepared: list[list[OutgoingMessage]] = []
        handler_failure = None
        for record in records:
            try:
                prepared.append(list(self._prepare_record(record)))
            except Exception:
                handler_failure = sys.exc_info()
                break
        self.outcome = self._publish(prepared)
        published = self.outcome.published_records
        results = [self.success_handler(records[i], prepared[i]) for i in range(published)]
        for position in range(published, len(records)):
            failure = self._failure(position, len(prepared), handler_failure)
            results.append(self.failure_handler(records[position], failure))
        return results

    def _prepare_record(self, record: Any) -> list[OutgoingMessage]:
        if self._handler_accepts_lambda_context:
            return self.handler(record=record, lambda_context=self.lambda_context)
        return self.handler(record=record)

    def _failure(self, position: int, prepared: int, handler_failure: Any) -> Any:
        if position < prepared and position == self.outcome.published_records:
            reasons = "; ".join(f"{event_id}: {why}" for event_id, why in self.outcome.failures.items())
            return _exc_info(RecordNotPublished(reasons or "not published"))
        if position == prepared and handler_failure is not None:
            return handler_failure
        return _exc_info(SkippedAfterFailure("an earlier record of this batch failed"))


def _exc_info(exception: Exception) -> tuple[type[BaseException], BaseException, None]:
    return type(exception), exception, None
