"""A Connect entry as the poller accepts it: validation, canonical JSON and content hash.

Validation mirrors the connection schema of the event catalog (``events.catalog.CONNECTION_SCHEMA``):
an entry that passes here yields events that pass the published JSON Schemas. It is strict about
shape (types, required fields, parseable instants) and open about values: an unknown status, error
code or agreement name is kept exactly as Leap sent it and reported in :attr:`ValidEntry.unknown_values`
so the caller can count it. Pure functions only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from leap_tracker import table
from leap_tracker.leap import wire

# What the table can hold (an item is at most 400 KB; key limits in leap_tracker.table). An entry past
# a limit is quarantined instead of failing the page's batch write. Limits are in bytes of UTF-8, what
# DynamoDB counts: 700 CJK characters are 2,100 bytes.
MAX_ENTRY_ID_BYTES = table.MAX_ENTRY_ID_BYTES  # the id is in every key: CONN#, OUTREACH#, WATCH#, ...
# Leap's entry id embeds the Reference ID (CAISO_<uuid>_<ref_id>): a longer one can never come with an
# id that fits a key. The same bound applies to a Reference ID asked for on demand (poller.parse_request).
MAX_REF_ID_BYTES = table.MAX_ENTRY_ID_BYTES
MAX_ENTRY_JSON_BYTES = 350_000
# Values Leap sends as short codes: connection and utility statuses, error codes, the transmission
# region, agreement names. They become SNS message attributes and log fields, so a longer one, or one
# SNS refuses in an attribute (a control character), quarantines the entry instead of failing later.
MAX_CODE_BYTES = 256
_REFUSED_BY_SNS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# RFC 3339 date-time (what the published schemas' "date-time" format means): an offset is required.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")


class MalformedEntry(ValueError):
    """The entry cannot be stored: ``reason`` says why, ``entry_id`` is its id when it had a usable one."""

    def __init__(self, reason: str, entry_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.entry_id = entry_id


@dataclass(frozen=True, slots=True)
class UnknownValue:
    """A value outside the enumerations known in ``wire`` (kept, counted, never a failure)."""

    field: str  # connection_status, utility_connections.status / .error_code, or agreements (a name)
    value: str


@dataclass(frozen=True, slots=True)
class KnownValues:
    """The enumeration values the code knows (``wire``); anything else is reported as unknown.

    Agreement statuses are not checked: beyond NOT_REQUIRED and the configured "done" values every
    status means "pending" by design, so a new one is expected, not news. New agreement NAMES are.
    """

    connection_statuses: frozenset[str] = wire.KNOWN_CONNECTION_STATUSES
    utility_statuses: frozenset[str] = wire.KNOWN_UTILITY_STATUSES
    error_codes: frozenset[str] = wire.KNOWN_ERROR_CODES
    agreement_names: frozenset[str] = frozenset(wire.KNOWN_AGREEMENTS)


DEFAULT_KNOWN_VALUES = KnownValues()


@dataclass(frozen=True, slots=True)
class ValidEntry:
    """A validated entry, ready to compare with its stored snapshot and to store."""

    entry_id: str
    ref_id: str
    last_interaction: datetime
    last_interaction_text: str  # as Leap wrote it (stored as is)
    canonical_json: str
    content_hash: str
    connection_status: str  # as Leap sent it (a known value or not)
    transmission_region: str | None  # a nullable code: None when Leap sent none
    unknown_values: tuple[UnknownValue, ...] = field(default=())


# One encoder for every entry: json.dumps would build a new one per call (it shows per page of 500).
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_json(entry: Mapping[str, Any]) -> str:
    """The one text form of an entry: sorted keys, no spaces, ASCII (stable across key order).

    Exactly ``json.dumps(entry, sort_keys=True, separators=(",", ":"))``, refusing NaN/Infinity.
    """
    return _CANONICAL_ENCODER.encode(entry)


def content_hash(canonical: str) -> str:
    """sha256 of the canonical JSON, hex."""
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_entry(raw: Any, known: KnownValues = DEFAULT_KNOWN_VALUES) -> ValidEntry:
    """Check one raw entry; raise :class:`MalformedEntry` with the first problem found."""
    if not isinstance(raw, dict):
        raise MalformedEntry(f"entry is {_type_name(raw)}, not an object")
    try:
        entry_id = _identifier(raw, wire.ENTRY_ID, MAX_ENTRY_ID_BYTES)
    except MalformedEntry as problem:  # no usable id: the quarantine key will be a hash
        raise MalformedEntry(problem.reason) from None
    try:
        return _validated(raw, known, entry_id)
    except MalformedEntry as problem:
        raise MalformedEntry(problem.reason, entry_id) from None


def _validated(raw: dict[str, Any], known: KnownValues, entry_id: str) -> ValidEntry:
    ref_id = _identifier(raw, wire.ENTRY_REF_ID, MAX_REF_ID_BYTES)
    status = _code(_required_text(raw, wire.ENTRY_CONNECTION_STATUS), wire.ENTRY_CONNECTION_STATUS)
    last_text = _required_text(raw, wire.ENTRY_LAST_INTERACTION)
    last_interaction = _instant(last_text, wire.ENTRY_LAST_INTERACTION)
    if wire.ENTRY_START in raw:
        _instant(_required_text(raw, wire.ENTRY_START), wire.ENTRY_START)
    region = _nullable_code(raw, wire.ENTRY_TRANSMISSION_REGION)

    unknown: list[UnknownValue] = []
    if status not in known.connection_statuses:
        unknown.append(UnknownValue(wire.ENTRY_CONNECTION_STATUS, status))
    if wire.ENTRY_UTILITY_CONNECTIONS in raw:
        _check_utilities(raw[wire.ENTRY_UTILITY_CONNECTIONS], known, unknown)
    if wire.ENTRY_AGREEMENTS in raw:
        _check_agreements(raw[wire.ENTRY_AGREEMENTS], known, unknown)

    try:
        text = canonical_json(raw)
    except ValueError as exc:  # NaN/Infinity: json.loads accepts them, JSON does not
        raise MalformedEntry(f"not representable as JSON ({exc})") from None
    if len(text) > MAX_ENTRY_JSON_BYTES:
        raise MalformedEntry(f"entry is {len(text)} bytes of JSON, over the {MAX_ENTRY_JSON_BYTES} limit")
    return ValidEntry(
        entry_id=entry_id,
        ref_id=ref_id,
        last_interaction=last_interaction,
        last_interaction_text=last_text,
        canonical_json=text,
        content_hash=content_hash(text),
        connection_status=status,
        transmission_region=region,
        unknown_values=tuple(unknown),
    )


def _check_utilities(value: Any, known: KnownValues, unknown: list[UnknownValue]) -> None:
    where = wire.ENTRY_UTILITY_CONNECTIONS
    if not isinstance(value, list):
        raise MalformedEntry(f"{where} is {_type_name(value)}, not a list")
    for position, utility in enumerate(value):
        if not isinstance(utility, dict):
            raise MalformedEntry(f"{where}[{position}] is {_type_name(utility)}, not an object")
        try:
            _check_utility(utility, known, unknown)
        except MalformedEntry as problem:  # the place is written only for a problem (it shows per entry)
            raise MalformedEntry(f"{where}[{position}].{problem.reason}") from None


_UTILITY_STATUS_FIELD = f"{wire.ENTRY_UTILITY_CONNECTIONS}.{wire.UTILITY_STATUS}"
_UTILITY_ERROR_CODE_FIELD = f"{wire.ENTRY_UTILITY_CONNECTIONS}.{wire.UTILITY_ERROR_CODE}"


def _check_utility(utility: dict[str, Any], known: KnownValues, unknown: list[UnknownValue]) -> None:
    """One utility connection; a problem's reason names the field, the caller adds where it is."""
    _required_text(utility, wire.UTILITY_NAME)
    status = _code(_required_text(utility, wire.UTILITY_STATUS), wire.UTILITY_STATUS)
    if status not in known.utility_statuses:
        unknown.append(UnknownValue(_UTILITY_STATUS_FIELD, status))
    error_code = _nullable_code(utility, wire.UTILITY_ERROR_CODE)
    if error_code and error_code not in known.error_codes:
        unknown.append(UnknownValue(_UTILITY_ERROR_CODE_FIELD, error_code))
    _nullable_text(utility, wire.UTILITY_AUTHORIZATION_UUID)
    required = utility.get(wire.UTILITY_IS_REQUIRED)
    if wire.UTILITY_IS_REQUIRED in utility and not isinstance(required, bool):
        raise MalformedEntry(f"{wire.UTILITY_IS_REQUIRED} is {_type_name(required)}, not a boolean")
    for name in (wire.UTILITY_START, wire.UTILITY_LAST_INTERACTION):
        text = _nullable_text(utility, name)
        if text is not None:
            _instant(text, name)


