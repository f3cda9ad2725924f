"""Entry validation, canonical JSON and the content hash."""

from __future__ import annotations

import copy
import hashlib
import json
import random
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.events.catalog import CONNECTION_SCHEMA
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import (
    MAX_CODE_BYTES,
    MAX_ENTRY_ID_BYTES,
    MAX_REF_ID_BYTES,
    MalformedEntry,
    UnknownValue,
    canonical_json,
    content_hash,
    validate_entry,
)
from tests.builders import guide_entry

UTILITIES = wire.ENTRY_UTILITY_CONNECTIONS


def test_the_guide_example_is_valid_and_hashed_in_canonical_form() -> None:
    raw = guide_entry(
        "Test1012", status=wire.CONNECTION_ERROR, utility_status="ERROR", error_code="USER_CANCELED"
    )
    entry = validate_entry(raw)
    assert entry.entry_id == raw[wire.ENTRY_ID]
    assert entry.ref_id == "Test1012"
    assert entry.last_interaction_text == raw[wire.ENTRY_LAST_INTERACTION]
    assert entry.canonical_json == json.dumps(raw, sort_keys=True, separators=(",", ":"))
    assert entry.content_hash == hashlib.sha256(entry.canonical_json.encode()).hexdigest()
    assert json.loads(entry.canonical_json) == raw
    assert entry.unknown_values == ()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({wire.ENTRY_CONNECTION_STATUS: "PAUSED"}, UnknownValue(wire.ENTRY_CONNECTION_STATUS, "PAUSED")),
        (
            {UTILITIES: [{wire.UTILITY_NAME: "X", wire.UTILITY_STATUS: "LOCKED"}]},
            UnknownValue(f"{UTILITIES}.{wire.UTILITY_STATUS}", "LOCKED"),
        ),
        (
            {
                UTILITIES: [
                    {
                        wire.UTILITY_NAME: "X",
                        wire.UTILITY_STATUS: "ERROR",
                        wire.UTILITY_ERROR_CODE: "ACCOUNT_LOCKED",
                    }
                ]
            },
            UnknownValue(f"{UTILITIES}.{wire.UTILITY_ERROR_CODE}", "ACCOUNT_LOCKED"),
        ),
        (
            {wire.ENTRY_AGREEMENTS: {"privacy_consent_status": "PENDING"}},
            UnknownValue(wire.ENTRY_AGREEMENTS, "privacy_consent_status"),
        ),
    ],
)
def test_unknown_values_are_kept_and_reported(change: dict[str, Any], expected: UnknownValue) -> None:
    raw = {**guide_entry(), **change}
    entry = validate_entry(raw)
    assert entry.unknown_values == (expected,)
    assert json.loads(entry.canonical_json) == raw  # kept exactly as Leap sent it


def test_pending_agreement_statuses_are_not_news() -> None:
    """Any status but NOT_REQUIRED and the done ones means pending by design: not counted as unknown."""
    agreements = {wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION: "AWAITING_SIGNATURE"}
    assert validate_entry(guide_entry(agreement_statuses=agreements)).unknown_values == ()


def test_optional_parts_may_be_absent_or_null() -> None:
    raw = guide_entry()
    for name in (wire.ENTRY_START, UTILITIES, wire.ENTRY_AGREEMENTS, wire.ENTRY_TRANSMISSION_REGION):
        del raw[name]
    validate_entry(raw)
    nulls = guide_entry()
    nulls[wire.ENTRY_TRANSMISSION_REGION] = None
    utility = nulls[UTILITIES][0]
    for name in (
        wire.UTILITY_AUTHORIZATION_UUID,
        wire.UTILITY_ERROR_CODE,
        wire.UTILITY_START,
        wire.UTILITY_LAST_INTERACTION,
    ):
        utility[name] = None
    validate_entry(nulls)


def _without(name: str) -> dict[str, Any]:
    raw = guide_entry()
    del raw[name]
    return raw


def _with(**values: Any) -> dict[str, Any]:
    return {**guide_entry(), **values}


def _with_utility(**values: Any) -> dict[str, Any]:
    raw = guide_entry()
    raw[UTILITIES][0].update(values)
    return raw


