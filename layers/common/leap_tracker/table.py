"""The table's key design, in one place (the README explains it).

One DynamoDB table, partition key ``pk`` and sort key ``sk`` (both strings):

| item                     | pk                       | sk                         |
|--------------------------|--------------------------|----------------------------|
| connection snapshot      | ``CONN#<entry id>``      | ``STATE``                  |
| quarantined entry        | ``QUARANTINE#<key>``     | ``<received at>``          |
| poller checkpoint        | ``POLLER``               | ``CHECKPOINT``             |
| poller lease             | ``POLLER``               | ``LEASE``                  |
| a pass waiting for it    | ``POLLER``               | ``PASS_WAITING``           |
| outreach customer state  | ``OUTREACH#<entry id>``  | ``STATE`` (+ its ledger)   |
| outreach suppression     | ``OUTREACH#<entry id>``  | ``SUPPRESSED#<key>``       |
| meter watch              | ``WATCH#<entry id>``     | ``METER``                  |
| stored change (history)  | ``HISTORY#<entry id>``   | ``<sequence, 12 digits>``  |
| emitter failure marker   | ``EMITFAIL``             | ``<stream seq, 40 digits>``|
| targeted poll mark       | ``TARGETED#<ref id>``    | ``POLLED``                 |
| processed webhook        | ``WEBHOOK#<event id>``   | ``EVENT``                  |
| remembered meter         | ``REFMETER#<ref id>``    | ``<meter id>``             |

Every value Leap controls that goes into a key is an entry id (``<prefix><entry id>``); the key limits
and the longest entry id they allow are below (:data:`MAX_ENTRY_ID_BYTES`), next to the prefixes. The
webhook items are the exceptions, each bounded by its own rule: a webhook event id is a UUID, and a
remembered meter's Reference ID one the Meters search takes (at most 256 characters).

Only connection snapshots reach the emitter (the stream's filter matches ``pk`` prefix ``CONN#``).
The sparse GSI ``due-index`` (``watch_due_bucket``, ``due_at``) lists "due work" in time order: an
item carries ``watch_due_bucket`` only while it waits for its ``due_at``, and finishing the work
removes the attribute (so the item leaves the index). Each kind of work has a bucket, sharded like the
funnel: ``<bucket>#<shard>`` (:func:`due_bucket`, the shard a stable hash of the entry id, 0 to
``DUE_SHARDS - 1``), so a million open items spread over ten index partitions instead of one. Open
meter watches use ``METER_WATCH#<shard>`` (:data:`METER_WATCH_BUCKET`); outreach customers awaiting a
follow-up ``OUTREACH_FOLLOW_UP#<shard>`` (:data:`OUTREACH_FOLLOW_UP_BUCKET`, see docs/outreach.md). A
sweep reads every partition of its kind (:func:`due_partitions`) and merges them in ``due_at`` order
(``adapters/due_index.py``). Items written before the sharding hold the bare bucket: it is one more
partition the sweeps read, and it empties as they go (a swept item is rewritten sharded or leaves).

Two more sparse GSIs, both KEYS_ONLY (an index write only when a key attribute changes):
``ref-index`` (``ref_id``) finds an entry's snapshot (and its meter watch) by Reference ID, and
``funnel-index`` (``funnel_key`` = ``<connection_status>#<shard>``) lets the funnel be counted per
status without a scan (shards spread one status over several index partitions).

History items (one per stored change, written by the poller before the snapshot, expiring after
``HISTORY_RETENTION_DAYS``) carry the previous and the new entry in one compressed pair, so each one
alone gives that change's events again (``events.diff.change_events(previous, new, sequence)``).
They carry no ``ref_id`` attribute (that would put every change in ``ref-index``).
Emitter failure markers name the (entry id, sequence) of a stream record the emitter failed on; the
emitter deletes a marker once that record is published, so ``leap-tracker replay-failures`` finds
what an on-failure message's sequence-number range still misses after the stream dropped it.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from decimal import Decimal
from typing import Any

PK = "pk"
SK = "sk"
TTL_ATTRIBUTE = "expires_at"
ITEM_TYPE = "item_type"

CONNECTION_PREFIX = "CONN#"
CONNECTION_SK = "STATE"
QUARANTINE_PREFIX = "QUARANTINE#"
POLLER_PK = "POLLER"
CHECKPOINT_SK = "CHECKPOINT"
LEASE_SK = "LEASE"
PASS_WAITING_SK = "PASS_WAITING"  # a pass waiting for a ref_id run's lease: later ref_id runs stand back
OUTREACH_PREFIX = "OUTREACH#"
OUTREACH_STATE_SK = "STATE"  # also holds the customer's ledger (leap_tracker.outreach.ledger)
OUTREACH_SUPPRESSED_PREFIX = "SUPPRESSED#"
WATCH_PREFIX = "WATCH#"
WATCH_SK = "METER"
HISTORY_PREFIX = "HISTORY#"
EMITTER_FAILURE_PK = "EMITFAIL"

# DynamoDB's key limits, in bytes of UTF-8 (the table's keys and a GSI's key attributes alike): a
# partition key value holds at most 2048, a sort key value at most 1024. A longer value makes the
# whole BatchWriteItem fail with a ValidationException, so ids are checked before any write.
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
# Every prefix put in front of an entry id in a partition key. The longest sets the limit on entry ids:
# an id that fits here fits every key built from it (tests/unit/test_table_keys.py proves it).
ENTRY_ID_KEY_PREFIXES = (CONNECTION_PREFIX, OUTREACH_PREFIX, WATCH_PREFIX, QUARANTINE_PREFIX, HISTORY_PREFIX)
MAX_ENTRY_ID_BYTES = MAX_PARTITION_KEY_BYTES - max(len(prefix.encode()) for prefix in ENTRY_ID_KEY_PREFIXES)

DUE_INDEX = "due-index"
DUE_BUCKET_ATTRIBUTE = "watch_due_bucket"
DUE_AT_ATTRIBUTE = "due_at"
METER_WATCH_BUCKET = "METER_WATCH"  # open meter watches (leap_tracker.meters)
OUTREACH_FOLLOW_UP_BUCKET = "OUTREACH_FOLLOW_UP"  # customers due a follow-up look (leap_tracker.outreach)
# due-index partitions per bucket (due_bucket). Raising it is safe (sweeps read every shard below it);
# lowering it would strand the items in the shards above.
DUE_SHARDS = 10

REF_INDEX = "ref-index"  # KEYS_ONLY on CONN_REF_ID (snapshots and meter watches carry it)
FUNNEL_INDEX = "funnel-index"  # KEYS_ONLY on CONN_FUNNEL_KEY (snapshots only)
FUNNEL_SHARDS = 10
FUNNEL_OTHER_STATUS = "OTHER"  # a connection_status this code does not know is counted here

HISTORY_SEQUENCE_DIGITS = 12
STREAM_SEQUENCE_DIGITS = 40  # DynamoDB Streams sequence numbers are 21 to 40 digits


def utf8_length(text: str) -> int | None:
    """How many bytes DynamoDB counts for ``text``; None when it is not valid Unicode text (a lone
    surrogate, which JSON can carry as an escape but no UTF-8 encoder can write)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def entry_id_fits(entry_id: str) -> bool:
    """Whether every key built from this entry id (any prefix above) is within DynamoDB's limits."""
    size = utf8_length(entry_id)
    return size is not None and 0 < size <= MAX_ENTRY_ID_BYTES


