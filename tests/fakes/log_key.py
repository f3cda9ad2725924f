"""The log hash key of the tests: ``LOG_HASH_KEY`` in every test's environment (tests/conftest.py),
standing in for the stack's secret, and the pseudonyms it gives (what a handler built from the
environment logs and uses as FIFO group ids)."""

from __future__ import annotations

from leap_tracker.privacy import Pseudonyms

LOG_HASH_KEY = "test-log-hash-key-0123456789abcdefghijklmnopqrstuv"
PSEUDONYMS = Pseudonyms.from_secret(LOG_HASH_KEY)
