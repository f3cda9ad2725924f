"""Poller benchmark (not a test): DynamoDB writes, HTTP requests, CPU and peak memory per poll.

    python bench/poller.py [--entries 10000] [--big 100000] [--change 0.01] [--skip-big]

1. Writes: the Leap simulator (ENTRIES customers, every one clicked) over HTTP with the real client,
   moto with the table as template.yaml declares it, the real DynamoDB store. Polls: a first poll
   (everything new), then CHANGE of the entries are touched an hour later and the scheduled
   (incremental) poll runs, then CHANGE more and a full reconciliation. botocore hooks on the
   client count each DynamoDB request and the write units of every item put (DynamoDB's size rules,
   1 WCU per started KB; moto's own ConsumedCapacity is a constant, so it is not used), snapshots
   and their history items apart. The naive baseline puts every entry of the same pages (no reads,
   no history), through the same hooks. Then the funnel is counted on moto's funnel-index and
   compared with the simulator's truth.
   Reads, from item sizes too: a snapshot read (BatchGetItem, strongly consistent, 1 RCU per started
   4 KB of the WHOLE item, whatever the projection) and the funnel count (Query on the KEYS_ONLY
   index, eventually consistent: 0.5 RCU per started 4 KB of index entries a page; an index entry is
   its keys + 100 bytes), at ENTRIES and at BIG.
2. CPU: the poller's own work (validation, canonical JSON, hashes, decisions, item building and the
   run loop) over already-decoded pages with an in-memory store, per entry, against ``json.loads``
   of the same page bodies, both with ``time.process_time``.
3. Memory: the simulator runs in a SUBPROCESS and DynamoDB is a botocore transport stub that answers
   in-process without keeping anything (its reads report a newer snapshot for all but CHANGE of the
   entries, so CHANGE of them are written), so only the poller's own allocations are traced
   (``tracemalloc``): peak of a full pass at ENTRIES and at BIG.

A full pass at Leap's pace, instead of the above when --page-latency-ms is given:

    python bench/poller.py --entries 1000000 --page-latency-ms 300 [--dynamodb-latency-ms 8]
        [--listing-order index|start_date] [--change 0.01]

   The simulator runs in a subprocess, every Connect answer taking at least the latency (its own
   building inside it), listed in the order asked; the REAL LeapHttpClient and DynamoPollerStore,
   over the DynamoDB stub above with every call taking at least --dynamodb-latency-ms (calls from
   several threads at once are answered at once), and ``run_poll`` with a FULL request and time that
   never runs out. For 10,000 entries and for ENTRIES, one line each:
   ``full pass: N entries, P pages, W s wall, floor F s (pages x latency), ratio R``, then the write
   units (snapshots, history and control = the lease/checkpoint writes apart, and the control writes
   per 10 pages), the read units from the whole item's size (1 RCU per started 4 KB strongly
   consistent, 0.5 eventually, per key read: ConsistentRead is counted per BatchGetItem), the peak
   memory, where the wall goes, and the simulator process's build time and RSS. The timed pass runs
   with tracemalloc off (it slows the poller's CPU ~4x); the peak memory is from passes of the same
   size right after it, traced (at 10,000 entries the max of a few: the pages alive at once vary
   with the threads' timing, and a long pass meets the worst case). Every measured pass follows a
   warm-up (a ref_id poll, a FULL pass cut short after a few pages). Then the peak-memory ratio and
   the verdicts against the targets: R <= 1.15, the peak within 1.2x, <= 1 control write per 10
   pages, snapshot write units = changed entries.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]  # run as a script from anywhere
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_METRICS_NAMESPACE": "LeapConnectTracker",
}.items():
    os.environ.setdefault(_name, _value)

import boto3  # noqa: E402
import requests  # noqa: E402
from botocore.awsrequest import AWSResponse  # noqa: E402
from moto import mock_aws  # noqa: E402

from devtools.leap_simulator import LeapSimulator, ListingOrder  # noqa: E402
from devtools.template_tables import create_connections_table  # noqa: E402
from leap_tracker import table  # noqa: E402
from leap_tracker.adapters.aws import aws_client  # noqa: E402
from leap_tracker.adapters.dynamo import string_key  # noqa: E402
from leap_tracker.adapters.funnel import count_funnel, funnel_statuses  # noqa: E402
from leap_tracker.adapters.leap_http import LeapHttpClient  # noqa: E402
from leap_tracker.adapters.poller_store import (  # noqa: E402
    DynamoPollerStore,
    history_item,
    item_size_bytes,
    snapshot_item,
    write_units,
)
from leap_tracker.config import LeapApiSettings, PollerSettings  # noqa: E402
from leap_tracker.leap import wire  # noqa: E402
from leap_tracker.leap.api import ConnectPage, ConnectQuery  # noqa: E402
from leap_tracker.leap.connect_model import canonical_json, validate_entry  # noqa: E402
from leap_tracker.poller.ports import (  # noqa: E402
    Checkpoint,
    LeaseUse,
    QuarantineRecord,
    SnapshotWrite,
    StoredState,
)
from leap_tracker.poller.request import PollMode, PollRequest  # noqa: E402
from leap_tracker.poller.run import PollEnvironment, RunSummary, run_poll  # noqa: E402
from leap_tracker.privacy import Pseudonyms  # noqa: E402
from leap_tracker.table import decode_stored_entry  # noqa: E402

SEED = 2025
DAYS = 20  # every customer has clicked (the click window is 14 days)
PAGE_SIZE = 500
TABLE = "connections"
SCHEDULED = PollRequest(PollMode.SCHEDULED)
FULL = PollRequest(PollMode.FULL)
CONNECT_PATH = wire.DEFAULT_CONNECT_WIRE.path
BENCH_PSEUDONYMS = Pseudonyms.from_secret("bench-log-hash-key-0123456789abcdefghijklmnop")
READ_UNIT_BYTES = 4096


# --- counting DynamoDB requests and write units ----------------------------------------------------


@dataclass
class DynamoMeter:
    """What a client sent, from botocore's hooks: requests per operation, write units per kind and
    read units per kind (snapshots: BatchGetItem; control: GetItem of the lease and checkpoint items).

    Read units come from the size of the WHOLE item read (``stored_size``: pk -> bytes, 0 when there is
    none; without it, reads are counted in keys only): a strongly consistent read costs 1 RCU per
    started 4 KB, an eventually consistent one 0.5, and a key with no item still costs the minimum.
    Thread-safe: the store may send its batch calls from several threads at once."""

    requests: Counter[str] = field(default_factory=Counter)
    write_units: Counter[str] = field(default_factory=Counter)  # snapshots / history / quarantine / control
    items_put: Counter[str] = field(default_factory=Counter)
    keys_read: int = 0
    consistent_keys_read: int = 0  # of keys_read, those read with ConsistentRead
    read_units: Counter[str] = field(default_factory=Counter)  # snapshots / control (floats)
    control_writes: int = 0  # requests writing the lease, the waiting-pass item or the checkpoint
    stored_size: Callable[[str], int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attach(self, client: Any) -> DynamoMeter:
        client.meta.events.register("before-parameter-build.dynamodb.*", self._count)
        return self

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.write_units.clear()
            self.items_put.clear()
            self.read_units.clear()
            self.keys_read = self.consistent_keys_read = self.control_writes = 0

    def _count(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self._count_request(model.name, params)

    def _count_request(self, name: str, params: dict[str, Any]) -> None:
        self.requests[name] += 1
        if name == "BatchWriteItem":
            for batch in params["RequestItems"].values():
                for request in batch:
                    self._put(request["PutRequest"]["Item"])
        elif name == "PutItem":
            if self._put(params["Item"]) == "control":
                self.control_writes += 1
        elif name in ("UpdateItem", "DeleteItem"):
            self.write_units["control"] += 1  # the lease: a small item
            self.control_writes += 1
        elif name == "BatchGetItem":
            for request in params["RequestItems"].values():
                consistent = bool(request.get("ConsistentRead", False))
                self.keys_read += len(request["Keys"])
                self.consistent_keys_read += len(request["Keys"]) if consistent else 0
                for key in request["Keys"]:
                    self._read("snapshots", key[table.PK]["S"], consistent)
        elif name == "GetItem":
            self._read("control", params["Key"][table.PK]["S"], bool(params.get("ConsistentRead", False)))

    def _put(self, item: dict[str, Any]) -> str:
        pk = item[table.PK]["S"]
        prefixes = {
            table.CONNECTION_PREFIX: "snapshots",
            table.HISTORY_PREFIX: "history",
            table.QUARANTINE_PREFIX: "quarantine",
        }
        kind = next((kind for prefix, kind in prefixes.items() if pk.startswith(prefix)), "control")
        self.write_units[kind] += write_units(item)
        self.items_put[kind] += 1
        return kind

    def _read(self, kind: str, pk: str, consistent: bool) -> None:
        if self.stored_size is None:
            return
        started_blocks = max(1, math.ceil(self.stored_size(pk) / READ_UNIT_BYTES))
        self.read_units[kind] += started_blocks * (1.0 if consistent else 0.5)

    @property
    def write_requests(self) -> int:
        return sum(self.requests[name] for name in ("BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem"))


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


# The stored entry a read returns with each snapshot (the store keeps a page's of them for the
# history): incompressible bytes of a typical compressed entry's size, so the memory it holds is real.
_STORED_ENTRY = b"".join(hashlib.sha256(bytes([n])).digest() for n in range(19))  # 608 bytes
_STORED_NEWER = {  # a stored state no entry can replace: a different hash and a later last interaction
    table.CONN_CONTENT_HASH: {"S": "0" * 64},
    table.CONN_SEQUENCE: {"N": "7"},
    table.CONN_LAST_INTERACTION: {"S": "2099-01-01T00:00:00Z"},
    table.CONN_ENTRY: {"B": base64.b64encode(_STORED_ENTRY).decode()},  # the JSON protocol's form
}


def _holds_newer(pk: str, new_one_in: int | None) -> bool:
    """Whether the stub's table holds a newer snapshot under ``pk`` (all but 1 key in ``new_one_in``)."""
    return bool(new_one_in) and zlib.crc32(pk.encode()) % new_one_in != 0


