"""The scheduled sweep: check every due watch against the Meters API, 100 Reference IDs a call.

For each batch of up to 100 due watches (earliest due first):
1. watches whose connection snapshot is gone are closed silently (nothing is published for them);
2. ONE Meters search (the client follows its pages) finds the meters of all the others;
3. each watch's next state comes from :func:`leap_tracker.meters.schedule.after_check`;
4. the batch's events are published, THEN each watch is saved with a conditional write (a watch
   whose event SNS did not accept is not saved: it stays due). Steps 3 and 4 are
   :mod:`leap_tracker.meters.checks`, which a ``meter.created`` webhook goes through too.

Publishing before saving means a crash in between re-checks those watches next time and publishes
events with the same deterministic ids (consumers deduplicate), instead of losing them. The
conditional write (on the watch's checks count) makes a concurrent sweep's work count once.

A watch whose Reference ID the Meters search cannot take (see ``wire.METERS_REFERENCE_ID_PATTERN``)
is never sent, since Leap would refuse the whole batch for it: it is checked as finding no meter, so
it runs the normal course to ``meter.overdue`` and ``meter.watch_expired``, and is counted.

A sweep that could not check every due watch it took (Leap failed or refused, SNS did not take some
events) raises :class:`SweepIncomplete` once everything else is done and saved: the platform counts
the failure and retries, and what was not checked is still due.

Nothing is checked twice in one sweep: the due-index is read once, in order, up to a fixed ``now``;
a checked watch is rescheduled strictly after ``now`` so that read can never meet it again (and a
stale index copy is skipped by entry id). Nearing the time limit, the sweep stops between batches:
the rest stays due, in the index, for the next sweep. No watch leaves the index unless it closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import islice

from leap_tracker.config import MeterWatchSettings
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.leap.api import (
    LeapAuthError,
    LeapInvalidResponse,
    LeapPageTokenExpired,
    LeapRequestError,
    LeapUnavailable,
    MeterSource,
)
from leap_tracker.meters import schedule
from leap_tracker.meters.checks import Saved, check, publish_then_save
from leap_tracker.meters.matching import MatchResult, match_meters, search_request, searchable
from leap_tracker.meters.model import MeterWatch
from leap_tracker.meters.ports import EventPublisher, WatchStore
from leap_tracker.privacy import Pseudonyms
from leap_tracker.timeutil import format_instant

# Leap is unwell (retries already spent inside the client) or refuses the key: every later search
# would fail the same way, so stop; what was not checked stays due.
_STOPPING_ERRORS = (LeapUnavailable, LeapInvalidResponse, LeapPageTokenExpired, LeapAuthError)
_MAX_ERRORS_KEPT = 5


@dataclass(slots=True)
class MeterSweepSummary:
    due: int = 0  # due watches taken from the index
    checked: int = 0  # checked against the Meters API and saved
    appeared: int = 0
    overdue: int = 0
    expired: int = 0
    connection_gone: int = 0  # closed without a check: the connection snapshot was deleted
    conflicts: int = 0  # changed by someone else first (a concurrent sweep): left to them
    meter_searches: int = 0  # one per batch of up to 100 Reference IDs (the client counts HTTP calls)
    malformed_meters: int = 0  # meters without a usable meter_id: skipped
    unsearchable: int = 0  # checked without a search: Leap's Meters search refuses their Reference ID
    failed_batches: int = 0  # Leap refused the search (4xx): those watches stay due
    publish_failures: int = 0  # events SNS did not accept: their watches stay due, republished next time
    stopped_early: bool = False  # due watches were left (time limit near, Leap unavailable): still due
    leap_failures: int = 0  # searches that failed (4xx: batch skipped; unavailable: sweep stopped)
    leap_errors: list[str] = field(default_factory=list)  # the first few, for the log

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def incomplete(self) -> bool:
        """Some due watches could not be checked, or their events not published (not a time stop)."""
        return bool(self.leap_failures or self.publish_failures)


class SweepIncomplete(Exception):
    """Raised at the end of a sweep that could not check every watch it took: Leap failed, refused
    the key or a search, or SNS did not accept some events. Everything else was done and saved, and
    the watches concerned stay due. ``summary`` says what happened; the first Leap error is the cause.
    """

    def __init__(self, summary: MeterSweepSummary) -> None:
        first = f": {summary.leap_errors[0]}" if summary.leap_errors else ""
        super().__init__(
            f"meter sweep incomplete: {summary.leap_failures} Meters search(es) failed, "
            f"{summary.publish_failures} event(s) not published; those watches stay due{first}"
        )
        self.summary = summary


_COUNTER_BY_EVENT = {
    catalog.METER_APPEARED: "appeared",
    catalog.METER_OVERDUE: "overdue",
    catalog.METER_WATCH_EXPIRED: "expired",
}


def run_sweep(
    *,
    store: WatchStore,
    meters: MeterSource,
    publisher: EventPublisher,
    settings: MeterWatchSettings,
    now: datetime,
    remaining_ms: Callable[[], int],
    pseudonyms: Pseudonyms,
) -> MeterSweepSummary:
    """Check the watches due at ``now`` until none is left or time runs short (see module doc).

    Returns the summary when every watch it took was checked (time running short is not a failure:
    the rest stays due). Raises :class:`SweepIncomplete` after doing all it could otherwise, and
    table errors as they come; what was saved before stays saved, what was not stays due. Leap's
    error texts are kept (for the log) with the batch's identifiers as their ``pseudonyms``.
    """
    now = now.replace(microsecond=0)  # the table holds instants to the second
    summary = MeterSweepSummary()
    margin_ms = settings.sweep_time_margin_seconds * 1000
    due = _once_each(store.due_watches(now))
    first_error: Exception | None = None
    while batch := list(islice(due, wire.METERS_MAX_REFERENCE_IDS)):
        if remaining_ms() < margin_ms:
            summary.stopped_early = True  # this batch and the rest stay due, untouched
            break
        summary.due += len(batch)
        try:
            _sweep_batch(batch, store, meters, publisher, settings, now, summary)
        except _STOPPING_ERRORS as exc:
            first_error = first_error or exc
            _note_error(summary, exc, batch, pseudonyms)
            summary.stopped_early = True
            break
        except LeapRequestError as exc:
            first_error = first_error or exc
            _note_error(summary, exc, batch, pseudonyms)
            summary.failed_batches += 1
    if summary.incomplete:
        raise SweepIncomplete(summary) from first_error
    return summary


def _sweep_batch(
    batch: list[MeterWatch],
    store: WatchStore,
    meters: MeterSource,
    publisher: EventPublisher,
    settings: MeterWatchSettings,
    now: datetime,
    summary: MeterSweepSummary,
) -> None:
    alive = store.existing_connections([watch.entry_id for watch in batch])
    for watch in (w for w in batch if w.entry_id not in alive):
        _save(store, watch, schedule.close_gone(watch, now), summary, counter="connection_gone")
    live = [watch for watch in batch if watch.entry_id in alive]
    if not live:
        return
    to_search = [watch for watch in live if searchable(watch.ref_id)]
    summary.unsearchable += len(live) - len(to_search)
    found = _search(meters, to_search, summary) if to_search else MatchResult()
    checked = [check(w, found.meters_by_entry.get(w.entry_id, []), now, settings) for w in live]
    for done, saved in publish_then_save(checked, store, publisher):
        if saved is Saved.NOT_PUBLISHED:
            # Not saved: the watch stays due, and the next sweep publishes the same event id again.
            summary.publish_failures += 1
        elif saved is Saved.CONFLICT:
            summary.conflicts += 1
        else:
            summary.checked += 1
            if counter := _COUNTER_BY_EVENT.get(done.outcome.publish or ""):
                setattr(summary, counter, getattr(summary, counter) + 1)


def _search(meters: MeterSource, watches: list[MeterWatch], summary: MeterSweepSummary) -> MatchResult:
    request = search_request(watches)
    summary.meter_searches += 1
    found = match_meters(
        meters.search_by_connection_references(request.reference_ids, format_instant(request.created_after)),
        watches,
    )
    summary.malformed_meters += found.malformed
    return found


def _save(
    store: WatchStore, before: MeterWatch, after: MeterWatch, summary: MeterSweepSummary, counter: str | None
) -> bool:
    if not store.replace(before, after):
        summary.conflicts += 1
        return False
    if counter:
        setattr(summary, counter, getattr(summary, counter) + 1)
    return True


def _once_each(watches: Iterable[MeterWatch]) -> Iterator[MeterWatch]:
    """Each entry id once: an eventually consistent index may still show a watch just rescheduled."""
    seen: set[str] = set()
    for watch in watches:
        if watch.entry_id not in seen:
            seen.add(watch.entry_id)
            yield watch


def _note_error(
    summary: MeterSweepSummary, exc: Exception, batch: list[MeterWatch], pseudonyms: Pseudonyms
) -> None:
    summary.leap_failures += 1
    if len(summary.leap_errors) < _MAX_ERRORS_KEPT:
        # Leap's details of a refused search may quote a Reference ID of the batch.
        text = pseudonyms.redact(
            f"{type(exc).__name__}: {exc}",
            ref_ids=[watch.ref_id for watch in batch],
            entry_ids=[watch.entry_id for watch in batch],
        )
        summary.leap_errors.append(text)