def connection_key(entry_id: str) -> dict[str, str]:
    return {PK: CONNECTION_PREFIX + entry_id, SK: CONNECTION_SK}


def entry_id_from_pk(pk: str) -> str:
    if not pk.startswith(CONNECTION_PREFIX):
        raise ValueError(f"not a connection key: {pk!r}")
    return pk[len(CONNECTION_PREFIX) :]


def outreach_state_key(entry_id: str) -> dict[str, str]:
    return {PK: OUTREACH_PREFIX + entry_id, SK: OUTREACH_STATE_SK}


def outreach_suppressed_key(entry_id: str, suppression_key: str) -> dict[str, str]:
    return {PK: OUTREACH_PREFIX + entry_id, SK: OUTREACH_SUPPRESSED_PREFIX + suppression_key}


def entry_id_from_outreach_pk(pk: str) -> str:
    if not pk.startswith(OUTREACH_PREFIX):
        raise ValueError(f"not an outreach key: {pk!r}")
    return pk[len(OUTREACH_PREFIX) :]


def watch_key(entry_id: str) -> dict[str, str]:
    return {PK: WATCH_PREFIX + entry_id, SK: WATCH_SK}


def history_key(entry_id: str, sequence: int) -> dict[str, str]:
    """Sort keys in sequence order: zero-padded, so a Query returns an entry's changes in order."""
    return {PK: HISTORY_PREFIX + entry_id, SK: f"{sequence:0{HISTORY_SEQUENCE_DIGITS}d}"}


