"""Emitter benchmark: records per second through the pure diff + serialisation, against plain
deserialisation of the same stream records, and SNS calls per event.

    python bench/emitter.py [--entries 1000] [--batch-size 100] [--repeat 3]

The records are what the poller writes (its own item format) for ENTRIES customers who each go
through the five changes of the doc's commercial sample; they reach the emitter change by change
(every entry's first change, then every entry's second, ...) in batches of the event source
mapping's size, as the table stream would deliver them. Publishing goes to a counting fake: the
calls per event are what SNS would see (no network, so no SNS latency is measured).
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


def stream_records(entries: int) -> list[dict[str, Any]]:
    per_entry = [event_samples.history_records(customer_history(n)) for n in range(entries)]
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


def calls_per_event(records: list[dict[str, Any]], batch_size: int) -> tuple[int, int]:
    publisher = CountingPublisher()
    for start in range(0, len(records), batch_size):
        batch = [DynamoDBRecord(raw).dynamodb for raw in records[start : start + batch_size]]
        prepared = [record_messages(change.old_image, change.new_image) for change in batch]
        publish_in_order(prepared, publisher)
    return publisher.calls, publisher.messages


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
    calls, published = calls_per_event(records, args.batch_size)

    per_record, baseline_per_record = 1e6 / emitter, 1e6 / baseline
    print(f"records: {len(records)} ({args.entries} entries x 5 changes), events: {events}")
    print(
        f"  stream-image deserialisation only  : {baseline:>9,.0f} records/s ({baseline_per_record:.0f} us)"
    )
    print(f"  + diff + CloudEvents serialisation : {emitter:>9,.0f} records/s ({per_record:.0f} us)")
    print(f"  the emitter's own work per record  : {per_record - baseline_per_record:.0f} us")
    print(
        f"SNS PublishBatch calls: {calls} for {published} events (batches of {args.batch_size} records): "
        f"{calls / published:.3f} calls per event (target 0.100), {published / calls:.1f} events per call"
    )
    return 0 if published == events else 1


if __name__ == "__main__":
    sys.exit(main())
