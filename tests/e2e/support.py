"""What several end-to-end tests share: polling on a schedule through the local runner with the
ground truth kept beside it, the events that truth implies, and writing items straight to the table."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from devtools.leap_simulator import LeapSimulator
from devtools.local_runner import LocalCloud, PartnerMessage
from leap_tracker.events import catalog
from leap_tracker.events.diff import change_events
from leap_tracker.leap import wire

POLL_EVERY = timedelta(hours=8)
POLLS = 15  # five days: enough customers click, stall, fail and complete
# The types the emitter publishes (the other types on the topic come from outreach and meters).
EMITTER_TYPES = {t for t in catalog.CATALOG if t.split(".")[0] in ("connection", "utility", "agreement")}


@dataclass
class Run:
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    received: dict[str, list[PartnerMessage]] = field(default_factory=lambda: defaultdict(list))


def run_polls(cloud: LocalCloud, leap: LeapSimulator, queues: dict[str, str], polls: int = POLLS) -> Run:
    """Poll on schedule, consuming the partner queues as a partner would (SQS keeps messages 4 days).

    Returns what each queue received and each Reference ID's history of stored snapshots: the
    ground truth, read from the simulator at each poll.
    """
    run = Run()
    for _ in range(polls):
        cloud.fire_schedule("PollerFunction")
        cloud.drain()
        for entry in leap.entries_at(cloud.now()):
            history = run.histories[entry[wire.ENTRY_REF_ID]]
            if not history or history[-1] != entry:
                history.append(entry)
        for name, url in queues.items():
            run.received[name] += cloud.drain_queue(url)
        cloud.advance(hours=POLL_EVERY.total_seconds() / 3600)
    return run


def expected_events(histories: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    events = {}
    for history in histories.values():
        previous = None
        for sequence, entry in enumerate(history, start=1):
            events |= {e["id"]: e for e in change_events(previous, entry, sequence)}
            previous = entry
    return events


def emitted(messages: list[PartnerMessage]) -> list[dict[str, Any]]:
    return [m.body for m in messages if m.body["type"] in EMITTER_TYPES]


def put_items(cloud: LocalCloud, items: list[dict[str, Any]]) -> None:
    serializer = TypeSerializer()
    client, name = cloud.client("dynamodb"), cloud.resources.table_name("ConnectionsTable")
    for start in range(0, len(items), 25):
        requests = [
            {"PutRequest": {"Item": {k: serializer.serialize(v) for k, v in item.items()}}}
            for item in items[start : start + 25]
        ]
        client.batch_write_item(RequestItems={name: requests})