def _check_agreements(value: Any, known: KnownValues, unknown: list[UnknownValue]) -> None:
    where = wire.ENTRY_AGREEMENTS
    if not isinstance(value, dict):
        raise MalformedEntry(f"{where} is {_type_name(value)}, not an object")
    for position, (name, status) in enumerate(value.items()):
        problem = code_problem(name)
        if problem:  # the name is a key Leap chose: shown by position, not quoted
            raise MalformedEntry(f"{where}: the name of agreement {position} {problem}")
        if not isinstance(status, str):
            raise MalformedEntry(f"{where}.{name} is {_type_name(status)}, not a string")
        if name not in known.agreement_names:
            unknown.append(UnknownValue(where, name))


def identifier_problem(text: str, max_bytes: int) -> str | None:
    """Why ``text`` cannot be stored as an identifier within ``max_bytes`` of UTF-8 (None: it can)."""
    size = len(text) if text.isascii() else table.utf8_length(text)  # isascii: O(1), no copy
    if size is None:
        return "is not valid Unicode text (a lone surrogate)"
    if size > max_bytes:
        return f"is {size} bytes of UTF-8, over the {max_bytes}-byte limit"
    return None


def code_problem(text: str) -> str | None:
    """Why ``text`` cannot be a code (a status, error code, region, agreement name; None: it can)."""
    # Codes repeat (a handful of statuses per page): remembered, but only short ones, so the memo stays
    # small (1,024 x 256 characters at most) whatever Leap sends.
    return _code_problem(text) if len(text) <= MAX_CODE_BYTES else _code_problem.__wrapped__(text)


