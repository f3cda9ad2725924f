"""The canonical JSON's fast path (orjson) against the reference encoder: the same text, the same hash.

The reference is ``json.dumps(value, sort_keys=True, separators=(",", ":"))`` refusing NaN/Infinity,
what every stored content hash was computed with: a stored snapshot must never look changed because
the text was written by another encoder.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.leap import connect_model, wire
from leap_tracker.leap.connect_model import MalformedEntry, canonical_json, content_hash, validate_entry
from tests.builders import guide_entry

UTILITIES = wire.ENTRY_UTILITY_CONNECTIONS


def reference(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class CountingEncoder(json.JSONEncoder):
    """The module's reference encoder, counting its uses (or refusing them: ``refuse``)."""

    def __init__(self, *, refuse: bool = False) -> None:
        super().__init__(sort_keys=True, separators=(",", ":"), allow_nan=False)
        self.refuse = refuse
        self.calls = 0

    def encode(self, o: Any) -> str:
        self.calls += 1
        if self.refuse:
            raise AssertionError("the reference encoder ran: the fast path was not taken")
        return super().encode(o)


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch) -> CountingEncoder:
    counting = CountingEncoder()
    monkeypatch.setattr(connect_model, "_CANONICAL_ENCODER", counting)
    return counting


# Text where the two encoders differ: DEL (json escapes it, orjson does not), anything past ASCII
# (json writes \uXXXX, orjson UTF-8), lone surrogates (orjson refuses them), control characters.
SPECIAL_CHARACTERS = list('\x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f"\\/ aZ9_é\u2028\u2029\ufffe\ud800\udfff🔌参')
characters = st.sampled_from(SPECIAL_CHARACTERS) | st.characters(exclude_categories=())
texts = st.text(characters, max_size=8)
# Numbers where they differ: floats (orjson's shortest form is not repr's: 1e-07 vs 1e-7; NaN becomes
# null), ints past 64 bits (orjson refuses them).
EDGE_INTS = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30]
EDGE_FLOATS = [0.0, -0.0, 1.0, 1e16, 1e-7, 5e-324]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from(EDGE_INTS + EDGE_FLOATS)
    | st.sampled_from([float("nan"), float("inf"), float("-inf")])
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)


def outcome(encode: Any, value: Any) -> tuple[str, str]:
    """("text", the JSON) or ("refused", the ValueError's message)."""
    try:
        return "text", encode(value)
    except ValueError as refused:
        return "refused", str(refused)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_canonical_json_is_the_reference_text(value: Any) -> None:
    assert outcome(canonical_json, value) == outcome(reference, value)
    kind, text = outcome(canonical_json, value)
    if kind == "text":
        assert content_hash(text) == sha256(reference(value))