def entry_id_from_history_pk(pk: str) -> str:
    if not pk.startswith(HISTORY_PREFIX):
        raise ValueError(f"not a history key: {pk!r}")
    return pk[len(HISTORY_PREFIX) :]


def stream_sequence_sort_key(stream_sequence_number: str) -> str:
    """A stream sequence number as a sort key that orders like the number (zero-padded)."""
    if not stream_sequence_number.isdigit() or len(stream_sequence_number) > STREAM_SEQUENCE_DIGITS:
        raise ValueError("a stream sequence number is 1 to 40 decimal digits")
    return stream_sequence_number.zfill(STREAM_SEQUENCE_DIGITS)


def emitter_failure_key(stream_sequence_number: str) -> dict[str, str]:
    return {PK: EMITTER_FAILURE_PK, SK: stream_sequence_sort_key(stream_sequence_number)}


def entry_shard(entry_id: str, shards: int) -> int:
    """A stable shard of an entry id, 0 to ``shards - 1`` (CRC-32: the same on every run and host)."""
    return zlib.crc32(entry_id.encode("utf-8", "surrogatepass")) % shards


def funnel_key(connection_status: str, entry_id: str, known_statuses: frozenset[str]) -> str:
    """The funnel-index key of a snapshot: its status (or OTHER) and a stable shard of its entry id."""
    status = connection_status if connection_status in known_statuses else FUNNEL_OTHER_STATUS
    return funnel_partition(status, entry_shard(entry_id, FUNNEL_SHARDS))


def funnel_partition(status: str, shard: int) -> str:
    """One funnel-index partition: what a count queries (every status, OTHER included, x every shard)."""
    return f"{status}#{shard}"


def due_bucket(bucket: str, entry_id: str) -> str:
    """The due-index key (``watch_due_bucket``) of an item of this bucket: ``<bucket>#<shard>``."""
    return f"{bucket}#{entry_shard(entry_id, DUE_SHARDS)}"


def due_partitions(bucket: str) -> tuple[str, ...]:
    """Every due-index partition a sweep of this bucket reads: its shards, then the bare bucket that
    items written before the sharding still hold (one empty Query once they are gone)."""
    return (*(f"{bucket}#{shard}" for shard in range(DUE_SHARDS)), bucket)


def in_due_bucket(value: object, bucket: str) -> bool:
    """Whether a stored ``watch_due_bucket`` puts the item in this bucket (sharded or not)."""
    return value in due_partitions(bucket)


# Attributes of a connection snapshot item (written by the poller, read from the stream by the emitter).
CONNECTION_ITEM_TYPE = "connection"
CONN_ENTRY = "entry"  # B: the Leap entry, zlib-compressed canonical JSON (connect_model.encode_stored_entry)
CONN_CONTENT_HASH = "content_hash"
CONN_SEQUENCE = "sequence"  # N: 1 for the first write, +1 for every stored change
CONN_LAST_INTERACTION = "last_interaction"  # top-level last_interaction_date_time_utc, for regress checks
CONN_REF_ID = "ref_id"  # the ref-index key
CONN_WRITTEN_AT = "written_at"
CONN_STATUS = "connection_status"  # plain copies for people and the console (the entry is compressed)
CONN_TRANSMISSION_REGION = "transmission_region"  # absent when Leap sends none
CONN_FUNNEL_KEY = "funnel_key"  # the funnel-index key (funnel_key())

# Attributes of a history item (one stored change; see the module docstring).
HISTORY_ITEM_TYPE = "connection_change"
HISTORY_CHANGE = "change"  # B: encode_stored_change(previous canonical JSON or None, canonical JSON)
HISTORY_SEQUENCE = "sequence"  # N: the change's connection sequence
HISTORY_WRITTEN_AT = "written_at"  # when the poller stored it (RFC 3339, UTC)
HISTORY_STATUS = "connection_status"

# Attributes of an emitter failure marker.
FAILURE_ITEM_TYPE = "emitter_failure"
FAILURE_ENTRY_ID = "entry_id"
FAILURE_SEQUENCE = "sequence"  # N: the connection sequence of the record's new image
FAILURE_STREAM_SEQUENCE = "stream_sequence_number"  # as the stream wrote it (unpadded)
FAILURE_REASON = "reason"  # why it failed, without the entry id
FAILURE_FAILED_AT = "failed_at"

