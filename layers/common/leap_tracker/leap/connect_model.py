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
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

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
# Leap's own form, to the second in UTC, matches the pattern; told at a third of the regex's cost by
# zeroing its ASCII digits: equal to the template only with a digit wherever the pattern wants one.
_ZEROED_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_SECONDS_UTC_TEMPLATE = b"0000-00-00T00:00:00Z"


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


# A frozen dataclass's __init__ sets each field through object.__setattr__ (0.1 us a field, 10% of the
# validation): the validator sets the slots directly, the same object in half the time. Unpacking
# fails at import if the fields change, so _valid_entry cannot silently leave one unset.
(
    _SET_ENTRY_ID,
    _SET_REF_ID,
    _SET_LAST_INTERACTION,
    _SET_LAST_INTERACTION_TEXT,
    _SET_CANONICAL_JSON,
    _SET_CONTENT_HASH,
    _SET_CONNECTION_STATUS,
    _SET_TRANSMISSION_REGION,
    _SET_UNKNOWN_VALUES,
) = (getattr(ValidEntry, f.name).__set__ for f in fields(ValidEntry))


def _valid_entry(
    entry_id: str,
    ref_id: str,
    last_interaction: datetime,
    last_interaction_text: str,
    canonical: str,
    digest: str,
    connection_status: str,
    transmission_region: str | None,
    unknown_values: tuple[UnknownValue, ...],
) -> ValidEntry:
    """``ValidEntry(...)`` with the fields in their order, without the frozen __init__."""
    entry = object.__new__(ValidEntry)
    _SET_ENTRY_ID(entry, entry_id)
    _SET_REF_ID(entry, ref_id)
    _SET_LAST_INTERACTION(entry, last_interaction)
    _SET_LAST_INTERACTION_TEXT(entry, last_interaction_text)
    _SET_CANONICAL_JSON(entry, canonical)
    _SET_CONTENT_HASH(entry, digest)
    _SET_CONNECTION_STATUS(entry, connection_status)
    _SET_TRANSMISSION_REGION(entry, transmission_region)
    _SET_UNKNOWN_VALUES(entry, unknown_values)
    return entry


# One encoder for every entry: json.dumps would build a new one per call (it shows per page of 500).
# It is the REFERENCE: the canonical form, and so every stored content hash, is its output.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_json(entry: Any) -> str:
    """The one text form of an entry: sorted keys, no spaces, ASCII (stable across key order).

    Exactly ``json.dumps(entry, sort_keys=True, separators=(",", ":"))``, refusing NaN/Infinity;
    orjson writes it when that is provably the same text (:func:`_fast_canonical`).
    """
    fast = _fast_canonical(entry) if _plain(entry) else None
    return _CANONICAL_ENCODER.encode(entry) if fast is None else fast.decode("ascii")


def content_hash(canonical: str) -> str:
    """sha256 of the canonical JSON, hex."""
    return hashlib.sha256(canonical.encode()).hexdigest()


