"""Emitter failure markers: which entry changes a stream batch failed to publish, kept in the table.

Lambda's on-failure message for a stream batch names stream coordinates only (shard, first and last
sequence number), and the stream drops its records after 24 hours: past that, nobody could tell which
entry changes never went out. So whenever the emitter reports records failed (the record that failed
and every later one of the batch, ``emitter.processor``), it writes one marker per record
(``table.emitter_failure_key(<stream sequence number>)``: the entry id, the connection sequence, why),
and when it publishes records it deletes their markers: one consistent Query of the published records'
sequence-number range (nothing found is the usual, cheap case), then deletes for exactly those records,
never for a marker of a record outside the batch (another shard's sequence numbers interleave). A
record retried until it publishes leaves no marker; one that ends in the on-failure destination keeps
its marker from its last attempt, and ``leap-tracker replay-failures`` rebuilds its events from the
stored history. Markers expire with the history (``HISTORY_RETENTION_DAYS``): without the history item
a marker could not be replayed anyway.

A failure to write, read or delete markers raises, and the whole invocation fails: swallowed, a missing
marker would hide a change that never went out, and a stale one would make a replay publish a change
again. The price is chosen knowingly: the stream then retries the whole batch, so records this
invocation DID publish are published again. Their events have deterministic ids (the same change, the
same id), so that is a duplicate a consumer drops by id, and a FIFO topic drops itself (the retry comes
within its 5-minute deduplication window); never a lost or reordered change. The alternative, a
partial response that reports only the unpublished records and logs the marker error, would avoid the
duplicates but leave the failure unseen (no function error, no alarm) at the one moment a marker
matters: the batch's last attempt. Markers are written before the published ones are looked up, so a
failed lookup costs no marker of a record that did not go out.

Pure except for the :class:`FailureMarkerStore` it is given (``adapters.failure_markers`` in Lambda).
Records arrive in Lambda's JSON form (AttributeValues): a failed record is often a malformed one, so
everything is read tolerantly, and a marker holds what could be read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from leap_tracker import table
from leap_tracker.privacy import excerpt

REASON_CHARACTERS = 200  # a reason's excerpt: the exception and the first event ids it names
ENTRY_ID_PLACEHOLDER = "<entry id>"  # what a reason shows where its text held the entry id


@dataclass(frozen=True, slots=True)
class FailureMarker:
    """One stream record the emitter reported failed (see the module docstring)."""

    stream_sequence: str  # the record's dynamodb.SequenceNumber, as the stream wrote it
    entry_id: str | None  # None: the record's key is not a connection key
    sequence: int | None  # the new image's connection sequence; None when it cannot be read
    reason: str  # never the entry id
    failed_at: datetime
    expires_at: int  # epoch seconds: the table's TTL attribute

    @property
    def sort_key(self) -> str:
        return table.stream_sequence_sort_key(self.stream_sequence)


class FailureMarkerStore(Protocol):
    def find(self, low: str, high: str) -> list[str]:
        """The sort keys of the markers from ``low`` to ``high`` (padded, both included)."""
        ...

    def write(self, markers: Sequence[FailureMarker]) -> None:
        """Put every marker (replacing an earlier one of the same record); raise if one is not written."""
        ...

    def delete(self, sort_keys: Sequence[str]) -> None:
        """Delete the markers under these sort keys; raise if one is not deleted."""
        ...


@dataclass(slots=True)
class MarkerCounts:
    """What :func:`settle_markers` did, counted as it goes (what was done before an error shows too)."""

    written: int = 0
    deleted: int = 0


def failure_markers(
    failed: Sequence[tuple[Mapping[str, Any], BaseException]], failed_at: datetime, retention_days: int
) -> list[FailureMarker]:
    """One marker per failed record (Lambda's JSON form, with why it failed), in order."""
    expires_at = int((failed_at + timedelta(days=retention_days)).timestamp())
    markers = []
    for record, error in failed:
        change = _dynamodb(record)
        entry_id = _entry_id(change)
        markers.append(
            FailureMarker(
                stream_sequence=stream_sequence(record),
                entry_id=entry_id,
                sequence=_image_sequence(change.get("NewImage")),
                reason=failure_reason(error, entry_id),
                failed_at=failed_at,
                expires_at=expires_at,
            )
        )
    return markers


def failure_reason(error: BaseException, entry_id: str | None) -> str:
    """The error as a marker keeps it: its type and message, without the entry id, cut short."""
    text = f"{type(error).__name__}: {error}"
    if entry_id:
        text = text.replace(entry_id, ENTRY_ID_PLACEHOLDER)
    # Valid UTF-8 whatever the message held (a lone surrogate could never be written to the table).
    return excerpt(text, REASON_CHARACTERS).encode("utf-8", "replace").decode("utf-8")


def stream_sequence(record: Mapping[str, Any]) -> str:
    """A record's stream sequence number; ValueError when it has none a marker could be keyed by
    (Lambda always sends one: this is a record no stream wrote)."""
    number = _dynamodb(record).get("SequenceNumber")
    if not isinstance(number, str):
        raise ValueError("a stream record without a SequenceNumber")
    table.stream_sequence_sort_key(number)  # digits only, and not too many
    return number


def published_sort_keys(published: Sequence[Mapping[str, Any]]) -> list[str]:
    """The marker sort keys of the records published now, in order."""
    return [table.stream_sequence_sort_key(stream_sequence(record)) for record in published]


def markers_to_delete(published: Sequence[str], found: Sequence[str]) -> list[str]:
    """Of the markers found in the published records' range, those of a record published now."""
    return sorted(set(found) & set(published))


def settle_markers(
    store: FailureMarkerStore,
    published: Sequence[Mapping[str, Any]],
    failed: Sequence[tuple[Mapping[str, Any], BaseException]],
    now: datetime,
    retention_days: int,
    counts: MarkerCounts | None = None,
) -> MarkerCounts:
    """After a publishing pass: write the failed records' markers, then delete the published ones'.
    A store error propagates; ``counts`` (updated in place) then holds what was done before it."""
    counts = counts if counts is not None else MarkerCounts()
    markers = failure_markers(failed, now, retention_days)
    if markers:
        store.write(markers)
        counts.written += len(markers)
    keys = published_sort_keys(published)
    doomed = markers_to_delete(keys, store.find(min(keys), max(keys))) if keys else []
    if doomed:
        store.delete(doomed)
        counts.deleted += len(doomed)
    return counts


def _dynamodb(record: Mapping[str, Any]) -> Mapping[str, Any]:
    change = record.get("dynamodb")
    return change if isinstance(change, Mapping) else {}


def _string(attribute: Any) -> str | None:
    value = attribute.get("S") if isinstance(attribute, Mapping) else None
    return value if isinstance(value, str) else None


def _entry_id(change: Mapping[str, Any]) -> str | None:
    """The entry id of the record's key (its new image's, if the key is missing); None when neither
    is a connection key, or the id could not be written as text."""
    for source in (change.get("Keys"), change.get("NewImage")):
        pk = _string(source.get(table.PK)) if isinstance(source, Mapping) else None
        if pk is None:
            continue
        try:
            entry_id = table.entry_id_from_pk(pk)
        except ValueError:
            return None
        return entry_id if entry_id and table.utf8_length(entry_id) is not None else None
    return None


def _image_sequence(image: Any) -> int | None:
    """The image's connection sequence, a whole number from 1, or None (absent or malformed)."""
    attribute = image.get(table.CONN_SEQUENCE) if isinstance(image, Mapping) else None
    text = attribute.get("N") if isinstance(attribute, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        number = Decimal(text)
        whole = int(number)
    except (InvalidOperation, ValueError, OverflowError):  # not a number, NaN, Infinity
        return None
    return whole if number == whole and whole >= 1 else None