@lru_cache(maxsize=1024)
def _code_problem(text: str) -> str | None:
    problem = identifier_problem(text, MAX_CODE_BYTES)
    if problem is None and _REFUSED_BY_SNS.search(text):
        problem = "holds a control character (SNS refuses it in a message attribute)"
    return problem


def _code(text: str, where: str) -> str:
    problem = code_problem(text)
    if problem:
        raise MalformedEntry(f"{where} {problem}")
    return text


def _nullable_code(raw: Mapping[str, Any], name: str, at: str = "") -> str | None:
    text = _nullable_text(raw, name, at)
    return None if text is None else _code(text, f"{at}.{name}" if at else name)


def _identifier(raw: Mapping[str, Any], name: str, max_bytes: int) -> str:
    text = _required_text(raw, name)
    problem = identifier_problem(text, max_bytes)
    if problem:
        raise MalformedEntry(f"{name} {problem}")  # never the value: it names a customer
    return text


def _required_text(raw: Mapping[str, Any], name: str, at: str = "") -> str:
    where = f"{at}.{name}" if at else name
    if name not in raw or raw[name] is None:
        raise MalformedEntry(f"{where} is missing")
    value = raw[name]
    if not isinstance(value, str):
        raise MalformedEntry(f"{where} is {_type_name(value)}, not a string")
    if not value or value.isspace():  # what `not value.strip()` means, without a copy
        raise MalformedEntry(f"{where} is empty")
    return value


def _nullable_text(raw: Mapping[str, Any], name: str, at: str = "") -> str | None:
    value = raw.get(name)
    if value is None or isinstance(value, str):
        return value
    where = f"{at}.{name}" if at else name
    raise MalformedEntry(f"{where} is {_type_name(value)}, not a string or null")


def _instant(text: str, where: str) -> datetime:
    instant = (_parsed_instant if len(text) <= _MAX_INSTANT_CHARS else _parsed_instant.__wrapped__)(text)
    if instant is None:
        raise MalformedEntry(f"{where} is not an RFC 3339 date-time with an offset: {text[:40]!r}")
    return instant


# An entry repeats its instants (a utility's start is often the entry's): remembered, bounded.
_MAX_INSTANT_CHARS = 64  # "2025-01-16T00:49:41.123456789+00:00" is 35: longer ones are rare, not cached


@lru_cache(maxsize=1024)
def _parsed_instant(text: str) -> datetime | None:
    if _RFC3339.match(text):
        try:
            return datetime.fromisoformat(text)  # the pattern guarantees an offset: always aware
        except ValueError:
            pass  # right shape, impossible date (month 13, Feb 30)
    return None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