def _fast_canonical(value: Any) -> bytes | None:
    """orjson's text of ``value`` when it is byte for byte the reference encoder's, else None.

    Only for a value without a float (orjson writes some floats, NaN and Infinity otherwise) and
    without a type json refuses (orjson writes datetimes, UUIDs...): the caller checks that. On such a
    value the two agree on every ASCII character but DEL (json escapes it) and differ on every other
    character (orjson writes UTF-8, json \\uXXXX), hence the check of the output; orjson refuses what it
    cannot write (a lone surrogate, an int past 64 bits, a key not a string, nesting past 254): then
    the reference encoder decides, as before.
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return text if text.isascii() and b"\x7f" not in text else None


_MAX_FAST_NESTING = 254  # orjson refuses deeper nesting; the walk stops there too (json goes deeper)


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` holds only dicts, lists, strings, ints, booleans and nulls (exact types)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth >= _MAX_FAST_NESTING:
        return False
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return False
    for item in value:
        kind = type(item)  # a scalar is tested here, without a call: most items are
        if not (kind is str or kind is int or kind is bool or item is None or _plain(item, depth + 1)):
            return False
    return True


def validate_entry(raw: Any, known: KnownValues = DEFAULT_KNOWN_VALUES) -> ValidEntry:
    """Check one raw entry; raise :class:`MalformedEntry` with the first problem found."""
    if not isinstance(raw, dict):
        raise MalformedEntry(f"entry is {_type_name(raw)}, not an object")
    entry_id = raw.get(wire.ENTRY_ID)
    if not _short_ascii_text(entry_id, MAX_ENTRY_ID_BYTES):
        try:
            entry_id = _identifier(raw, wire.ENTRY_ID, MAX_ENTRY_ID_BYTES)
        except MalformedEntry as problem:  # no usable id: the quarantine key will be a hash
            raise MalformedEntry(problem.reason) from None
    try:
        return _validated(raw, known, entry_id)
    except MalformedEntry as problem:
        raise MalformedEntry(problem.reason, entry_id) from None


def _plain_code(value: Any) -> bool:
    """The common case of a required code, told at once: a non-blank string within the limit and
    without a character a code may not hold (anything else goes to ``_code``, which says why)."""
    return (
        type(value) is str
        and bool(value)
        and not value.isspace()
        and len(value) <= MAX_CODE_BYTES
        and _code_problem(value) is None
    )


# The checks of the hot path below test the common case inline (no Python call: the memos are C calls
# when they hit) and otherwise call the helper that raises the problem or accepts a rarer form, so the
# helpers stay the one statement of each rule.
def _validated(raw: dict[str, Any], known: KnownValues, entry_id: str) -> ValidEntry:
    get = raw.get
    ref_id = get(wire.ENTRY_REF_ID)
    if not _short_ascii_text(ref_id, MAX_REF_ID_BYTES):
        ref_id = _identifier(raw, wire.ENTRY_REF_ID, MAX_REF_ID_BYTES)
    status = get(wire.ENTRY_CONNECTION_STATUS)
    if not _plain_code(status):
        status = _code(_required_text(raw, wire.ENTRY_CONNECTION_STATUS), wire.ENTRY_CONNECTION_STATUS)
    last_text = get(wire.ENTRY_LAST_INTERACTION)
    last_interaction = None
    if type(last_text) is str and len(last_text) <= _MAX_INSTANT_CHARS:
        last_interaction = _parsed_instant(last_text)
    if last_interaction is None:
        last_text = _required_text(raw, wire.ENTRY_LAST_INTERACTION)
        last_interaction = _instant(last_text, wire.ENTRY_LAST_INTERACTION)
    start = get(wire.ENTRY_START, last_text)  # absent: nothing to check
    if start is not last_text and not (
        type(start) is str and len(start) <= _MAX_INSTANT_CHARS and _parsed_instant(start) is not None
    ):
        _instant(_required_text(raw, wire.ENTRY_START), wire.ENTRY_START)
    region = get(wire.ENTRY_TRANSMISSION_REGION)
    if not (
        region is None
        or (type(region) is str and len(region) <= MAX_CODE_BYTES and _code_problem(region) is None)
    ):
        region = _nullable_code(raw, wire.ENTRY_TRANSMISSION_REGION)

    unknown: list[UnknownValue] = []
    if status not in known.connection_statuses:
        unknown.append(UnknownValue(wire.ENTRY_CONNECTION_STATUS, status))
    if wire.ENTRY_UTILITY_CONNECTIONS in raw:
        _check_utilities(raw[wire.ENTRY_UTILITY_CONNECTIONS], known, unknown)
    if wire.ENTRY_AGREEMENTS in raw:
        _check_agreements(raw[wire.ENTRY_AGREEMENTS], known, unknown)

    text, digest = _canonical_and_hash(raw)
    if len(text) > MAX_ENTRY_JSON_BYTES:
        raise MalformedEntry(f"entry is {len(text)} bytes of JSON, over the {MAX_ENTRY_JSON_BYTES} limit")
    return _valid_entry(
        entry_id, ref_id, last_interaction, last_text, text, digest, status, region, tuple(unknown)
    )


def _canonical_and_hash(raw: dict[str, Any]) -> tuple[str, str]:
    """The canonical JSON of a validated entry and its content hash (:func:`canonical_json`)."""
    fast = _fast_canonical(raw) if _validated_types_only(raw) else None
    if fast is not None:
        return fast.decode("ascii"), hashlib.sha256(fast).hexdigest()
    try:
        text = _CANONICAL_ENCODER.encode(raw)
    except ValueError as exc:  # NaN/Infinity: json.loads accepts them, JSON does not
        raise MalformedEntry(f"not representable as JSON ({exc})") from None
    return text, content_hash(text)


# The fields whose types the validator checks (strings, nulls, a boolean, the utilities' list of
# objects, the agreements' object of strings): none is a float. Any other field may hold anything.
_ENTRY_FIELDS = frozenset(
    {
        wire.ENTRY_ID,
        wire.ENTRY_REF_ID,
        wire.ENTRY_CONNECTION_STATUS,
        wire.ENTRY_LAST_INTERACTION,
        wire.ENTRY_START,
        wire.ENTRY_TRANSMISSION_REGION,
        wire.ENTRY_UTILITY_CONNECTIONS,
        wire.ENTRY_AGREEMENTS,
    }
)
_UTILITY_FIELDS = frozenset(
    {
        wire.UTILITY_NAME,
        wire.UTILITY_STATUS,
        wire.UTILITY_ERROR_CODE,
        wire.UTILITY_AUTHORIZATION_UUID,
        wire.UTILITY_IS_REQUIRED,
        wire.UTILITY_START,
        wire.UTILITY_LAST_INTERACTION,
    }
)


def _validated_types_only(raw: dict[str, Any]) -> bool:
    """:func:`_plain` for an entry that passed validation, without walking the fields it checked."""
    if type(raw) is not dict or not (_ENTRY_FIELDS.issuperset(raw) or _plain_beyond(raw, _ENTRY_FIELDS)):
        return False
    agreements = raw.get(wire.ENTRY_AGREEMENTS)
    if agreements is not None and type(agreements) is not dict:
        return False
    utilities = raw.get(wire.ENTRY_UTILITY_CONNECTIONS)  # validated: a list when present
    if utilities and type(utilities) is not list:
        return False
    for utility in utilities or ():
        if type(utility) is not dict:
            return False
        if not (_UTILITY_FIELDS.issuperset(utility) or _plain_beyond(utility, _UTILITY_FIELDS)):
            return False
    return True


def _plain_beyond(value: dict[str, Any], known: frozenset[str]) -> bool:
    """Whether the fields of ``value`` outside ``known`` are :func:`_plain`."""
    return all(_plain(value[name]) for name in value.keys() - known)


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
    get = utility.get
    name = get(wire.UTILITY_NAME)
    if not (type(name) is str and name and not name.isspace()):
        _required_text(utility, wire.UTILITY_NAME)
    status = get(wire.UTILITY_STATUS)
    if not _plain_code(status):
        status = _code(_required_text(utility, wire.UTILITY_STATUS), wire.UTILITY_STATUS)
    if status not in known.utility_statuses:
        unknown.append(UnknownValue(_UTILITY_STATUS_FIELD, status))
    error_code = get(wire.UTILITY_ERROR_CODE)
    if not (
        error_code is None
        or (
            type(error_code) is str
            and len(error_code) <= MAX_CODE_BYTES
            and _code_problem(error_code) is None
        )
    ):
        error_code = _nullable_code(utility, wire.UTILITY_ERROR_CODE)
    if error_code and error_code not in known.error_codes:
        unknown.append(UnknownValue(_UTILITY_ERROR_CODE_FIELD, error_code))
    authorization = get(wire.UTILITY_AUTHORIZATION_UUID)
    if not (authorization is None or type(authorization) is str):
        _nullable_text(utility, wire.UTILITY_AUTHORIZATION_UUID)
    required = get(wire.UTILITY_IS_REQUIRED, False)  # absent is fine, null is not
    if not isinstance(required, bool):
        raise MalformedEntry(f"{wire.UTILITY_IS_REQUIRED} is {_type_name(required)}, not a boolean")
    for name in _UTILITY_INSTANTS:
        text = get(name)
        if not (
            text is None
            or (type(text) is str and len(text) <= _MAX_INSTANT_CHARS and _parsed_instant(text) is not None)
        ):
            _instant(text if isinstance(text, str) else _nullable_text(utility, name), name)  # (it raises)


_UTILITY_INSTANTS = (wire.UTILITY_START, wire.UTILITY_LAST_INTERACTION)


def _check_agreements(value: Any, known: KnownValues, unknown: list[UnknownValue]) -> None:
    where = wire.ENTRY_AGREEMENTS
    if not isinstance(value, dict):
        raise MalformedEntry(f"{where} is {_type_name(value)}, not an object")
    names = known.agreement_names
    for name, status in value.items():
        problem = _code_problem(name) if len(name) <= MAX_CODE_BYTES else _code_problem.__wrapped__(name)
        if problem:  # the name is a key Leap chose: shown by position, not quoted
            position = [key for key, _ in value.items()].index(name)  # counted only for a problem
            raise MalformedEntry(f"{where}: the name of agreement {position} {problem}")
        if not isinstance(status, str):
            raise MalformedEntry(f"{where}.{name} is {_type_name(status)}, not a string")
        if name not in names:
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
    problem = _code_problem(text) if len(text) <= MAX_CODE_BYTES else _code_problem.__wrapped__(text)
    if problem:
        raise MalformedEntry(f"{where} {problem}")
    return text


def _nullable_code(raw: Mapping[str, Any], name: str) -> str | None:
    text = raw.get(name)
    if text is None:
        return None
    return _code(text, name) if isinstance(text, str) else _nullable_text(raw, name)


def _short_ascii_text(value: Any, max_bytes: int) -> bool:
    """An identifier's common case (False: ask :func:`_identifier`, it may still be fine)."""
    return type(value) is str and value.isascii() and 0 < len(value) <= max_bytes and not value.isspace()


