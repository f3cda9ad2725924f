"""The table's key design, in one place (the README explains it).

One DynamoDB table, partition key ``pk`` and sort key ``sk`` (both strings):

| item                     | pk                       | sk                         |
|--------------------------|--------------------------|----------------------------|
| connection snapshot      | ``CONN#<entry id>``      | ``STATE``                  |
| quarantined entry        | ``QUARANTINE#<key>``     | ``<received at>``          |
| poller checkpoint        | ``POLLER``               | ``CHECKPOINT``             |
| poller lease             | ``POLLER``               | ``LEASE``                  |
| outreach ledger entry    | ``OUTREACH#<entry id>``  | ``SENT#<dedupe key>``      |
| outreach customer state  | ``OUTREACH#<entry id>``  | ``STATE``                  |
| meter watch              | ``WATCH#<entry id>``     | ``METER``                  |

Only connection snapshots reach the emitter (the stream's filter matches ``pk`` prefix ``CONN#``).
Open meter watches carry ``watch_due_bucket`` so the sparse GSI ``due-index`` (``watch_due_bucket``,
``due_at``) lists the due ones in order; closing a watch removes the attribute.
"""

from __future__ import annotations

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
OUTREACH_SENT_PREFIX = "SENT#"
OUTREACH_STATE_SK = "STATE"
WATCH_PREFIX = "WATCH#"
WATCH_SK = "METER"

DUE_INDEX = "due-index"
DUE_BUCKET_ATTRIBUTE = "watch_due_bucket"
DUE_AT_ATTRIBUTE = "due_at"
OPEN_WATCH_BUCKET = "OPEN"


def connection_key(entry_id: str) -> dict[str, str]:
    return {PK: CONNECTION_PREFIX + entry_id, SK: CONNECTION_SK}


def entry_id_from_pk(pk: str) -> str:
    if not pk.startswith(CONNECTION_PREFIX):
        raise ValueError(f"not a connection key: {pk!r}")
    return pk[len(CONNECTION_PREFIX) :]


def outreach_state_key(entry_id: str) -> dict[str, str]:
    return {PK: OUTREACH_PREFIX + entry_id, SK: OUTREACH_STATE_SK}


def outreach_sent_key(entry_id: str, dedupe_key: str) -> dict[str, str]:
    return {PK: OUTREACH_PREFIX + entry_id, SK: OUTREACH_SENT_PREFIX + dedupe_key}


def watch_key(entry_id: str) -> dict[str, str]:
    return {PK: WATCH_PREFIX + entry_id, SK: WATCH_SK}


# Attributes of a connection snapshot item (written by the poller, read from the stream by the emitter).
CONNECTION_ITEM_TYPE = "connection"
CONN_ENTRY = "entry"  # the Leap entry as canonical JSON text (compact: keeps an item near 1 WCU)
CONN_CONTENT_HASH = "content_hash"
CONN_SEQUENCE = "sequence"  # N: 1 for the first write, +1 for every stored change
CONN_LAST_INTERACTION = "last_interaction"  # top-level last_interaction_date_time_utc, for regress checks
CONN_REF_ID = "ref_id"
CONN_WRITTEN_AT = "written_at"
