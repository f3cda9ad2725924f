"""Emitter benchmark: records per second through the pure diff + serialisation, against plain
deserialisation of the same stream records, and SNS calls per event.

    python bench/emitter.py [--entries 1000] [--batch-size 100] [--repeat 3]

The records are what the poller writes (its own item format) for ENTRIES customers who each go
through the five changes of the doc's commercial sample; they reach the emitter change by change
(every entry's first change, then every entry's second, ...) in batches of the event source
mapping's size, as the table stream would deliver them. Publishing goes to a counting fake: the
calls per event are what SNS would see (no network, so no SNS latency is measured).

SNS calls are counted twice more, for the same records in entry order (each entry's five changes in
a row, so a batch of 100 holds 20 entries with five changes each): with the emitter's packing
(``events.publishing``) and, as the baseline in the same run, with the rule it replaced (stream
order, a new call whenever a record's entry already has a record in the call).
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]  # run as a script from anywhere

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord  # noqa: E402

from devtools import event_samples  # noqa: E402
from leap_tracker.adapters.sns_publisher import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES  # noqa: E402
from leap_tracker.emitter.stream import record_messages  # noqa: E402
from leap_tracker.events.publishing import OutgoingMessage, publish_in_order  # noqa: E402
from leap_tracker.leap import wire  # noqa: E402


class CountingPublisher:
    max_batch_messages = MAX_BATCH_MESSAGES
    max_batch_bytes = MAX_BATCH_BYTES

    def __init__(self) -> None:
        self.calls = 0
        self.messages = 0

    def publish_batch(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        self.calls += 1
        self.messages += len(messages)
        return {}


def customer_history(number: int) -> list[dict[str, Any]]:
    """The commercial sample with this customer's own ids."""
    history = copy.deepcopy(event_samples.commercial_history())
    for snapshot in history:
        snapshot[wire.ENTRY_REF_ID] = f"ref-{number:06d}"
        snapshot[wire.ENTRY_ID] = f"CAISO_{number:08d}-9dfd-433b-9482-fd043f2336d4_ref-{number:06d}"
        for utility in snapshot[wire.ENTRY_UTILITY_CONNECTIONS]:
            utility[wire.UTILITY_AUTHORIZATION_UUID] = f"{number:08d}-8b22-4341-8b5b-8752a21dccad"
    return history


def stream_records(entries: int, by_entry: bool = False) -> list[dict[str, Any]]:
    """Change by change (every entry's first change, then every second, ...), or ``by_entry``."""
    per_entry = [event_samples.history_records(customer_history(n)) for n in range(entries)]
    if by_entry:
        return [record for records in per_entry for record in records]
    return [records[change] for change in range(len(per_entry[0])) for records in per_entry]


def deserialise_only(records: Sequence[dict[str, Any]]) -> int:
    for raw in records:
        change = DynamoDBRecord(raw).dynamodb
        change.old_image, change.new_image  # noqa: B018 - the deserialisation is the work measured
    return 0


def diff_and_serialise(records: Sequence[dict[str, Any]]) -> int:
    count = 0
    for raw in records:
        change = DynamoDBRecord(raw).dynamodb
        count += len(record_messages(change.old_image, change.new_image))
    return count


def best_rate(
    work: Callable[[Sequence[dict[str, Any]]], int], records: list[dict[str, Any]], repeat: int
) -> float:
    """Records per second, median of ``repeat`` runs (fresh record dicts: Powertools caches images)."""
    rates = []
    for _ in range(repeat):
        fresh = copy.deepcopy(records)
        gc.collect()
        gc.disable()  # as timeit does: a Lambda batch is 100 records, not a heap of thousands to scan
        try:
            started = time.perf_counter()
            work(fresh)
            rates.append(len(records) / (time.perf_counter() - started))
        finally:
            gc.enable()
    return statistics.median(rates)


def prepared_batches(records: list[dict[str, Any]], batch_size: int) -> list[list[list[OutgoingMessage]]]:
    batches = []
    for start in range(0, len(records), batch_size):
        batch = [DynamoDBRecord(raw).dynamodb for raw in records[start : start + batch_size]]
        batches.append([record_messages(change.old_image, change.new_image) for change in batch])
    return batches


def calls_per_event(batches: list[list[list[OutgoingMessage]]]) -> tuple[int, int]:
    publisher = CountingPublisher()
    for prepared in batches:
        publish_in_order(prepared, publisher)
    return publisher.calls, publisher.messages


def one_record_per_entry_calls(prepared: Sequence[Sequence[OutgoingMessage]]) -> int:
    """The baseline: the calls of the packing rule before this one (records in stream order, 10
    messages a call, a new call when the record's entry already has a record in the call)."""
    calls, current, size, entries = 0, 0, 0, set()
    for messages in prepared:
        if messages and messages[0].entry_id in entries:
            calls, current, size, entries = calls + 1, 0, 0, set()
        for message in messages:
            if current and (current == MAX_BATCH_MESSAGES or size + message.size > MAX_BATCH_BYTES):
                calls, current, size, entries = calls + 1, 0, 0, set()
            current, size = current + 1, size + message.size
            entries.add(message.entry_id)
    return calls + (1 if current else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100, help="the event source mapping's BatchSize")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    records = stream_records(args.entries)
    events = diff_and_serialise(copy.deepcopy(records))
    baseline = best_rate(deserialise_only, records, args.repeat)
    emitter = best_rate(diff_and_serialise, records, args.repeat)
    calls, published = calls_per_event(prepared_batches(records, args.batch_size))
    several = prepared_batches(stream_records(args.entries, by_entry=True), args.batch_size)
    several_calls, several_events = calls_per_event(several)
    baseline_calls = sum(one_record_per_entry_calls(prepared) for prepared in several)

    per_record, baseline_per_record = 1e6 / emitter, 1e6 / baseline
    print(f"records: {len(records)} ({args.entries} entries x 5 changes), events: {events}")
    print(
        f"  stream-image deserialisation only  : {baseline:>9,.0f} records/s ({baseline_per_record:.0f} us)"
    )
    print(f"  + diff + CloudEvents serialisation : {emitter:>9,.0f} records/s ({per_record:.0f} us)")
    print(f"  the emitter's own work per record  : {per_record - baseline_per_record:.0f} us")
    print(f"SNS PublishBatch calls, batches of {args.batch_size} records (target 0.100 calls per event):")
    lines = [
        ("change by change (one change per entry a batch)", calls, published),
        ("entry by entry (several changes per entry a batch)", several_calls, several_events),
        ("  the same, the one-record-per-entry-per-call rule", baseline_calls, several_events),
    ]
    for label, made, count in lines:
        print(f"  {label:<52}: {made:>5} calls for {count} events, {made / count:.3f} calls per event")
    print(f"  several changes per entry: {baseline_calls / several_calls:.2f}x fewer calls than the baseline")
    return 0 if published == events == several_events else 1


if __name__ == "__main__":
    sys.exit(main())