def _identifier(raw: Mapping[str, Any], name: str, max_bytes: int) -> str:
    text = _required_text(raw, name)
    if text.isascii() and len(text) <= max_bytes:  # identifier_problem's common case, without a call
        return text
    problem = identifier_problem(text, max_bytes)
    if problem:
        raise MalformedEntry(f"{name} {problem}")  # never the value: it names a customer
    return text


def _required_text(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if isinstance(value, str) and value and not value.isspace():  # what `not value.strip()` means, no copy
        return value
    if value is None:
        raise MalformedEntry(f"{name} is missing")
    if not isinstance(value, str):
        raise MalformedEntry(f"{name} is {_type_name(value)}, not a string")
    raise MalformedEntry(f"{name} is empty")


def _nullable_text(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None or isinstance(value, str):
        return value
    raise MalformedEntry(f"{name} is {_type_name(value)}, not a string or null")


def _instant(text: str, where: str) -> datetime:
    instant = (_parsed_instant if len(text) <= _MAX_INSTANT_CHARS else _parsed_instant.__wrapped__)(text)
    if instant is None:
        raise MalformedEntry(f"{where} is not an RFC 3339 date-time with an offset: {text[:40]!r}")
    return instant


# An entry repeats its instants (a utility's start is often the entry's): remembered, bounded.
_MAX_INSTANT_CHARS = 64  # "2025-01-16T00:49:41.123456789+00:00" is 35: longer ones are rare, not cached


@lru_cache(maxsize=1024)
def _parsed_instant(text: str) -> datetime | None:
    if _is_seconds_utc(text) or _RFC3339.match(text):
        try:
            return datetime.fromisoformat(text)  # the pattern guarantees an offset: always aware
        except ValueError:
            pass  # right shape, impossible date (month 13, Feb 30)
    return None


def _is_seconds_utc(text: str) -> bool:
    """Whether ``text`` is "YYYY-MM-DDTHH:MM:SSZ" in ASCII digits (then ``_RFC3339`` matches it)."""
    return (
        len(text) == len(_SECONDS_UTC_TEMPLATE)
        and text.isascii()  # before encode(): a lone surrogate cannot be encoded
        and text.encode().translate(_ZEROED_DIGITS) == _SECONDS_UTC_TEMPLATE
    )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