# Targeted polls (leap_tracker.webhooks.targeted): one item per Reference ID a Connect-session webhook
# asked to poll, holding when the last targeted poll of it started; a poll request is done once a poll
# started late enough for it. The key holds the Reference ID (at most MAX_REF_ID_BYTES, the entry id's
# limit: TARGETED# is shorter than the longest entry id prefix, tests/unit/test_table_keys.py).
TARGETED_PREFIX = "TARGETED#"
TARGETED_SK = "POLLED"
TARGETED_ITEM_TYPE = "targeted_poll"
TARGETED_POLLED_AT = "polled_at"  # S: RFC 3339 UTC to the microsecond, fixed width: compared as text
TARGETED_POLLED_BY = "polled_by"  # the run id of that poll, for people


def targeted_poll_key(ref_id: str) -> dict[str, str]:
    return {PK: TARGETED_PREFIX + ref_id, SK: TARGETED_SK}


# Attributes of a meter watch item (written by meter_watch and meter_sweep; see docs/meters.md).
# While OPEN it also carries DUE_BUCKET_ATTRIBUTE = due_bucket(METER_WATCH_BUCKET, ...) and DUE_AT_ATTRIBUTE.
WATCH_ITEM_TYPE = "meter_watch"
WATCH_ENTRY_ID = "entry_id"
WATCH_REF_ID = "ref_id"
WATCH_TRANSMISSION_REGION = "transmission_region"
WATCH_COMPLETED_AT = "completed_at"  # the completion's last_interaction_date_time_utc
WATCH_SEQUENCE = "sequence"  # N: the connection sequence of the completion this watch follows
WATCH_OPENED_AT = "opened_at"
WATCH_CHECKS = "checks"  # N: Meters API checks so far; conditional writes compare it
WATCH_LAST_CHECKED_AT = "last_checked_at"
WATCH_OVERDUE_PUBLISHED = "overdue_published"  # BOOL
WATCH_STATUS = "status"  # OPEN | CLOSED
WATCH_CLOSED_REASON = "closed_reason"  # appeared | expired | connection_gone
WATCH_CLOSED_AT = "closed_at"
WATCH_METER_IDS = "meter_ids"  # L of S: the meters that closed it (ids only: no personal data)


# --- Leap's webhooks, as the processor keeps them (leap_tracker.webhooks.processing, docs/webhooks.md) ---
# A processed delivery: ``WEBHOOK#<webhook_event_id>`` / ``EVENT`` (Leap's id is a UUID, checked by the
# receiver), so a duplicate changes nothing; expires (TTL) after WEBHOOK_RETENTION_DAYS. An unknown
# type's body, and an enrollment event's, are kept in it (compressed, as a snapshot's entry).
WEBHOOK_PREFIX = "WEBHOOK#"
WEBHOOK_SK = "EVENT"
WEBHOOK_ITEM_TYPE = "webhook_event"
WEBHOOK_EVENT_TYPE = "event_type"
WEBHOOK_RECEIVED_AT = "received_at"  # when the receiver took it (RFC 3339, UTC)
WEBHOOK_PROCESSED_AT = "processed_at"
WEBHOOK_OUTCOME = "outcome"  # what processing did (webhooks.processing.Result)
WEBHOOK_BODY = "body"  # B: zlib-compressed JSON as received (unknown types and enrollment events only)
# A meter a meter.created named and the Meters API confirmed, by Reference ID:
# ``REFMETER#<ref_id>`` / ``<meter_id>``, so the watch a later completion opens finds it with one Query
# and opens satisfied (leap_tracker.meters.opening). Only a Reference ID the Meters search takes
# (wire.METERS_REFERENCE_ID_PATTERN: at most 256 characters, 1024 bytes) goes into this key. No
# ``ref_id`` attribute: these items stay out of ref-index. Expires with WEBHOOK_RETENTION_DAYS.
REMEMBERED_METER_PREFIX = "REFMETER#"
REMEMBERED_METER_ITEM_TYPE = "remembered_meter"
REMEMBERED_METER_ID = "meter_id"
REMEMBERED_UTILITY_NAME = "utility_name"
REMEMBERED_CREATED_AT = "created_at"  # the meter's audit.created_at, when Leap gave one
REMEMBERED_AT = "remembered_at"


def webhook_key(webhook_event_id: str) -> dict[str, str]:
    return {PK: WEBHOOK_PREFIX + webhook_event_id, SK: WEBHOOK_SK}


