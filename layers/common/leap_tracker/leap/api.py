"""What the rest of the code knows of Leap's APIs: queries, pages and errors (no HTTP here).

The HTTP client in ``leap_tracker.adapters.leap_http`` implements these; tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from leap_tracker.leap import wire


@dataclass(frozen=True, slots=True)
class ConnectQuery:
    """One Connect API selection. Exactly one of the three criteria is set."""

    ref_id: str | None = None
    start_date: str | None = None  # RFC 3339, entries whose connection started at/after it
    last_interaction_date: str | None = None  # RFC 3339, entries last touched at/after it

    def __post_init__(self) -> None:
        chosen = [v for v in (self.ref_id, self.start_date, self.last_interaction_date) if v]
        if len(chosen) != 1:
            raise ValueError("a ConnectQuery needs exactly one of ref_id, start_date, last_interaction_date")

    @property
    def listing_field(self) -> str | None:
        """The entry field this selection filters on (its dates are what the listing may be ordered
        by); None for a ref_id selection."""
        if self.start_date:
            return wire.ENTRY_START
        if self.last_interaction_date:
            return wire.ENTRY_LAST_INTERACTION
        return None

    def from_date(self, date: str) -> ConnectQuery:
        """The same kind of selection, from ``date`` on (a Leap instant, at or after this one's)."""
        if self.start_date:
            return ConnectQuery(start_date=date)
        if self.last_interaction_date:
            return ConnectQuery(last_interaction_date=date)
        raise ValueError("a ref_id selection has no date to start from")


@dataclass(frozen=True, slots=True)
class ConnectPage:
    """One page of entries as Leap sent them (raw dicts, Leap field names)."""

    entries: list[dict[str, Any]]
    next_page_token: str | None


class PageAnswer(Protocol):
    """A Connect page as it was received, decoded and checked on first use. A source may hand these
    out (``iter_page_answers``) to a caller that fetches ahead in another thread: the page is then
    decoded where it is used, after the page before it was let go (``poller/prefetch.py``)."""

    def page(self) -> ConnectPage: ...


class ConnectSource(Protocol):
    def iter_pages(self, query: ConnectQuery, page_token: str | None = None) -> Iterator[ConnectPage]:
        """Yield pages lazily, starting at ``page_token`` when resuming."""
        ...


class MeterSource(Protocol):
    def search_by_connection_references(
        self, reference_ids: Sequence[str], created_after: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every meter (raw Meters v2 dict) of up to 100 Reference IDs, following pages."""
        ...


class LeapError(Exception):
    """Base of every error raised talking to Leap."""


class LeapAuthError(LeapError):
    """401/403: a wrong key or environment. Fatal for the run; never retried."""


class LeapPageTokenExpired(LeapError):
    """Leap refused a page token we sent back (assumed: tokens may expire)."""


class LeapRequestError(LeapError):
    """A 4xx other than auth: our request is wrong. Not retried."""


class LeapUnavailable(LeapError):
    """429/5xx/connection errors that outlasted the retry budget."""


class LeapInvalidResponse(LeapError):
    """An answer that is not the shape the contract promises (not JSON, cut off, wrong types)."""