def stubbed_dynamodb(new_one_in: int | None = None, latency_ms: float = 0.0) -> Any:
    """A real botocore client (requests are validated, built and signed) whose transport answers
    in-process and keeps nothing. Writes succeed. Reads find nothing (every entry is new), or, with
    ``new_one_in=100``, find a newer snapshot for all but 1 entry in 100 (picked by a hash of the key),
    so about 1% of the entries are written, as in a steady-state poll. Every call takes at least
    ``latency_ms`` (a sleep: DynamoDB's round trip); calls from several threads are answered at once."""
    client = aws_client("dynamodb", boto3.session.Session(region_name="us-east-1"))

    def read_answer(body: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, list[dict[str, Any]]] = {}
        for table_name, request in body["RequestItems"].items():
            pks = (key[table.PK] for key in request["Keys"])
            found[table_name] = [
                {table.PK: pk, **_STORED_NEWER} for pk in pks if _holds_newer(pk["S"], new_one_in)
            ]
        return {"Responses": found, "UnprocessedKeys": {}}

    def answer(request: Any, **_: Any) -> AWSResponse:
        started = time.perf_counter()
        target = request.headers["X-Amz-Target"]
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        if operation == "BatchGetItem":
            result = read_answer(json.loads(request.body))
        else:
            result = {"UnprocessedItems": {}} if operation == "BatchWriteItem" else {}
        body = json.dumps(result).encode()
        left = latency_ms / 1000 - (time.perf_counter() - started)
        if left > 0:
            time.sleep(left)
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Body(body))

    client.meta.events.register("before-send.dynamodb", answer)
    return client


