"""Pseudonyms of customer identifiers (leap_tracker.privacy): keyed, stable, and the same as the
documented command gives, so an operator can grep one customer's log lines."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leap_tracker.adapters.secrets import log_pseudonyms
from leap_tracker.config import ConfigError, load_settings
from leap_tracker.privacy import (
    MIN_KEY_BYTES,
    KeyTooShort,
    Pseudonyms,
    excerpt,
    pseudonym,
)
from tests.fakes.log_key import LOG_HASH_KEY, PSEUDONYMS

GUIDE_ENTRY_ID = "CAISO_62631455-9dfd-433b-9482-fd043f2336d4_Test1012"


def test_the_pseudonyms_are_those_the_documented_openssl_command_gives() -> None:
    # printf '%s' Test1012 | openssl dgst -sha256 -hmac "$KEY", first 16 hex digits (docs/security.md).
    # Fixed here: a change of the scheme would make every grep an operator learned find nothing.
    assert PSEUDONYMS.ref("Test1012") == "ref:df19e75b952f90b7"
    assert PSEUDONYMS.entry(GUIDE_ENTRY_ID) == "entry:451e777ae109af27"
    assert pseudonym("ref", "Test1012", LOG_HASH_KEY.encode()) == "ref:df19e75b952f90b7"


@given(st.text(max_size=300))
def test_the_same_identifier_always_gives_the_same_pseudonym_of_one_form(value: str) -> None:
    shown = PSEUDONYMS.ref(value)

    assert shown == Pseudonyms.from_secret(LOG_HASH_KEY).ref(value)
    assert re.fullmatch(r"ref:[0-9a-f]{16}", shown)


def test_another_key_gives_other_pseudonyms() -> None:
    other = Pseudonyms.from_secret("another-stack-log-hash-key-0123456789abcdef")

    assert other.ref("Test1012") != PSEUDONYMS.ref("Test1012")
    assert other.entry(GUIDE_ENTRY_ID) != PSEUDONYMS.entry(GUIDE_ENTRY_ID)


def test_the_secret_string_is_taken_without_surrounding_whitespace() -> None:
    # The CLI and the functions read the same secret: a trailing newline must not change the hash.
    assert Pseudonyms.from_secret(f"  {LOG_HASH_KEY}\n").ref("Test1012") == PSEUDONYMS.ref("Test1012")


def test_an_identifier_that_is_not_unicode_text_still_gets_a_pseudonym() -> None:
    assert PSEUDONYMS.entry("CAISO_x_\ud800").startswith("entry:")


@pytest.mark.parametrize("key", ["", "short", "k" * (MIN_KEY_BYTES - 1)])
def test_a_short_key_is_refused(key: str) -> None:
    with pytest.raises(KeyTooShort, match=f"at least {MIN_KEY_BYTES}"):
        Pseudonyms.from_secret(key)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pseudonym kind 'customer'"):
        pseudonym("customer", "x", LOG_HASH_KEY.encode())


def test_the_key_never_shows_in_a_repr() -> None:
    assert LOG_HASH_KEY not in repr(PSEUDONYMS)


def test_redact_replaces_each_identifier_by_its_pseudonym_the_entry_id_whole() -> None:
    text = f"{GUIDE_ENTRY_ID}: Leap refused 'Test1012' (and Test1012 again)"

    redacted = PSEUDONYMS.redact(text, ref_ids=["Test1012"], entry_ids=[GUIDE_ENTRY_ID])

    entry, ref = PSEUDONYMS.entry(GUIDE_ENTRY_ID), PSEUDONYMS.ref("Test1012")
    assert redacted == f"{entry}: Leap refused '{ref}' (and {ref} again)"
    assert PSEUDONYMS.redact("nothing to hide", ref_ids=["", "Test1012"]) == "nothing to hide"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("connection.completed", "connection.completed"),
        ("x" * 100, "x" * 37 + "..."),
        (None, "None"),
        (["a", "b"], "['a', 'b']"),
    ],
)
def test_an_excerpt_is_short_whatever_it_is_given(value: object, shown: str) -> None:
    assert excerpt(value) == shown
    assert len(excerpt(value)) <= 40


# --- the key at a cold start (adapters.secrets.log_pseudonyms; the secret's path is in the
# integration and e2e tests) ----------------------------------------------------------------------------


def test_a_cold_start_without_any_log_hash_key_fails_naming_both_variables() -> None:
    with pytest.raises(ConfigError, match=r"^no log hash key: set LOG_HASH_KEY_SECRET_ARN \(or LOG_HASH_KEY"):
        log_pseudonyms(load_settings({}))


def test_a_short_local_key_fails_the_cold_start_naming_its_variable() -> None:
    with pytest.raises(ConfigError, match=r"^LOG_HASH_KEY: the log hash key has 5 bytes"):
        log_pseudonyms(load_settings({"LOG_HASH_KEY": "short"}))


def test_the_local_key_stands_in_for_the_secret() -> None:
    assert log_pseudonyms(load_settings({"LOG_HASH_KEY": LOG_HASH_KEY})) == PSEUDONYMS
