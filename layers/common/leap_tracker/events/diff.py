"""The diff: one stored change of a Leap entry (previous and new snapshot) -> the catalog events it implies.

Pure: data in, data out. The rules (docs/events.md repeats them for partners):

- An event says a status was ENTERED. A write that enters nothing (same entry, or only timestamps or
  other fields changed) emits nothing.
- First seen (no previous snapshot): ``connection.started``, then every event the entry's current state
  implies, as if it were diffed against an empty entry (every utility absent, every agreement
  NOT_REQUIRED). So an entry first seen COMPLETED also emits ``connection.completed``.
- ``connection.<status>`` when ``connection_status`` changes; a status this version does not know gives
  ``connection.other_status`` (the value is in ``data.connection``), never a crash.
- ``utility.<status>`` per utility whose ``status`` or ``error_code`` changed (a new utility enters its
  status); an unknown status gives ``utility.other_status``; a utility no longer listed gives
  ``utility.removed`` with its last state. Utilities are matched by ``authorization_uuid``, else by
  ``utility_name`` (a utility that gains its uuid stays the same utility).
- Per agreement whose status changed: ``agreement.completed`` on entering a done status,
  ``agreement.pending`` on entering any other status but NOT_REQUIRED, ``agreement.not_required`` on
  going back to NOT_REQUIRED or disappearing. Absent and NOT_REQUIRED are the same state.
- Order within one change: started, connection, utilities (in Leap's list order, then removed ones),
  agreements (by name): the order of Leap's own guide (status, then utilities, then agreements).
- Every event of the change carries the new snapshot (``data.connection``), the previous values of the
  top-level fields that changed (``data.previous``), ``time`` = the entry's last interaction and
  ``actionable_at`` = last interaction + the actionable delay: the same input always gives the same
  events, ids included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from leap_tracker.config import Settings
from leap_tracker.events import catalog
from leap_tracker.leap import wire
from leap_tracker.timeutil import format_instant, parse_instant

Entry = Mapping[str, Any]
Event = dict[str, Any]


_DEFAULTS = Settings()  # the rules' defaults are the configuration's, written once in config.py


@dataclass(frozen=True, slots=True)
class DiffRules:
    """The configurable parts of the diff (from Settings)."""

    actionable_delay: timedelta = timedelta(minutes=_DEFAULTS.actionable_delay_minutes)
    agreement_done_statuses: frozenset[str] = _DEFAULTS.agreement_done_statuses

    @classmethod
    def from_settings(cls, settings: Settings) -> DiffRules:
        return cls(
            actionable_delay=timedelta(minutes=settings.actionable_delay_minutes),
            agreement_done_statuses=settings.agreement_done_statuses,
        )


DEFAULT_RULES = DiffRules()


def change_events(
    old: Entry | None, new: Entry, sequence: int, rules: DiffRules = DEFAULT_RULES
) -> list[Event]:
    """The events of one stored change of an entry (``old`` is None when it is first seen)."""
    if old == new:
        return []
    change = _Change(new, sequence, changed_fields(old, new), rules)
    before: Entry = old or {}
    events = [change.event(catalog.CONNECTION_STARTED)] if old is None else []
    events += _connection_events(before, new, change)
    events += _utility_events(before, new, change)
    events += _agreement_events(before, new, change, rules.agreement_done_statuses)
    return events


def changed_fields(old: Entry | None, new: Entry) -> dict[str, Any]:
    """The previous value of every top-level field that differs (None when it was absent)."""
    if old is None:
        return {}
    return {name: old.get(name) for name in sorted({*old, *new}) if old.get(name) != new.get(name)}


def utility_identity(utility: Mapping[str, Any]) -> str:
    return utility.get(wire.UTILITY_AUTHORIZATION_UUID) or utility.get(wire.UTILITY_NAME) or ""


def match_utilities(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[Mapping[str, Any] | None, Mapping[str, Any]]], list[Mapping[str, Any]]]:
    """Pair each new utility with its previous state (None if new); also return the ones gone.

    By ``authorization_uuid`` first; the rest by ``utility_name`` in list order, because a utility may
    be listed before Leap gives it an authorization uuid.
    """
    unmatched = list(old)
    by_uuid = {u[wire.UTILITY_AUTHORIZATION_UUID]: u for u in old if u.get(wire.UTILITY_AUTHORIZATION_UUID)}
    pairs: list[tuple[Mapping[str, Any] | None, Mapping[str, Any]]] = []
    for utility in new:
        previous = by_uuid.get(utility.get(wire.UTILITY_AUTHORIZATION_UUID) or "")
        if previous is None or not _contains(unmatched, previous):
            previous = next(
                (u for u in unmatched if u.get(wire.UTILITY_NAME) == utility.get(wire.UTILITY_NAME)), None
            )
        if previous is not None:
            _remove(unmatched, previous)
        pairs.append((previous, utility))
    return pairs, unmatched


def agreement_is_required(status: Any) -> bool:
    return status is not None and status != wire.AGREEMENT_NOT_REQUIRED


# --- internals ------------------------------------------------------------------------------------


class _Change:
    """What every event of one change shares."""

    def __init__(self, new: Entry, sequence: int, previous: dict[str, Any], rules: DiffRules) -> None:
        last_interaction = parse_instant(new[wire.ENTRY_LAST_INTERACTION])
        self.entry_id: str = new[wire.ENTRY_ID]
        self.subject: str = new[wire.ENTRY_REF_ID]
        self.sequence = sequence
        self.time = format_instant(last_interaction)
        self.data = {
            "connection": dict(new),
            "previous": previous,
            "actionable_at": format_instant(last_interaction + rules.actionable_delay),
        }
        self._discriminators: set[tuple[str, str]] = set()

    def event(self, event_type: str, discriminator: str = "", **data: Any) -> Event:
        return catalog.build_event(
            event_type,
            entry_id=self.entry_id,
            subject=self.subject,
            sequence=self.sequence,
            time=self.time,
            data={**self.data, **data},
            discriminator=self._unique(event_type, discriminator),
        )

    def _unique(self, event_type: str, discriminator: str) -> str:
        """Two utilities may share a name without a uuid: suffix repeats so ids stay distinct."""
        candidate, n = discriminator, 1
        while (event_type, candidate) in self._discriminators:
            n += 1
            candidate = f"{discriminator}#{n}"
        self._discriminators.add((event_type, candidate))
        return candidate


def _connection_events(old: Entry, new: Entry, change: _Change) -> list[Event]:
    status = new.get(wire.ENTRY_CONNECTION_STATUS)
    if status == old.get(wire.ENTRY_CONNECTION_STATUS):
        return []
    return [change.event(catalog.CONNECTION_TYPE_BY_STATUS.get(status, catalog.CONNECTION_OTHER_STATUS))]


def _utility_events(old: Entry, new: Entry, change: _Change) -> list[Event]:
    pairs, removed = match_utilities(_utilities(old), _utilities(new))
    events = []
    for previous, utility in pairs:
        if previous is not None and _utility_state(previous) == _utility_state(utility):
            continue
        status = utility.get(wire.UTILITY_STATUS)
        event_type = catalog.UTILITY_TYPE_BY_STATUS.get(status, catalog.UTILITY_OTHER_STATUS)
        events.append(change.event(event_type, utility_identity(utility), utility=dict(utility)))
    events += [
        change.event(catalog.UTILITY_REMOVED, utility_identity(gone), utility=dict(gone)) for gone in removed
    ]
    return events


def _agreement_events(old: Entry, new: Entry, change: _Change, done: frozenset[str]) -> list[Event]:
    before, after = _agreements(old), _agreements(new)
    events = []
    for name in sorted({*before, *after}):
        was, now = before.get(name), after.get(name)
        if was == now or not (agreement_is_required(was) or agreement_is_required(now)):
            continue
        if not agreement_is_required(now):
            event_type = catalog.AGREEMENT_NOT_REQUIRED
        elif isinstance(now, str) and now in done:
            event_type = catalog.AGREEMENT_COMPLETED
        else:
            event_type = catalog.AGREEMENT_PENDING
        events.append(change.event(event_type, name, agreement={"name": name, "status": now}))
    return events


def _utilities(entry: Entry) -> list[Mapping[str, Any]]:
    return list(entry.get(wire.ENTRY_UTILITY_CONNECTIONS) or [])


def _agreements(entry: Entry) -> Mapping[str, Any]:
    return entry.get(wire.ENTRY_AGREEMENTS) or {}


def _utility_state(utility: Mapping[str, Any]) -> tuple[Any, Any]:
    return utility.get(wire.UTILITY_STATUS), utility.get(wire.UTILITY_ERROR_CODE)


def _contains(items: list[Mapping[str, Any]], item: Mapping[str, Any]) -> bool:
    return any(candidate is item for candidate in items)


def _remove(items: list[Mapping[str, Any]], item: Mapping[str, Any]) -> None:
    """Remove by identity: two utilities can be equal dicts and still be two utilities."""
    del items[next(i for i, candidate in enumerate(items) if candidate is item)]