def stubbed_item_size(new_one_in: int | None) -> Callable[[str], int]:
    """The size of the WHOLE item the stub's table holds under a pk (0: none), what a read of it costs
    whatever the projection: a snapshot item around the stub's stored entry."""
    kept = {name: value for name, value in _STORED_NEWER.items() if name != table.CONN_ENTRY}

    def size(pk: str) -> int:
        if not pk.startswith(table.CONNECTION_PREFIX) or not _holds_newer(pk, new_one_in):
            return 0
        entry_id = table.entry_id_from_pk(pk)
        item = {
            **string_key(table.connection_key(entry_id)),
            **kept,
            table.ITEM_TYPE: {"S": table.CONNECTION_ITEM_TYPE},
            table.CONN_ENTRY: {"B": _STORED_ENTRY},
            table.CONN_REF_ID: {"S": entry_id.rsplit("_", 1)[-1]},
            table.CONN_WRITTEN_AT: {"S": "2025-01-26T00:00:00Z"},
            table.CONN_STATUS: {"S": wire.CONNECTION_COMPLETED},
            table.CONN_FUNNEL_KEY: {
                "S": table.funnel_key(wire.CONNECTION_COMPLETED, entry_id, wire.KNOWN_CONNECTION_STATUSES)
            },
            table.CONN_TRANSMISSION_REGION: {"S": entry_id.split("_", 1)[0]},
        }
        return item_size_bytes(item)

    return size


def create_table(client: Any) -> None:
    """The connections table as template.yaml declares it."""
    create_connections_table(client, TABLE)


# --- running the poller ---------------------------------------------------------------------------


def poll(
    request: PollRequest, source: Any, store: Any, now: Callable[[], datetime], run: list[int]
) -> RunSummary:
    run[0] += 1
    env = PollEnvironment(
        source=source,
        store=store,
        now=now,
        remaining_ms=lambda: 900_000,
        pseudonyms=BENCH_PSEUDONYMS,
        retry_count=lambda: getattr(getattr(source, "stats", None), "retries", 0),
    )
    return run_poll(request, f"bench-{run[0]}", env, PollerSettings())


def leap_client(base_url: str, api_key: str, session: requests.Session | None = None) -> LeapHttpClient:
    return LeapHttpClient(
        LeapApiSettings(base_url=base_url, api_key=api_key, page_size=PAGE_SIZE), session=session
    )


@dataclass
class PollCost:
    label: str
    changed_truth: int
    summary: RunSummary
    http_requests: int
    write_requests: int
    snapshot_units: int
    history_units: int
    control_units: int
    read_requests: int
    keys_read: int
    items_over_1kb: int = 0

    @property
    def write_units(self) -> int:
        return self.snapshot_units + self.history_units + self.control_units


@dataclass
class FunnelCheck:
    counts: dict[str, int]
    truth: dict[str, int]
    queries: int


def measure_writes(
    entries: int, change: float
) -> tuple[list[PollCost], PollCost, Counter[int], Counter[int], FunnelCheck]:
    """Three polls through moto and the simulator, the naive baseline on the last poll's pages, and
    the funnel counted on moto against the simulator's truth."""
    costs: list[PollCost] = []
    run = [0]
    with LeapSimulator(seed=SEED, customers=entries) as sim, mock_aws():
        sim.advance(days=DAYS)
        client = aws_client("dynamodb", boto3.session.Session(region_name="us-east-1"))
        create_table(client)
        meter = DynamoMeter().attach(client)
        store = DynamoPollerStore(client, TABLE)
        leap = leap_client(sim.base_url, sim.api_key)
        seen: dict[str, str] = {}  # ground truth at the previous poll: entry id -> canonical JSON

        def measured(label: str, request: PollRequest) -> None:
            truth = {e[wire.ENTRY_ID]: canonical_json(e) for e in sim.iter_entries()}
            changed = sum(1 for entry_id, text in truth.items() if seen.get(entry_id) != text)
            seen.clear()
            seen.update(truth)
            meter.reset()
            http_before = sim.requests[CONNECT_PATH]
            summary = poll(request, leap, store, lambda: sim.now, run)
            costs.append(
                PollCost(
                    label=label,
                    changed_truth=changed,
                    summary=summary,
                    http_requests=sim.requests[CONNECT_PATH] - http_before,
                    write_requests=meter.write_requests,
                    snapshot_units=meter.write_units["snapshots"] + meter.write_units["quarantine"],
                    history_units=meter.write_units["history"],
                    control_units=meter.write_units["control"],
                    read_requests=meter.requests["BatchGetItem"] + meter.requests["GetItem"],
                    keys_read=meter.keys_read,
                )
            )

        measured("first poll (all new, full pass)", SCHEDULED)
        sim.advance(hours=1)
        sim.touch(change)
        measured(f"next poll, {change:.0%} touched (incremental)", SCHEDULED)
        sim.advance(hours=1)
        sim.touch(change)
        measured(f"next poll, {change:.0%} touched (full pass)", FULL)
        pages = list(leap.iter_pages(ConnectQuery(start_date=PollerSettings().full_reconciliation_start)))
        leap.close()
        meter.reset()
        truth = Counter(
            status if status in wire.KNOWN_CONNECTION_STATUSES else table.FUNNEL_OTHER_STATUS
            for status in sim.status_counts().elements()
        )
        funnel = FunnelCheck(
            counts=count_funnel(client, TABLE),
            truth={status: truth.get(status, 0) for status in funnel_statuses()},
            queries=meter.requests["Query"],
        )
    naive, sizes, plain_text = naive_baseline(pages)
    return costs, naive, sizes, plain_text, funnel


