"""What a log line or SNS metadata may show of a customer: a keyed pseudonym, never the identifier.

Reference IDs are the partner's free text (often a customer or account number) and entry ids embed
them. Log lines (kept for months) and SNS metadata (not encrypted) carry instead
``ref:<16 hex>`` / ``entry:<16 hex>``: the first 16 hex digits of HMAC-SHA256 over the identifier's
UTF-8 bytes, keyed with the stack's log hash key. The same identifier always gives the same
pseudonym, so an operator who hashes one customer's id with the same key (``leap-tracker hash``,
docs/security.md#finding-one-customer-in-the-logs) can grep for it; without the key nobody can tell
which customer a pseudonym is, nor test a guess.

The key is handed in by the handler edge (read once per cold start); nothing here reads it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

REF = "ref"  # a Reference ID
ENTRY = "entry"  # a Leap entry id
KINDS = (REF, ENTRY)
PSEUDONYM_HEX_DIGITS = 16  # 64 bits: no two customers of a partner share one in practice
MIN_KEY_BYTES = 32  # the stack generates 64; a local LOG_HASH_KEY must not be a toy
EXCERPT_CHARACTERS = 40  # how much of an unexpected outside value a message shows


class KeyTooShort(ValueError):
    """The log hash key is too short to keep pseudonyms from being guessed."""


def pseudonym(kind: str, value: str, key: bytes) -> str:
    """``<kind>:<16 hex>``: HMAC-SHA256 of ``value`` (UTF-8) under ``key``, truncated."""
    if kind not in KINDS:
        raise ValueError(f"unknown pseudonym kind {kind!r}; known: {list(KINDS)}")
    # surrogatepass: a log line must never fail on an identifier that is not valid Unicode text.
    digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"{kind}:{digest[:PSEUDONYM_HEX_DIGITS]}"


@dataclass(frozen=True, slots=True)
class Pseudonyms:
    """The stack's pseudonyms: one key, built once per cold start from the log hash key secret."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_BYTES:
            raise KeyTooShort(
                f"the log hash key has {len(self.key)} bytes; at least {MIN_KEY_BYTES} are needed"
            )

    @classmethod
    def from_secret(cls, secret: str) -> Pseudonyms:
        """From the secret's string, as Secrets Manager (or LOG_HASH_KEY) holds it."""
        return cls(secret.strip().encode("utf-8"))

    def ref(self, ref_id: str) -> str:
        return pseudonym(REF, ref_id, self.key)

    def entry(self, entry_id: str) -> str:
        return pseudonym(ENTRY, entry_id, self.key)

    def redact(self, text: str, *, ref_ids: Iterable[str] = (), entry_ids: Iterable[str] = ()) -> str:
        """``text`` with each of these identifiers replaced by its pseudonym (longest first, so an
        entry id is replaced whole before the Reference ID inside it)."""
        found = {value: self.entry(value) for value in entry_ids if value}
        found |= {value: self.ref(value) for value in ref_ids if value and value not in found}
        for value in sorted(found, key=len, reverse=True):
            text = text.replace(value, found[value])
        return text


def excerpt(value: object, limit: int = EXCERPT_CHARACTERS) -> str:
    """A value from outside as a log line or message may show it: a string as it is, anything else
    as its repr, cut at ``limit`` characters (a line must not grow with what a caller sent). Never
    for an identifier: those are shown as their pseudonyms."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
