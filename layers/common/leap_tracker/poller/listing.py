"""The order Leap lists a selection in, as observed (pure): what a refused page token resumes from.

Leap does not publish the order of its Connect listing. Its page tokens may expire; a pass that loses
its token can only go on with a new query, and the only selections Leap offers are lower bounds ("from
this start date", "from this last-interaction date"). If the listing is ordered by that same date, the
pass can go on from the newest date it read and nothing before it is read twice; if it is not, only
page one of the same query is safe. So the order is checked, never assumed: every entry of every page
must carry the selection's date no older than the entry before it (across pages too) in Leap's fixed
second-precision form (``2023-01-11T02:44:57Z``, where text order is time order). One entry out of
order, or a date in another form, and the pass counts as unordered until it completes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from leap_tracker.poller.ports import ListingOrder

INSTANT_TEXT_LENGTH = len("2023-01-11T02:44:57Z")


def continued_order(
    entries: Iterable[Mapping[str, Any]], field: str | None, order: ListingOrder
) -> ListingOrder:
    """``order`` after one more page of raw entries, in the order Leap listed them."""
    if not order.in_order or field is None:
        return ListingOrder(in_order=False)
    through = order.through
    for entry in entries:
        date = entry.get(field)
        if not _comparable(date) or (through is not None and date < through):
            return ListingOrder(in_order=False)
        through = date
    return ListingOrder(in_order=True, through=through)


def _comparable(date: Any) -> bool:
    return isinstance(date, str) and len(date) == INSTANT_TEXT_LENGTH and date[-1] == "Z" and date[10] == "T"