def naive_baseline(pages: Sequence[ConnectPage]) -> tuple[PollCost, Counter[int], Counter[int]]:
    """Put every entry of every page (what a poller without change detection does)."""
    client = stubbed_dynamodb()
    meter = DynamoMeter().attach(client)
    sizes: Counter[int] = Counter()
    plain_text: Counter[int] = Counter()
    written_at = datetime.fromisoformat("2025-01-26T00:00:00+00:00")
    for page in pages:
        items = [snapshot_item(SnapshotWrite(validate_entry(raw), 2), written_at) for raw in page.entries]
        for item in items:
            sizes[write_units(item)] += 1
            # What the same item would cost with the entry stored as plain JSON text instead.
            plain = {
                **item,
                table.CONN_ENTRY: {"S": json.dumps(decode_stored_entry(item[table.CONN_ENTRY]["B"]))},
            }
            plain_text[write_units(plain)] += 1
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            client.batch_write_item(RequestItems={TABLE: batch})
    total = sum(len(page.entries) for page in pages)
    cost = PollCost(
        label="naive baseline (put every entry)",
        changed_truth=total,
        summary=RunSummary(run_id="naive", mode=PollMode.FULL, pages=len(pages), changed=total),
        http_requests=len(pages),
        write_requests=meter.write_requests,
        snapshot_units=meter.write_units["snapshots"],
        history_units=0,
        control_units=0,
        read_requests=0,
        keys_read=0,
    )
    return cost, sizes, plain_text


# --- read units, from item sizes --------------------------------------------------------------------

INDEX_ENTRY_OVERHEAD = 100  # bytes DynamoDB adds to every GSI entry


@dataclass
class ReadCost:
    entries: int
    largest_snapshot: int  # bytes: a strongly consistent read of it is 1 RCU while this is <= 4 KB
    snapshot_read_units: int  # a full pass's BatchGetItem: 1 RCU per item of <= 4 KB
    index_bytes: int  # funnel-index: every entry's keys + 100 bytes
    funnel_read_units: float  # one count: (statuses + OTHER) x shards eventually consistent Queries
    funnel_queries: int


def measure_reads(entries: int) -> ReadCost:
    """The read units of a full pass's snapshot reads and of one funnel count at ``entries`` entries
    (the simulator's population, not served: its entries are read in-process)."""
    sim = LeapSimulator(seed=SEED, customers=entries)
    sim.advance(days=DAYS)
    written_at = datetime.fromisoformat("2025-01-26T00:00:00+00:00")
    largest = reads = 0
    partitions: Counter[str] = Counter()  # funnel key -> bytes of index entries
    for raw in sim.iter_entries():
        item = snapshot_item(SnapshotWrite(validate_entry(raw), 2), written_at)
        size = item_size_bytes(item)
        largest, reads = max(largest, size), reads + math.ceil(size / READ_UNIT_BYTES)
        keys = {name: item[name] for name in (table.PK, table.SK, table.CONN_FUNNEL_KEY)}
        partitions[item[table.CONN_FUNNEL_KEY]["S"]] += item_size_bytes(keys) + INDEX_ENTRY_OVERHEAD
    queried = len(funnel_statuses()) * table.FUNNEL_SHARDS
    # A Query reads its partition's index entries, rounded up to 4 KB, at half a unit per 4 KB
    # (eventually consistent); a partition with nothing in it still costs the minimum, 0.5.
    units = 0.5 * sum(math.ceil(size / READ_UNIT_BYTES) for size in partitions.values())
    units += 0.5 * (queried - len(partitions))
    return ReadCost(entries, largest, reads, sum(partitions.values()), units, queried)


# --- CPU -----------------------------------------------------------------------------------------


class MemoryStore:
    """Just enough of a PollerStore to time the poller's own work."""

    def __init__(self) -> None:
        self.states: dict[str, StoredState] = {}
        self.entries: dict[str, bytes] = {}  # the stored (compressed) entry: the next change's previous
        self.checkpoint = Checkpoint()

    def acquire_lease(
        self, owner: str, now: datetime, until: datetime, use: LeaseUse = LeaseUse.PASS
    ) -> None: ...
    def announce_waiting_pass(self, owner: str, until: datetime) -> None: ...
    def withdraw_waiting_pass(self, owner: str) -> None: ...
    def renew_lease(self, owner: str, until: datetime) -> None: ...
    def release_lease(self, owner: str) -> bool:
        return True

    def load_checkpoint(self) -> Checkpoint:
        return self.checkpoint

    def save_checkpoint(self, checkpoint: Checkpoint, owner: str, now: datetime) -> None:
        self.checkpoint = checkpoint

    def read_snapshots(self, entry_ids: Sequence[str], *, consistent: bool = True) -> dict[str, StoredState]:
        return {i: s for i in entry_ids if (s := self.states.get(i)) is not None}

    def write_changes(
        self, snapshots: Sequence[SnapshotWrite], quarantined: Sequence[QuarantineRecord], now: datetime
    ) -> None:
        for write in snapshots:
            entry = write.entry
            stored = self.entries.get(entry.entry_id)
            previous = canonical_json(decode_stored_entry(stored)) if stored else None  # as the store does
            history_item(write, previous, now, now)  # building the items is the poller's work too
            self.entries[entry.entry_id] = snapshot_item(write, now)[table.CONN_ENTRY]["B"]
            self.states[entry.entry_id] = StoredState(
                entry.content_hash, write.sequence, entry.last_interaction
            )


class DecodedPages:
    def __init__(self, pages: list[ConnectPage]) -> None:
        self.pages = pages

    def iter_pages(self, query: ConnectQuery, page_token: str | None = None) -> Iterator[ConnectPage]:
        return iter(self.pages)


def page_bodies(sim: LeapSimulator) -> list[bytes]:
    """The raw Connect answers of a full selection, as the client received them."""
    bodies: list[bytes] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *args, **kwargs: bodies.append(response.content))
    with leap_client(sim.base_url, sim.api_key, session) as leap:
        for _ in leap.iter_pages(ConnectQuery(start_date=PollerSettings().full_reconciliation_start)):
            pass
    return bodies