def remembered_meters_pk(ref_id: str) -> str:
    return REMEMBERED_METER_PREFIX + ref_id


def remembered_meter_key(ref_id: str, meter_id: str) -> dict[str, str]:
    return {PK: remembered_meters_pk(ref_id), SK: meter_id}


# --- the stored form of a Leap entry (the snapshot item's CONN_ENTRY attribute) ---------------


class UnreadableStoredEntry(ValueError):
    """A snapshot item's entry attribute is not an entry this code wrote."""


def encode_stored_entry(canonical: str) -> bytes:
    """The stored form of an entry: zlib-compressed canonical JSON, a DynamoDB binary attribute.

    Measured (bench/poller.py): as plain text, entries with two or more utilities pass 1 KB and cost
    2 write units; compressed, every simulated entry fits one, so write units equal changed entries.
    """
    return zlib.compress(canonical.encode(), STORED_ENTRY_ZLIB_LEVEL)


# Measured (bench/poller.py prints the table): on ~750-byte entries every level costs about the same
# (~15 us, 4x json.loads: the fixed cost of a deflate stream, not the level) and 6 is among the smallest;
# level 1 saves ~1 us for ~1% more bytes. Decoding does not depend on the level.
STORED_ENTRY_ZLIB_LEVEL = 6


def decode_stored_entry(value: Any) -> dict[str, Any]:
    """The entry back from its stored form, in any shape a binary attribute reaches code in:
    bytes (boto3 client), boto3's ``Binary`` (resource/TypeDeserializer) or base64 text (the JSON of a
    Lambda stream event, as Powertools' data class hands it over)."""
    entry = _decompressed_json(value, "stored entry")
    if not isinstance(entry, dict):
        raise UnreadableStoredEntry("stored entry is not a JSON object")
    return entry


def whole_number(value: Any) -> int | None:
    """A stored whole number from 1 (a DynamoDB number, deserialised, or a zero-padded sort key such
    as a history item's), else None: items are read tolerantly where a damaged one must not stop a
    command."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        return None
    try:
        number = Decimal(value)
    except ArithmeticError:  # not a number at all
        return None
    if not number.is_finite() or number != number.to_integral_value() or number < 1:
        return None
    return int(number)


def encode_stored_change(previous_canonical: str | None, canonical: str) -> bytes:
    """A history item's change: the previous and the new entry as one compressed JSON pair. The two
    are mostly the same text, so zlib stores the second almost for free (one write unit, as a snapshot)."""
    pair = "[" + (previous_canonical if previous_canonical is not None else "null") + "," + canonical + "]"
    return zlib.compress(pair.encode(), 6)


def decode_stored_change(value: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(previous entry or None, entry) back from a history item's change, in any binary shape."""
    pair = _decompressed_json(value, "stored change")
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], dict)):
        raise UnreadableStoredEntry("stored change is not a [previous, entry] pair")
    if pair[0] is not None and not isinstance(pair[0], dict):
        raise UnreadableStoredEntry("stored change's previous entry is not a JSON object")
    return pair[0], pair[1]


def encode_stored_body(body: str) -> bytes:
    """A kept webhook body (``WEBHOOK_BODY``): the JSON text as received, compressed as an entry is."""
    return zlib.compress(body.encode("utf-8"), 6)


def decode_stored_body(value: Any) -> str:
    """A kept webhook body back as the text received, from any shape a binary attribute reaches code in."""
    what = "stored webhook body"
    try:
        return _decompressed(value, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableStoredEntry(f"{what} cannot be read: {exc}") from exc


def _decompressed_json(value: Any, what: str) -> Any:
    """The JSON a binary attribute holds compressed, in any shape it reaches code in."""
    raw = _decompressed(value, what)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UnreadableStoredEntry(f"{what} cannot be read: {exc}") from exc


def _decompressed(value: Any, what: str) -> bytes:
    """The bytes a binary attribute holds compressed: boto3's Binary, raw bytes, or base64 text."""
    raw = getattr(value, "value", value)
    try:
        if isinstance(raw, str):
            raw = base64.b64decode(raw, validate=True)
        if not isinstance(raw, bytes | bytearray):
            raise TypeError(f"a binary attribute was expected, got {type(raw).__name__}")
        return zlib.decompress(raw)
    except (TypeError, ValueError, binascii.Error, zlib.error) as exc:
        raise UnreadableStoredEntry(f"{what} cannot be read: {exc}") from exc
