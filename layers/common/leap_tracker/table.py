"""The table's key design, in one place (the README explains it).

One DynamoDB table, partition key ``pk`` and sort key ``sk`` (both strings):

| item                     | pk                       | sk                         |
|--------------------------|--------------------------|----------------------------|
| connection snapshot      | ``CONN#<entry id>``      | ``STATE``                  |
| quarantined entry        | ``QUARANTINE#<key>``     | ``<received at>``          |
| poller checkpoint        | ``POLLER``               | ``CHECKPOINT``             |
| poller lease             | ``POLLER``               | ``LEASE``                  |
| outreach customer state  | ``OUTREACH#<entry id>``  | ``STATE`` (+ its ledger)   |
| outreach suppression     | ``OUTREACH#<entry id>``  | ``SUPPRESSED#<key>``       |
| meter watch              | ``WATCH#<entry id>``     | ``METER``                  |

Every value Leap controls that goes into a key is an entry id (``<prefix><entry id>``); the key limits
and the longest entry id they allow are below (:data:`MAX_ENTRY_ID_BYTES`), next to the prefixes.

Only connection snapshots reach the emitter (the stream's filter matches ``pk`` prefix ``CONN#``).
The sparse GSI ``due-index`` (``watch_due_bucket``, ``due_at``) lists "due work" in time order, one
bucket (partition) per kind of work: an item carries ``watch_due_bucket`` only while it waits for its
``due_at``, and finishing the work removes the attribute (so the item leaves the index). Open meter
watches use bucket ``METER_WATCH`` (:data:`METER_WATCH_BUCKET`); outreach customers awaiting a
follow-up use ``OUTREACH_FOLLOW_UP`` (:data:`OUTREACH_FOLLOW_UP_BUCKET`, see docs/outreach.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
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
OUTREACH_PREFIX = "OUTREACH#"
OUTREACH_STATE_SK = "STATE"  # also holds the customer's ledger (leap_tracker.outreach.ledger)
OUTREACH_SUPPRESSED_PREFIX = "SUPPRESSED#"
WATCH_PREFIX = "WATCH#"
WATCH_SK = "METER"

# DynamoDB's key limits, in bytes of UTF-8 (the table's keys and a GSI's key attributes alike): a
# partition key value holds at most 2048, a sort key value at most 1024. A longer value makes the
# whole BatchWriteItem fail with a ValidationException, so ids are checked before any write.
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
# Every prefix put in front of an entry id in a partition key. The longest sets the limit on entry ids:
# an id that fits here fits every key built from it (tests/unit/test_table_keys.py proves it).
ENTRY_ID_KEY_PREFIXES = (CONNECTION_PREFIX, OUTREACH_PREFIX, WATCH_PREFIX, QUARANTINE_PREFIX)
MAX_ENTRY_ID_BYTES = MAX_PARTITION_KEY_BYTES - max(len(prefix.encode()) for prefix in ENTRY_ID_KEY_PREFIXES)

DUE_INDEX = "due-index"
DUE_BUCKET_ATTRIBUTE = "watch_due_bucket"
DUE_AT_ATTRIBUTE = "due_at"
METER_WATCH_BUCKET = "METER_WATCH"  # open meter watches (leap_tracker.meters)
OUTREACH_FOLLOW_UP_BUCKET = "OUTREACH_FOLLOW_UP"  # customers due a follow-up look (leap_tracker.outreach)


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


# Attributes of a connection snapshot item (written by the poller, read from the stream by the emitter).
CONNECTION_ITEM_TYPE = "connection"
CONN_ENTRY = "entry"  # B: the Leap entry, zlib-compressed canonical JSON (connect_model.encode_stored_entry)
CONN_CONTENT_HASH = "content_hash"
CONN_SEQUENCE = "sequence"  # N: 1 for the first write, +1 for every stored change
CONN_LAST_INTERACTION = "last_interaction"  # top-level last_interaction_date_time_utc, for regress checks
CONN_REF_ID = "ref_id"
CONN_WRITTEN_AT = "written_at"

# Attributes of a meter watch item (written by meter_watch and meter_sweep; see docs/meters.md).
# While OPEN it also carries DUE_BUCKET_ATTRIBUTE = METER_WATCH_BUCKET and DUE_AT_ATTRIBUTE.
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


# --- the stored form of a Leap entry (the snapshot item's CONN_ENTRY attribute) ---------------


class UnreadableStoredEntry(ValueError):
    """A snapshot item's entry attribute is not an entry this code wrote."""


def encode_stored_entry(canonical: str) -> bytes:
    """The stored form of an entry: zlib-compressed canonical JSON, a DynamoDB binary attribute.

    Measured (bench/poller.py): as plain text, entries with two or more utilities pass 1 KB and cost
    2 write units; compressed, every simulated entry fits one, so write units equal changed entries.
    """
    return zlib.compress(canonical.encode(), 6)


def decode_stored_entry(value: Any) -> dict[str, Any]:
    """The entry back from its stored form, in any shape a binary attribute reaches code in:
    bytes (boto3 client), boto3's ``Binary`` (resource/TypeDeserializer) or base64 text (the JSON of a
    Lambda stream event, as Powertools' data class hands it over)."""
    raw = getattr(value, "value", value)
    try:
        if isinstance(raw, str):
            raw = base64.b64decode(raw, validate=True)
        if not isinstance(raw, bytes | bytearray):
            raise TypeError(f"a binary attribute was expected, got {type(raw).__name__}")
        entry = json.loads(zlib.decompress(raw))
    except (TypeError, ValueError, binascii.Error, zlib.error) as exc:
        raise UnreadableStoredEntry(f"stored entry cannot be read: {exc}") from exc
    if not isinstance(entry, dict):
        raise UnreadableStoredEntry("stored entry is not a JSON object")
    return entry