LI = wire.ENTRY_LAST_INTERACTION
MALFORMED = [
    pytest.param(["not", "an", "object"], "entry is list", id="not-an-object"),
    pytest.param(_without(wire.ENTRY_ID), "id is missing", id="no-id"),
    pytest.param(_with(id=42), "id is int", id="id-not-text"),
    pytest.param(_with(id="  "), "id is empty", id="blank-id"),
    pytest.param(_with(id="x" * (MAX_ENTRY_ID_BYTES + 1)), "over the", id="id-too-long"),
    pytest.param(_without(wire.ENTRY_REF_ID), "ref_id is missing", id="no-ref-id"),
    pytest.param(_without(wire.ENTRY_CONNECTION_STATUS), "connection_status is missing", id="no-status"),
    pytest.param(_with(connection_status=None), "connection_status is missing", id="null-status"),
    pytest.param(_without(LI), f"{LI} is missing", id="no-last-interaction"),
    pytest.param(_with(**{LI: "yesterday"}), "not an RFC 3339", id="last-interaction-words"),
    pytest.param(_with(**{LI: "2023-01-11"}), "not an RFC 3339", id="last-interaction-date-only"),
    pytest.param(_with(**{LI: "2023-01-11T02:45:50"}), "not an RFC 3339", id="last-interaction-no-offset"),
    pytest.param(_with(**{LI: "2023-02-30T02:45:50Z"}), "not an RFC 3339", id="last-interaction-impossible"),
    pytest.param(_with(start_date_time_utc=None), "start_date_time_utc is missing", id="null-start"),
    pytest.param(_with(transmission_region=7), "transmission_region is int", id="region-not-text"),
    pytest.param(_with(utility_connections={"a": 1}), "utility_connections is dict", id="utilities-not-list"),
    pytest.param(_with(utility_connections=["x"]), "utility_connections[0] is str", id="utility-not-object"),
    pytest.param(_with_utility(utility_name=None), "utility_name is missing", id="utility-no-name"),
    pytest.param(_with_utility(status=3), "status is int", id="utility-status-not-text"),
    pytest.param(_with_utility(error_code=5), "error_code is int", id="error-code-not-text"),
    pytest.param(_with_utility(utility_is_required="yes"), "not a boolean", id="required-not-bool"),
    pytest.param(_with_utility(last_interaction_date_time_utc="soon"), "not an RFC 3339", id="utility-date"),
    pytest.param(_with(agreements=["SIGNED"]), "agreements is list", id="agreements-not-object"),
    pytest.param(_with(agreements={"x": 1}), "agreements.x is int", id="agreement-not-text"),
    pytest.param(_with(extra=float("nan")), "not representable as JSON", id="nan"),
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED)
def test_malformed_entries_are_refused_with_a_reason(raw: Any, reason: str) -> None:
    with pytest.raises(MalformedEntry) as refused:
        validate_entry(raw)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": 3}, "utility_connections[0].status is int, not a string"),
        ({"error_code": "A\x01"}, "utility_connections[0].error_code holds a control character"),
        ({"start_date_time_utc": "soon"}, "utility_connections[0].start_date_time_utc is not an RFC 3339"),
    ],
)
def test_a_utility_problem_names_its_place_in_full(change: dict[str, Any], reason: str) -> None:
    # The place is added only when a problem is found (validation's hot path builds no text).
    with pytest.raises(MalformedEntry) as refused:
        validate_entry(_with_utility(**change))
    assert refused.value.reason.startswith(reason)


def test_remembered_codes_and_instants_give_the_same_answer_every_time() -> None:
    # Codes and instants are memoised (bounded); the answer must not depend on what came before.
    long_instant = "2025-01-16T00:49:41." + "1" * 60 + "Z"  # over the memo's length bound: still valid
    for _ in range(3):
        assert validate_entry(_with(**{LI: long_instant})).last_interaction_text == long_instant
        with pytest.raises(MalformedEntry, match="not an RFC 3339"):
            validate_entry(_with(**{LI: "2023-02-30T02:45:50Z"}))
        with pytest.raises(MalformedEntry, match="control character"):
            validate_entry(_with(connection_status="BAD\x07"))
        with pytest.raises(MalformedEntry, match="over the 256-byte limit"):
            validate_entry(_with(connection_status=LONG_CODE))