@settings(max_examples=300, deadline=None)
@given(
    utility_name=texts.filter(lambda text: text.strip()),  # any non-blank text is a valid name
    authorization=st.none() | texts,
    agreement_status=texts,
    extra=st.dictionaries(st.sampled_from(["extra", "note", "a", "zz"]), json_values, max_size=3),
    utility_extra=st.dictionaries(st.sampled_from(["extra", "meter"]), json_values, max_size=2),
)
def test_a_validated_entry_keeps_the_reference_text_and_hash(
    utility_name: str,
    authorization: str | None,
    agreement_status: str,
    extra: dict[str, Any],
    utility_extra: dict[str, Any],
) -> None:
    raw = guide_entry()
    utility = raw[UTILITIES][0]
    utility.update(utility_extra)
    utility[wire.UTILITY_NAME] = utility_name
    utility[wire.UTILITY_AUTHORIZATION_UUID] = authorization
    raw[wire.ENTRY_AGREEMENTS][wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION] = agreement_status
    raw.update(extra)
    kind, expected = outcome(reference, raw)
    if kind == "refused":  # NaN or Infinity somewhere: refused today, refused still
        with pytest.raises(MalformedEntry, match="not representable as JSON"):
            validate_entry(raw)
        return
    entry = validate_entry(raw)
    assert entry.canonical_json == expected
    assert entry.content_hash == sha256(expected)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"text": "\x7f"}, id="del"),
        pytest.param({"text": "é"}, id="non-ascii"),
        pytest.param({"text": "\u2028"}, id="line-separator"),
        pytest.param({"text": "\ud800"}, id="lone-surrogate"),
        pytest.param({"\ud800": 1}, id="lone-surrogate-key"),
        pytest.param({"n": 2**64}, id="int-past-64-bits"),
        pytest.param({"n": -(2**63) - 1}, id="int-below-64-bits"),
        pytest.param({"f": 1e-7}, id="float-exponent"),
        pytest.param({"f": 1e16}, id="float-big"),
        pytest.param({"f": 1.0}, id="float-whole"),
        pytest.param({"deep": json.loads("[" * 300 + "]" * 300)}, id="nesting-past-orjson's-limit"),
        pytest.param({"deep": json.loads("[" * 3000 + "]" * 3000)}, id="lists-past-python's-recursion-limit"),
        pytest.param({"deep": json.loads('{"a":' * 3000 + "1" + "}" * 3000)}, id="objects-past-that-limit"),
    ],
)
def test_what_orjson_would_write_otherwise_goes_to_the_reference_encoder(
    value: dict[str, Any], encoder: CountingEncoder
) -> None:
    assert canonical_json(value) == reference(value)
    assert encoder.calls == 1
    in_entry = {**guide_entry(), "extra": value}
    assert validate_entry(in_entry).canonical_json == reference(in_entry)
    assert encoder.calls == 2
    in_utility = guide_entry()
    in_utility[UTILITIES][0]["extra"] = value
    assert validate_entry(in_utility).canonical_json == reference(in_utility)
    assert encoder.calls == 3


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_infinity_are_refused_as_before(value: float) -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        canonical_json({"f": value})
    with pytest.raises(MalformedEntry, match="not representable as JSON"):
        validate_entry({**guide_entry(), "extra": [value]})
    in_utility = guide_entry()
    in_utility[UTILITIES][0]["extra"] = {"f": value}
    with pytest.raises(MalformedEntry, match="not representable as JSON"):
        validate_entry(in_utility)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="the-guide-entry"),
        pytest.param(
            {"note": "plain text", "count": 3, "nested": {"b": [1, None, True], "a": "x"}}, id="unknown"
        ),
    ],
)
def test_a_typical_entry_takes_the_fast_path(extra: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {**guide_entry(), **extra}
    raw[UTILITIES][0]["meter_count"] = 2  # an unknown field in a utility too
    expected = reference(raw)
    monkeypatch.setattr(connect_model, "_CANONICAL_ENCODER", CountingEncoder(refuse=True))
    entry = validate_entry(raw)
    assert entry.canonical_json == expected
    assert entry.content_hash == sha256(expected)
    assert canonical_json(raw) == expected


class Masked(dict[str, Any]):
    """A dict whose items() hide a key: json writes what items() gives, orjson what the dict holds."""

    def items(self) -> Any:
        return [(key, value) for key, value in super().items() if key != "hidden"]


def _masked_entry(where: str) -> dict[str, Any]:
    raw = guide_entry()
    if where == "agreements":
        raw[wire.ENTRY_AGREEMENTS] = Masked(raw[wire.ENTRY_AGREEMENTS], hidden="x")
    elif where == "utility":
        raw[UTILITIES][0] = Masked(raw[UTILITIES][0], hidden="x")
    elif where == "unknown":
        raw["extra"] = Masked(hidden="x")
    else:
        raw = Masked(raw, hidden="x")
    return raw


@pytest.mark.parametrize("where", ["entry", "agreements", "utility", "unknown"])
def test_a_dict_subclass_goes_to_the_reference_encoder(where: str) -> None:
    raw = _masked_entry(where)
    assert "hidden" not in reference(raw)
    assert canonical_json(raw) == reference(raw)
    assert validate_entry(raw).canonical_json == reference(raw)