def decoded(bodies: list[bytes]) -> list[ConnectPage]:
    names = wire.DEFAULT_CONNECT_WIRE
    answers = [json.loads(body) for body in bodies]
    return [ConnectPage(a[names.list_field], a.get(names.next_page_token_field)) for a in answers]


def cpu_seconds(action: Callable[[], Any], repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best


@dataclass
class CpuCost:
    entries: int
    change: float
    json_loads: float
    poller_steady: float  # 1% changed
    poller_first: float  # everything new
    zlib_levels: list[tuple[int, float, float, int]] = field(default_factory=list)  # level, s, mean B, max B


def measure_cpu(entries: int, change: float) -> CpuCost:
    with LeapSimulator(seed=SEED, customers=entries) as sim:
        sim.advance(days=DAYS)
        first_bodies = page_bodies(sim)
        sim.advance(hours=1)
        sim.touch(change)
        now = sim.now
        bodies = page_bodies(sim)
    first_pages, pages = decoded(first_bodies), decoded(bodies)
    run = [0]

    def steady_poll_seconds() -> float:
        """The second poll only: the first one fills the store."""
        store = MemoryStore()
        poll(FULL, DecodedPages(first_pages), store, lambda: now, run)
        gc.collect()
        started = time.process_time()
        poll(FULL, DecodedPages(pages), store, lambda: now, run)
        return time.process_time() - started

    texts = [canonical_json(entry).encode() for page in pages for entry in page.entries]
    levels = []
    for level in range(1, 10):  # the stored entry's compression level, chosen by this table
        sizes = [len(zlib.compress(text, level)) for text in texts]
        seconds = cpu_seconds(lambda level=level: [zlib.compress(text, level) for text in texts])
        levels.append((level, seconds, sum(sizes) / len(sizes), max(sizes)))
    return CpuCost(
        zlib_levels=levels,
        entries=sum(len(page.entries) for page in pages),
        change=change,
        json_loads=cpu_seconds(lambda: [json.loads(body) for body in bodies]),
        poller_steady=min(steady_poll_seconds() for _ in range(3)),
        poller_first=cpu_seconds(
            lambda: poll(FULL, DecodedPages(first_pages), MemoryStore(), lambda: now, run)
        ),
    )


# --- memory ------------------------------------------------------------------------------------------


@dataclass
class ServedSimulator:
    """A simulator serving from its own process: where, and what building it cost that process."""

    base_url: str
    api_key: str
    build_seconds: float
    rss_mib: float  # the process's peak RSS once built
    peak_rss_mib: float = 0.0  # ... and once it stopped serving (read when the context ends)


@contextlib.contextmanager
def simulator_process(
    entries: int, page_latency_ms: float = 0.0, listing_order: ListingOrder = "index"
) -> Iterator[ServedSimulator]:
    """A simulator in its own process (its memory is not the poller's)."""
    command = [sys.executable, __file__, "--serve-simulator", str(entries)]
    command += ["--page-latency-ms", str(page_latency_ms), "--listing-order", listing_order]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        base_url, api_key, built, rss = process.stdout.readline().split()
        served = ServedSimulator(base_url, api_key, float(built), float(rss))
        yield served
        process.stdin.close()
        served.peak_rss_mib = float(process.stdout.readline() or "nan")
    finally:
        if process.stdin and not process.stdin.closed:
            process.stdin.close()
        process.wait(timeout=30)


def serve_simulator(entries: int, page_latency_ms: float, listing_order: ListingOrder) -> None:
    started = time.perf_counter()
    sim = LeapSimulator(
        seed=SEED, customers=entries, listing_order=listing_order, page_latency_ms=page_latency_ms
    )
    built = time.perf_counter() - started
    with sim:
        sim.advance(days=DAYS)
        print(sim.base_url, sim.api_key, f"{built:.2f}", f"{peak_rss_mib():.1f}", flush=True)
        sys.stdin.read()  # until the parent closes it
    print(f"{peak_rss_mib():.1f}", flush=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class MemoryCost:
    entries: int
    written: int
    peak_bytes: int
    seconds: float


def measure_memory(entries: int, change: float) -> MemoryCost:
    with simulator_process(entries) as served:
        store = DynamoPollerStore(stubbed_dynamodb(new_one_in=round(1 / change)), TABLE)
        leap = leap_client(served.base_url, served.api_key)
        now = datetime.fromisoformat("2025-01-26T00:00:00+00:00")
        some_ref_id = next(
            leap.iter_pages(ConnectQuery(start_date=PollerSettings().full_reconciliation_start))
        )
        ref_id = some_ref_id.entries[0][wire.ENTRY_REF_ID]
        poll(PollRequest(PollMode.REF_ID, ref_id), leap, store, lambda: now, [0])  # warm up the code paths
        gc.collect()
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        started = time.perf_counter()
        summary = poll(FULL, leap, store, lambda: now, [1])
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] - baseline
        tracemalloc.stop()
        leap.close()
    if summary.entries_seen != entries:
        raise RuntimeError(f"the poll saw {summary.entries_seen} entries, expected {entries}")
    return MemoryCost(entries, summary.changed, peak, seconds)


# --- a full pass at Leap's pace -----------------------------------------------------------------------

SMALL_PASS = 10_000  # the full pass measured next to --entries: the memory ratio's reference
TARGET_RATIO = 1.15  # wall / (pages x latency)
TARGET_MEMORY_GROWTH = 1.2  # peak at --entries / peak at SMALL_PASS
TARGET_CONTROL_PER_10_PAGES = 1.0  # lease and checkpoint writes
WARM_UP_PAGES = 3  # a FULL pass cut short before each measured one
PEAK_WINDOW_SECONDS = 30.0
SMALL_TRACED_PASSES = 5  # the small pass's peak: the max of a few (a big pass has many more pages)


@dataclass
class PassRun:
    """What one FULL pass cost: its summary, times and DynamoDB traffic (peak memory when traced)."""

    summary: RunSummary
    wall: float
    cpu: float  # the poller process's CPU time during the pass (all its threads)
    meter: DynamoMeter
    peak_bytes: int | None
    window_peaks: list[int] = field(default_factory=list)  # traced: the peak of each PEAK_WINDOW_SECONDS


@dataclass
class FullPass:
    """FULL passes through the real client and store, the simulator answering at a set pace: one
    timed (tracemalloc off: it slows every allocation, ~4x the CPU), then traced ones for the peak
    memory (its max: the pages a pass holds at once vary a little with the threads' timing)."""

    entries: int
    page_latency_ms: float
    timed: PassRun
    traced: list[PassRun]
    simulator: ServedSimulator

    @property
    def pages(self) -> int:
        return self.timed.summary.pages

    @property
    def changed(self) -> int:
        return self.timed.summary.changed

    @property
    def meter(self) -> DynamoMeter:
        return self.timed.meter

    @property
    def peaks(self) -> list[int]:
        return [run.peak_bytes or 0 for run in self.traced]

    @property
    def peak_bytes(self) -> int:
        return max(self.peaks)

    @property
    def floor(self) -> float:
        return self.pages * self.page_latency_ms / 1000

    @property
    def ratio(self) -> float:
        return self.timed.wall / self.floor

    @property
    def control_per_10_pages(self) -> float:
        """Control writes per 10 pages beyond the two every run makes whatever its length (the lease
        taken and released): the progress records and lease renewals, what grows with the pass."""
        return 10 * max(0, self.meter.control_writes - LEASE_WRITES_PER_RUN) / self.pages


LEASE_WRITES_PER_RUN = 2  # the lease put when a run starts and deleted when it ends


def measure_full_pass(
    entries: int,
    page_latency_ms: float,
    dynamodb_latency_ms: float,
    listing_order: ListingOrder,
    change: float,
    traced_passes: int = 1,
) -> FullPass:
    """FULL passes of ``entries`` with the simulator (in a subprocess) answering each page in at least
    ``page_latency_ms``, DynamoDB stubbed at ``dynamodb_latency_ms`` a call, CHANGE of the entries
    written, and all the time the run wants: one timed, then ``traced_passes`` under tracemalloc."""
    with simulator_process(entries, page_latency_ms, listing_order) as served:
        timed = full_pass_run(served, dynamodb_latency_ms, change, traced=False)
        traced = [
            full_pass_run(served, dynamodb_latency_ms, change, traced=True) for _ in range(traced_passes)
        ]
    for run in [timed, *traced]:
        if run.summary.entries_seen != entries:
            raise RuntimeError(f"a pass saw {run.summary.entries_seen} entries, expected {entries}")
    return FullPass(entries, page_latency_ms, timed, traced, served)


def full_pass_run(
    served: ServedSimulator, dynamodb_latency_ms: float, change: float, traced: bool
) -> PassRun:
    new_one_in = round(1 / change)
    client = stubbed_dynamodb(new_one_in=new_one_in, latency_ms=dynamodb_latency_ms)
    meter = DynamoMeter(stored_size=stubbed_item_size(new_one_in)).attach(client)
    store = DynamoPollerStore(client, TABLE)
    now = datetime.fromisoformat("2025-01-26T00:00:00+00:00")
    with leap_client(served.base_url, served.api_key) as leap:
        if traced:  # from the warm-up on: what it leaves (caches filled once) is in the baseline
            tracemalloc.start()
        warm_up(leap, store, now)
        meter.reset()
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        windows = PeakWindows(baseline) if traced else None
        cpu_started, started = time.process_time(), time.perf_counter()
        with windows or contextlib.nullcontext():
            summary = poll(FULL, leap, store, lambda: now, [1])
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        tracemalloc.stop()
    peak = max(windows.peaks) if windows else None
    return PassRun(summary, wall, cpu, meter, peak, windows.peaks if windows else [])


class PeakWindows:
    """The traced peak of every PEAK_WINDOW_SECONDS of a pass (above ``baseline``), from a thread: a
    peak that creeps up window after window is growth; one window above the rest is the timing."""

    def __init__(self, baseline: int) -> None:
        self.baseline = baseline
        self.peaks: list[int] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-peak-windows", daemon=True)

    def __enter__(self) -> PeakWindows:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self._close_window()

    def _watch(self) -> None:
        while not self._done.wait(PEAK_WINDOW_SECONDS):
            self._close_window()

    def _close_window(self) -> None:
        self.peaks.append(tracemalloc.get_traced_memory()[1] - self.baseline)
        tracemalloc.reset_peak()


def warm_up(leap: LeapHttpClient, store: DynamoPollerStore, now: datetime) -> None:
    """Run the code paths of a pass once before it is measured: a ref_id poll, and a FULL pass cut
    short by the time limit after a few pages (the stub keeps no checkpoint: the next pass starts over)."""
    first = next(leap.iter_pages(ConnectQuery(start_date=PollerSettings().full_reconciliation_start)))
    poll(PollRequest(PollMode.REF_ID, first.entries[0][wire.ENTRY_REF_ID]), leap, store, lambda: now, [0])
    margin_ms = PollerSettings().time_margin_seconds * 1000
    remaining = iter([900_000] * WARM_UP_PAGES)
    env = PollEnvironment(
        source=leap,
        store=store,
        now=lambda: now,
        remaining_ms=lambda: next(remaining, margin_ms - 1),
        pseudonyms=BENCH_PSEUDONYMS,
    )
    run_poll(FULL, "bench-warm-up", env, PollerSettings())


def report_full_passes(
    passes: list[FullPass], dynamodb_latency_ms: float, listing_order: ListingOrder, change: float
) -> None:
    latency, order = passes[0].page_latency_ms, listing_order.replace("_", " ")
    print(
        f"\nFull pass at Leap's pace: every Connect answer takes >= {latency:g} ms (the simulator in a "
        f"subprocess, listed by {order}), DynamoDB stubbed at {dynamodb_latency_ms:g} ms a call, "
        f"{change:.0%} of the entries changed;\nthe real LeapHttpClient, DynamoPollerStore, run_poll FULL\n"
    )
    for done in passes:
        report_full_pass(done, dynamodb_latency_ms)
    small, big = passes[0], passes[-1]
    growth = big.peak_bytes / small.peak_bytes
    print(f"\npeak memory {big.entries:,} vs {small.entries:,} entries: {growth:.2f}x")

    def verdict(met: bool) -> str:
        return "met" if met else "NOT MET"

    print("verdicts (the targets the poller is built toward):")
    for done in passes:
        met = verdict(done.ratio <= TARGET_RATIO)
        print(f"  {done.entries:>9,} entries: ratio {done.ratio:.3f} <= {TARGET_RATIO}: {met}")
    met = verdict(growth <= TARGET_MEMORY_GROWTH)
    print(f"  peak memory within {TARGET_MEMORY_GROWTH}x: {growth:.2f}x: {met}")
    for done in passes:
        per_10, met = (
            done.control_per_10_pages,
            verdict(done.control_per_10_pages <= TARGET_CONTROL_PER_10_PAGES),
        )
        print(
            f"  {done.entries:>9,} entries: control writes per 10 pages {per_10:.2f} <= 1 (beyond the "
            f"run's {LEASE_WRITES_PER_RUN} of the lease): {met}"
        )
    for done in passes:
        units = done.meter.write_units
        print(
            f"  {done.entries:>9,} entries: snapshot WCU = changed entries ({units['snapshots']:,} for "
            f"{done.changed:,}): {verdict(units['snapshots'] == done.changed)} (history apart: "
            f"{units['history']:,} WCU)"
        )


def report_full_pass(done: FullPass, dynamodb_latency_ms: float) -> None:
    timed, traced = done.timed, done.traced
    peaks = ", ".join(f"{peak / 2**20:.2f}" for peak in done.peaks)
    walls = ", ".join(f"{run.wall:.1f}" for run in traced)
    meter, calls, units = done.meter, sum(done.meter.requests.values()), done.meter.write_units
    print(
        f"full pass: {done.entries:,} entries, {done.pages:,} pages, {timed.wall:.1f} s wall, "
        f"floor {done.floor:.1f} s (pages x latency), ratio {done.ratio:.3f}"
    )
    print(
        f"  writes: {done.changed:,} changed entries; snapshots {units['snapshots']:,} WCU, history "
        f"{units['history']:,} WCU, control {units['control']:,} WCU ({meter.control_writes:,} lease/"
        f"checkpoint writes: the lease taken and released, then {done.control_per_10_pages:.2f} per 10 "
        "pages); "
        f"{meter.requests['BatchWriteItem']:,} BatchWriteItem"
    )
    eventual = meter.keys_read - meter.consistent_keys_read
    print(
        f"  reads: snapshots {meter.read_units['snapshots']:,.1f} RCU ({meter.keys_read:,} keys: "
        f"{meter.consistent_keys_read:,} strongly consistent, {eventual:,} eventually; "
        f"{meter.requests['BatchGetItem']:,} BatchGetItem), control {meter.read_units['control']:,.1f} "
        f"RCU ({meter.requests['GetItem']:,} GetItem)"
    )
    print(
        f"  peak memory: {done.peak_bytes / 2**20:.2f} MiB (tracemalloc, the poller's process; the max of "
        f"{len(traced)} traced pass(es) after the timed one: {peaks} MiB, {walls} s wall)"
    )
    windows = traced[-1].window_peaks
    if len(windows) > 2:
        listed = " ".join(f"{peak / 2**20:.2f}" for peak in windows)
        print(f"  peak per {PEAK_WINDOW_SECONDS:g} s of the last traced pass (MiB): {listed}")
    print(
        f"  where the wall goes: waiting for pages {sum(timed.summary.api_latency_ms) / 1000:.1f} s (the "
        f"run's api_latency_ms), poller process CPU {timed.cpu:.1f} s, {calls:,} DynamoDB calls x "
        f"{dynamodb_latency_ms:g} ms = {calls * dynamodb_latency_ms / 1000:.1f} s"
    )
    sim = done.simulator
    print(
        f"  simulator (its own process): built in {sim.build_seconds:.1f} s, RSS {sim.rss_mib:.0f} MiB "
        f"built, {sim.peak_rss_mib:.0f} MiB peak after serving"
    )


# --- report ------------------------------------------------------------------------------------------


COLUMNS = (  # (title, width)
    ("poll", 42),
    ("changed", 8),
    ("written", 8),
    ("HTTP", 5),
    ("DDB writes", 11),
    ("WCU", 7),
    ("= snap", 7),
    ("+ hist", 7),
    ("+ ctrl", 7),
    ("reads", 6),
    ("keys", 7),
    ("WCU vs naive", 13),
)


def table_row(values: Sequence[str]) -> str:
    (_, width), *rest = COLUMNS
    return f"{values[0]:<{width}}" + "".join(
        f"{value:>{w}}" for value, (_, w) in zip(values[1:], rest, strict=True)
    )


def report(
    costs: list[PollCost],
    naive: PollCost,
    sizes: Counter[int],
    plain_text: Counter[int],
    funnel: FunnelCheck,
    reads: list[ReadCost],
    cpu: CpuCost,
    memory: list[MemoryCost],
) -> None:
    entries = naive.changed_truth
    print(f"\nPoller benchmark: {entries:,} entries (Leap simulator, seed {SEED}), pages of {PAGE_SIZE}\n")
    header = table_row([title for title, _ in COLUMNS])
    print(header)
    print("-" * len(header))
    for cost in [*costs, naive]:
        values = (
            cost.changed_truth,
            cost.summary.changed,
            cost.http_requests,
            cost.write_requests,
            cost.write_units,
            cost.snapshot_units,
            cost.history_units,
            cost.control_units,
            cost.read_requests,
            cost.keys_read,
        )
        ratio = f"{cost.write_units / naive.write_units:.2%}"
        print(table_row([cost.label, *(f"{value:,}" for value in values), ratio]))

    def units_per_item(counts: Counter[int]) -> float:
        return sum(units * n for units, n in counts.items()) / sum(counts.values())

    one_unit = sizes[1] / sum(sizes.values())
    print(
        f"\nwrite units per written entry: {units_per_item(sizes):.2f} ({one_unit:.0%} of snapshot items are "
        "<= 1 KB = 1 WCU; the entry is stored zlib-compressed)"
    )
    print(f"  (were the entry stored as plain JSON text: {units_per_item(plain_text):.2f} WCU per entry)")
    for cost in costs:
        print(
            f"  {cost.label}: snapshot WCU {cost.snapshot_units} + history WCU {cost.history_units} "
            f"for {cost.summary.changed} changed entries + {cost.control_units} WCU of lease and "
            f"checkpoints ({cost.summary.pages} pages)"
        )
    exact = "exact" if funnel.counts == funnel.truth else "DIFFERENT from the truth"
    print(
        f"\nFunnel counted on moto's funnel-index after the polls ({funnel.queries} Queries, Select=COUNT): "
        f"{exact}\n  {funnel.counts}"
    )
    print("\nRead units, from item sizes (moto's ConsumedCapacity is a constant)")
    for cost in reads:
        print(
            f"  {cost.entries:>9,} entries: a full pass's snapshot reads {cost.snapshot_read_units:,} RCU "
            f"(largest snapshot item {cost.largest_snapshot:,} B < 4 KB: reading its entry too costs nothing "
            f"more); one funnel count {cost.funnel_read_units:,.1f} RCU ({cost.funnel_queries} Queries over "
            f"{cost.index_bytes / cost.entries:.0f} B of index per entry)"
        )
    per = 1e6 / cpu.entries
    print(f"\nCPU per entry ({cpu.entries:,} entries, process time, best of 3)")
    rows = (
        ("json.loads of the same page bodies", cpu.json_loads),
        (f"poller, {cpu.change:.0%} changed (steady state)", cpu.poller_steady),
        ("poller, every entry new (first poll)", cpu.poller_first),
    )
    for label, seconds in rows:
        print(f"  {label:<40}{seconds * per:8.1f} us   ({seconds / cpu.json_loads:.1f}x json.loads)")
    print(
        "  zlib level of the stored entry (compressing every entry once; the stored level is "
        f"{table.STORED_ENTRY_ZLIB_LEVEL}):"
    )
    for level, seconds, mean, largest in cpu.zlib_levels:
        print(
            f"    level {level}: {seconds * per:6.1f} us ({seconds / cpu.json_loads:.1f}x json.loads), "
            f"mean {mean:.0f} B, largest {largest} B"
        )
    print(f"\nPeak memory of a full pass with {cpu.change:.0%} of the entries to write")
    print("(tracemalloc in the poller's process; the simulator runs in a subprocess; DynamoDB is stubbed)")
    for cost in memory:
        print(
            f"  {cost.entries:>9,} entries   {cost.peak_bytes / 2**20:7.2f} MiB   "
            f"({cost.written:,} written, {cost.seconds:.1f} s with tracemalloc on)"
        )
    if len(memory) == 2:
        growth = memory[1].peak_bytes / memory[0].peak_bytes
        verdict = "within" if growth <= 1.2 else "OVER"
        print(f"  {memory[1].entries:,} vs {memory[0].entries:,}: {growth:.2f}x ({verdict} the 1.2x target)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--skip-big", action="store_true", help="measure memory at --entries only")
    parser.add_argument(
        "--page-latency-ms",
        type=float,
        help=f"measure full passes instead ({SMALL_PASS:,} and --entries entries) at this Connect latency",
    )
    parser.add_argument(
        "--dynamodb-latency-ms", type=float, default=8.0, help="with --page-latency-ms: each DynamoDB call's"
    )
    parser.add_argument(
        "--listing-order",
        choices=get_args(ListingOrder),
        default="index",
        help="with --page-latency-ms: how the simulator lists the entries",
    )
    parser.add_argument("--serve-simulator", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_simulator:
        serve_simulator(args.serve_simulator, args.page_latency_ms or 0.0, args.listing_order)
        return
    started = time.perf_counter()
    if args.page_latency_ms is not None:
        if args.page_latency_ms <= 0:
            parser.error("--page-latency-ms must be positive (the floor is pages x latency)")
        sizes = sorted({SMALL_PASS, args.entries})
        passes = [
            measure_full_pass(
                n,
                args.page_latency_ms,
                args.dynamodb_latency_ms,
                args.listing_order,
                args.change,
                traced_passes=SMALL_TRACED_PASSES if n == SMALL_PASS else 1,
            )
            for n in sizes
        ]
        report_full_passes(passes, args.dynamodb_latency_ms, args.listing_order, args.change)
        print(f"\n(bench ran {time.perf_counter() - started:.0f} s)")
        return
    costs, naive, sizes, plain_text, funnel = measure_writes(args.entries, args.change)
    cpu = measure_cpu(args.entries, args.change)
    sizes_for_memory = [args.entries] + ([] if args.skip_big else [args.big])
    reads = [measure_reads(entries) for entries in sizes_for_memory]
    memory = [measure_memory(entries, args.change) for entries in sizes_for_memory]
    report(costs, naive, sizes, plain_text, funnel, reads, cpu, memory)
    print(f"\n(bench ran {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