def test_a_refused_entry_keeps_its_id_when_it_had_a_usable_one() -> None:
    with pytest.raises(MalformedEntry) as refused:
        validate_entry(_without(LI))
    assert refused.value.entry_id == guide_entry()[wire.ENTRY_ID]
    with pytest.raises(MalformedEntry) as no_id:
        validate_entry(_with(id=None))
    assert no_id.value.entry_id is None


# --- identifiers: bytes of UTF-8, what DynamoDB counts, not characters ----------------------------

CJK, EMOJI = "参", "🔌"  # 3 and 4 bytes of UTF-8, one character each


def _id_of(byte_count: int, unit: str = "x") -> str:
    """An entry id of exactly ``byte_count`` bytes, shaped like Leap's, the rest made of ``unit``."""
    head = "CAISO_62631455-9dfd-433b-9482-fd043f2336d4_"
    filler, remainder = divmod(byte_count - len(head), len(unit.encode()))
    return head + "x" * remainder + unit * filler


@pytest.mark.parametrize(
    ("entry_id", "accepted"),
    [
        pytest.param(_id_of(MAX_ENTRY_ID_BYTES), True, id="ascii-at-the-limit"),
        pytest.param(_id_of(MAX_ENTRY_ID_BYTES + 1), False, id="ascii-one-byte-over"),
        pytest.param(_id_of(MAX_ENTRY_ID_BYTES, CJK), True, id="cjk-at-the-limit"),
        pytest.param(_id_of(MAX_ENTRY_ID_BYTES + 1, CJK), False, id="cjk-one-byte-over"),
        pytest.param(_id_of(2_100 + 43, CJK), False, id="700-cjk-characters"),
        pytest.param(_id_of(MAX_ENTRY_ID_BYTES, EMOJI), True, id="emoji-at-the-limit"),
        pytest.param(_id_of(MAX_ENTRY_ID_BYTES + 1, EMOJI), False, id="emoji-one-byte-over"),
        pytest.param("CAISO_x_\ud800", False, id="lone-surrogate"),  # JSON can escape one; UTF-8 cannot
    ],
)
def test_an_entry_id_is_limited_by_its_utf8_bytes(entry_id: str, accepted: bool) -> None:
    raw = _with(id=entry_id)
    if accepted:
        assert validate_entry(raw).entry_id == entry_id
        return
    if not entry_id.isascii():
        assert len(entry_id) <= 1024  # these passed the old check by characters
    with pytest.raises(MalformedEntry) as refused:
        validate_entry(raw)
    assert refused.value.reason.startswith(f"{wire.ENTRY_ID} ")
    assert refused.value.entry_id is None  # not usable as a key: the quarantine key will be a hash
    assert entry_id not in refused.value.reason  # the reason never quotes the id


