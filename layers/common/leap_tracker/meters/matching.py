"""One Meters v2 search serves up to 100 watches: what to ask, and whose meters came back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import identifier_problem
from leap_tracker.meters.model import MeterSummary, MeterWatch
from leap_tracker.timeutil import parse_instant

# A meter id or utility name from a Meters answer, in bytes of UTF-8: Leap's are short (ids are UUIDs);
# a watch item keeps the ids of the meters that closed it and must stay far below DynamoDB's 400 KB.
MAX_METER_FIELD_BYTES = 256


@dataclass(frozen=True, slots=True)
class SearchRequest:
    reference_ids: list[str]  # unique, at most wire.METERS_MAX_REFERENCE_IDS
    created_after: datetime


@dataclass(slots=True)
class MatchResult:
    meters_by_entry: dict[str, list[MeterSummary]] = field(default_factory=dict)
    malformed: int = 0  # meters without a usable meter_id: skipped, counted


@dataclass(slots=True)
class ReferenceMeters:
    meters: list[MeterSummary] = field(default_factory=list)
    malformed: int = 0  # meters without a usable meter_id: skipped, counted


def searchable(ref_id: str) -> bool:
    """Whether the Meters search takes this Reference ID (Leap refuses the whole search otherwise)."""
    return wire.METERS_REFERENCE_ID_PATTERN.fullmatch(ref_id) is not None


def search_request(watches: Sequence[MeterWatch]) -> SearchRequest:
    """The one search for a batch of watches (the caller leaves out any not :func:`searchable`).

    The API takes a single created_after_date_time per call. The EARLIEST completion of the batch is
    the only value that cuts off none of its watches' meters; :func:`match_meters` then holds each
    watch to its own completion, so a watch's answer does not depend on who shared its batch.
    """
    if not watches:
        raise ValueError("a meters search needs at least one watch")
    reference_ids = list(dict.fromkeys(watch.ref_id for watch in watches))
    if len(reference_ids) > wire.METERS_MAX_REFERENCE_IDS:
        raise ValueError(
            f"{len(reference_ids)} Reference IDs; one search takes {wire.METERS_MAX_REFERENCE_IDS}"
        )
    return SearchRequest(reference_ids, min(watch.completed_at for watch in watches))


def match_meters(meters: Iterable[dict[str, Any]], watches: Sequence[MeterWatch]) -> MatchResult:
    """Each watch's meters: those naming its Reference ID, created at or after its completion.

    Leap links a meter to the Reference IDs of the completed authorizations behind it
    (``connection_references``); a meter may name several, and the same meter may come twice across
    pages. A meter without a creation time is kept (the search's created_after already applied).
    """
    watches_by_ref: dict[str, list[MeterWatch]] = defaultdict(list)
    for watch in watches:
        watches_by_ref[watch.ref_id].append(watch)
    result = MatchResult()
    seen: set[tuple[str, str]] = set()
    for meter in meters:
        summary = summarize(meter)
        if summary is None:
            result.malformed += 1
            continue
        for ref_id in _references(meter):
            for watch in watches_by_ref.get(ref_id, ()):
                if (watch.entry_id, summary.meter_id) in seen or not _created_since(summary, watch):
                    continue
                seen.add((watch.entry_id, summary.meter_id))
                result.meters_by_entry.setdefault(watch.entry_id, []).append(summary)
    return result


def meters_of_reference(meters: Iterable[dict[str, Any]], ref_id: str) -> ReferenceMeters:
    """The meters naming one Reference ID, whatever their creation time, each once: what the search
    behind a ``meter.created`` webhook confirms before any watch is looked at (:func:`since_completion`
    then holds them to a watch's completion, as :func:`match_meters` does)."""
    result = ReferenceMeters()
    seen: set[str] = set()
    for meter in meters:
        summary = summarize(meter)
        if summary is None:
            result.malformed += 1
        elif ref_id in _references(meter) and summary.meter_id not in seen:
            seen.add(summary.meter_id)
            result.meters.append(summary)
    return result


def since_completion(meters: Iterable[MeterSummary], watch: MeterWatch) -> list[MeterSummary]:
    """The meters a watch takes: created at or after its completion (or without a creation time),
    the rule :func:`match_meters` applies to a sweep's search."""
    return [meter for meter in meters if _created_since(meter, watch)]


def summarize(meter: dict[str, Any]) -> MeterSummary | None:
    """The non-personal part of a Meters v2 meter, or None when it has no usable meter_id.

    The meter id is stored in the watch item and published: one that is not a string, empty or over
    :data:`MAX_METER_FIELD_BYTES` makes the meter malformed (skipped, counted), never a table write
    that fails the sweep. A utility name of the wrong type or size is left out, the meter kept.
    """
    meter_id = meter.get(wire.METER_ID)
    if not _usable_text(meter_id):
        return None
    utility = meter.get(wire.METER_UTILITY)
    # Meters v2 names the utility's name field like the Connect API does (CommonUtility.utility_name).
    utility_name = utility.get(wire.UTILITY_NAME) if isinstance(utility, dict) else None
    return MeterSummary(
        meter_id=meter_id,
        utility_name=utility_name if _usable_text(utility_name) else None,
        created_at=_created_at(meter),
    )


def _usable_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and identifier_problem(value, MAX_METER_FIELD_BYTES) is None


def _references(meter: dict[str, Any]) -> list[str]:
    references = meter.get(wire.METER_CONNECTION_REFERENCES)
    if not isinstance(references, list):
        return []
    return [ref for ref in dict.fromkeys(references) if isinstance(ref, str)]


def _created_at(meter: dict[str, Any]) -> datetime | None:
    audit = meter.get(wire.METER_AUDIT)
    created = audit.get(wire.METER_AUDIT_CREATED_AT) if isinstance(audit, dict) else None
    if not isinstance(created, str):
        return None
    try:
        return parse_instant(created)
    except ValueError:
        return None


def _created_since(meter: MeterSummary, watch: MeterWatch) -> bool:
    return meter.created_at is None or meter.created_at >= watch.completed_at
