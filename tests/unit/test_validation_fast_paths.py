"""The validator's shortcuts give what the plain rules give: Leap's instant form, the entry object."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError, fields
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.leap import connect_model
from leap_tracker.leap.connect_model import ValidEntry, validate_entry
from tests.builders import guide_entry

# RFC 3339 with an offset, as the published schemas' "date-time" (the rule the shortcut must keep).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")


def reference_instant(text: str) -> datetime | None:
    if not RFC3339.match(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# Leap's form and its near misses: other digits (Arabic-Indic, superscript), separators moved, a
# fraction or an offset, a lone surrogate, one character more or less.
instant_characters = st.sampled_from(list("0123456789-T:Z+.z t٣²\ud800"))
LEAP_FORM = "2025-01-16T00:49:41Z"


@st.composite
def near_leap_instants(draw: st.DrawFn) -> str:
    text = list(LEAP_FORM)
    for _ in range(draw(st.integers(0, 3))):
        text[draw(st.integers(0, len(text) - 1))] = draw(instant_characters)
    return "".join(text)[: draw(st.integers(18, 21))] + draw(st.sampled_from(["", "Z", "0"]))


instants = (
    near_leap_instants()
    | st.text(instant_characters, min_size=19, max_size=22)
    | st.sampled_from(["2025-02-30T00:00:00Z", "2025-13-01T00:00:00Z", "2025-01-16T24:00:00Z", LEAP_FORM])
)


@settings(max_examples=500, deadline=None)
@given(text=instants)
def test_an_instant_is_read_as_the_rfc3339_rule_reads_it(text: str) -> None:
    assert connect_model._parsed_instant.__wrapped__(text) == reference_instant(text)


def test_every_one_character_change_of_leap_s_form_is_read_as_the_rule_reads_it() -> None:
    # fromisoformat alone accepts more ("2025-01-16 00:49:41Z", lowercase letters...): exhaustive here.
    alphabet = "0123456789-T:Z+. tz/_\u0661\u00b2\ud800"
    for position in range(len(LEAP_FORM)):
        for character in alphabet:
            text = LEAP_FORM[:position] + character + LEAP_FORM[position + 1 :]
            assert connect_model._parsed_instant.__wrapped__(text) == reference_instant(text), text


def test_leap_s_form_takes_the_shortcut() -> None:
    assert connect_model._is_seconds_utc(LEAP_FORM)
    assert not connect_model._is_seconds_utc("2025-01-16T00:49:4\u0661Z")  # a digit, not an ASCII one
    assert not connect_model._is_seconds_utc("2025-01-16T00:49:41+00:00")  # valid, by the pattern


def test_a_validated_entry_is_the_frozen_dataclass_built_normally() -> None:
    # validate_entry sets ValidEntry's slots directly (faster than the frozen __init__): same object.
    entry = validate_entry(guide_entry(error_code="USER_CANCELED", utility_status="ERROR"))
    rebuilt = ValidEntry(**{spec.name: getattr(entry, spec.name) for spec in fields(ValidEntry)})
    assert entry == rebuilt
    assert hash(entry) == hash(rebuilt)
    assert repr(entry) == repr(rebuilt)
    with pytest.raises(FrozenInstanceError):
        entry.ref_id = "another"  # type: ignore[misc]