@pytest.mark.parametrize(
    ("ref_id", "accepted"),
    [
        pytest.param("r" * MAX_REF_ID_BYTES, True, id="ascii-at-the-limit"),
        pytest.param("r" * (MAX_REF_ID_BYTES + 1), False, id="ascii-one-byte-over"),
        pytest.param(CJK * 700, False, id="700-cjk-characters"),
        pytest.param(EMOJI * (MAX_REF_ID_BYTES // 4) + "r", True, id="emoji-at-the-limit"),
        pytest.param(EMOJI * (MAX_REF_ID_BYTES // 4 + 1), False, id="emoji-over"),
    ],
)
def test_a_reference_id_is_limited_by_its_utf8_bytes(ref_id: str, accepted: bool) -> None:
    raw = _with(ref_id=ref_id)  # the id keeps its short Reference ID: only ref_id is under test
    if accepted:
        assert validate_entry(raw).ref_id == ref_id
        return
    with pytest.raises(MalformedEntry, match=r"^ref_id is \d+ bytes of UTF-8, over the") as refused:
        validate_entry(raw)
    assert refused.value.entry_id == raw[wire.ENTRY_ID]  # the id itself is usable


# --- codes: statuses, error codes, the region, agreement names (SNS attributes and log fields) ------

LONG_CODE = "C" * (MAX_CODE_BYTES + 1)


def _with_agreement(name: str) -> dict[str, Any]:
    return _with(agreements={**guide_entry()[wire.ENTRY_AGREEMENTS], name: "PENDING"})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(_with(connection_status=LONG_CODE), "connection_status is 257 bytes", id="status"),
        pytest.param(_with(transmission_region=LONG_CODE), "transmission_region is 257 bytes", id="region"),
        pytest.param(_with(transmission_region="CA\x00ISO"), "control character", id="region-nul"),
        pytest.param(_with(transmission_region="CA\ud800"), "not valid Unicode", id="region-surrogate"),
        pytest.param(_with_utility(status=LONG_CODE), "utility_connections[0].status is 257", id="u-status"),
        pytest.param(_with_utility(error_code=LONG_CODE), "[0].error_code is 257 bytes", id="error-code"),
        pytest.param(_with_utility(error_code="E\x1b[31m"), "control character", id="error-code-escape"),
        pytest.param(_with_agreement(LONG_CODE), "the name of agreement 2 is 257 bytes", id="agreement-name"),
        pytest.param(_with_agreement("x\x0bname"), "the name of agreement 2 holds a control", id="name-vt"),
    ],
)
def test_a_code_too_long_or_refused_by_sns_quarantines_the_entry(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedEntry) as refused:
        validate_entry(raw)
    assert reason in refused.value.reason
    assert LONG_CODE not in refused.value.reason  # the reason is logged: it never grows with the value
    assert refused.value.entry_id == raw[wire.ENTRY_ID]


@pytest.mark.parametrize(
    "code", ["C" * MAX_CODE_BYTES, "参" * (MAX_CODE_BYTES // 3), "tab\tand\nnewline", "NEW_CODE_2026"]
)
def test_a_code_within_the_limit_is_kept_as_leap_sent_it(code: str) -> None:
    raw = _with(transmission_region=code, connection_status=code)
    raw[UTILITIES][0].update(status=code, error_code=code)

    entry = validate_entry(raw)

    assert json.loads(entry.canonical_json)[wire.ENTRY_TRANSMISSION_REGION] == code
    assert {u.value for u in entry.unknown_values} == {code}  # an unknown value, counted, not refused


# --- properties ---------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: _shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


@settings(max_examples=60, deadline=None)
@given(value=st.dictionaries(st.text(max_size=6), json_values, max_size=6), seed=st.integers())
def test_the_canonical_form_and_hash_do_not_depend_on_key_order(value: dict[str, Any], seed: int) -> None:
    reordered = _shuffled(value, random.Random(seed))
    assert canonical_json(reordered) == canonical_json(value)
    assert content_hash(canonical_json(reordered)) == content_hash(canonical_json(value))


@settings(max_examples=60, deadline=None)
@given(value=st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_the_canonical_form_round_trips(value: dict[str, Any]) -> None:
    assert json.loads(canonical_json(value)) == value


# A mutation either keeps an entry valid or breaks it; whatever the validator accepts must match the
# published connection schema, so every event built from a stored entry passes the schemas.
_MUTATIONS = st.sampled_from(
    [
        (wire.ENTRY_CONNECTION_STATUS, st.sampled_from(["COMPLETED", "NEW_STATUS", "", 1, None])),
        (wire.ENTRY_TRANSMISSION_REGION, st.sampled_from(["ERCOT", None, 3])),
        (LI, st.sampled_from(["2025-01-10T10:00:00Z", "2025-01-10T10:00:00.5+02:00", "2025-01-10", "x"])),
        (wire.ENTRY_START, st.sampled_from(["2025-01-09T10:00:00Z", None, "2025-13-01T00:00:00Z"])),
        (wire.ENTRY_AGREEMENTS, st.sampled_from([{}, {"a": "SIGNED"}, {"a": None}, [], None])),
        (UTILITIES, st.sampled_from([[], [{}], [{"utility_name": "U", "status": "X"}], None, "U"])),
        ("extra_field", json_values),
    ]
)


@settings(max_examples=100, deadline=None)
@given(mutations=st.lists(_MUTATIONS.flatmap(lambda m: st.tuples(st.just(m[0]), m[1])), max_size=4))
def test_whatever_is_accepted_conforms_to_the_published_connection_schema(
    mutations: list[tuple[str, Any]],
) -> None:
    raw = copy.deepcopy(guide_entry())
    for name, value in mutations:
        raw[name] = value
    try:
        validate_entry(raw)
    except MalformedEntry:
        return
    jsonschema.validate(raw, CONNECTION_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
