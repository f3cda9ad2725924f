"""Property tests of the diff over random histories of one entry.

A consumer that folds the events of every change, in order, must end with the entry's final
connection status, utility states (status, error code) and agreement states. Ids are deterministic
and unique, and a change that enters nothing emits nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.events import catalog
from leap_tracker.events.diff import agreement_is_required, change_events
from leap_tracker.leap import wire

STATUS_BY_CONNECTION_TYPE = {t: s for s, t in catalog.CONNECTION_TYPE_BY_STATUS.items()}
STATUS_BY_UTILITY_TYPE = {t: s for s, t in catalog.UTILITY_TYPE_BY_STATUS.items()}
DONE = wire.DEFAULT_AGREEMENT_DONE_STATUSES

# A pool of utilities with fixed, distinct names; the uuid may be missing at first and appear later.
UTILITY_NAMES = ("SDG&E", "PG&E", "SCE", "ComEd")
AGREEMENT_NAMES = (*wire.KNOWN_AGREEMENTS, "future_agreement_status")

connection_statuses = st.sampled_from([*sorted(wire.KNOWN_CONNECTION_STATUSES), "EXPIRED"])
utility_statuses = st.sampled_from([*sorted(wire.KNOWN_UTILITY_STATUSES), "REVOKED"])
error_codes = st.sampled_from([None, *sorted(wire.KNOWN_ERROR_CODES), "NEW_CODE"])
agreement_values = st.sampled_from([None, "NOT_REQUIRED", "PENDING", "SENT", *sorted(DONE)])


@st.composite
def utility_state(draw: st.DrawFn, name: str, position: int) -> dict[str, Any]:
    has_uuid = draw(st.booleans())
    return {
        wire.UTILITY_AUTHORIZATION_UUID: f"uuid-{position}" if has_uuid else None,
        wire.UTILITY_NAME: name,
        wire.UTILITY_IS_REQUIRED: draw(st.booleans()),
        wire.UTILITY_STATUS: draw(utility_statuses),
        wire.UTILITY_ERROR_CODE: draw(error_codes),
    }


@st.composite
def snapshot(draw: st.DrawFn, minute: int) -> dict[str, Any]:
    utilities = []
    for position, name in enumerate(UTILITY_NAMES):
        if draw(st.booleans()):
            utilities.append(draw(utility_state(name, position)))
    agreements = {}
    for name in AGREEMENT_NAMES:
        value = draw(agreement_values)
        if value is not None:
            agreements[name] = value
    entry: dict[str, Any] = {
        wire.ENTRY_ID: "PJM_7c1d_ref-42",
        wire.ENTRY_REF_ID: "ref-42",
        wire.ENTRY_TRANSMISSION_REGION: "PJM",
        wire.ENTRY_START: "2025-01-01T00:00:00Z",
        wire.ENTRY_LAST_INTERACTION: f"2025-01-01T{minute // 60 % 24:02d}:{minute % 60:02d}:00Z",
        wire.ENTRY_CONNECTION_STATUS: draw(connection_statuses),
        wire.ENTRY_UTILITY_CONNECTIONS: draw(st.permutations(utilities)),
        wire.ENTRY_AGREEMENTS: agreements,
    }
    if draw(st.booleans()):
        entry["note"] = draw(st.sampled_from(["a", "b"]))  # a field no rule looks at
    return entry


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Snapshots of one entry; some repeat the previous one, some only move timestamps."""
    count = draw(st.integers(min_value=1, max_value=8))
    history: list[dict[str, Any]] = []
    for minute in range(count):
        choice = draw(st.sampled_from(["new", "new", "same", "touched"]))
        if history and choice == "same":
            history.append(copy.deepcopy(history[-1]))
        elif history and choice == "touched":
            history.append(
                {**copy.deepcopy(history[-1]), wire.ENTRY_LAST_INTERACTION: f"2025-01-02T00:{minute:02d}:00Z"}
            )
        else:
            history.append(draw(snapshot(minute)))
    return history


@dataclass
class ConsumerState:
    """What a partner can know from the events alone (no peeking at data.connection)."""

    connection_status: str | None = None
    utilities: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    agreements: dict[str, Any] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> None:
        kind, data = event["type"], event["data"]
        if kind in STATUS_BY_CONNECTION_TYPE:
            self.connection_status = STATUS_BY_CONNECTION_TYPE[kind]
        elif kind == catalog.CONNECTION_OTHER_STATUS:
            self.connection_status = data["connection"][wire.ENTRY_CONNECTION_STATUS]
            assert self.connection_status not in wire.KNOWN_CONNECTION_STATUSES
        elif kind == catalog.UTILITY_REMOVED:
            del self.utilities[data["utility"][wire.UTILITY_NAME]]
        elif kind.startswith("utility."):
            utility = data["utility"]
            status = utility[wire.UTILITY_STATUS]
            assert STATUS_BY_UTILITY_TYPE.get(kind, status) == status
            assert (kind == catalog.UTILITY_OTHER_STATUS) == (status not in wire.KNOWN_UTILITY_STATUSES)
            self.utilities[utility[wire.UTILITY_NAME]] = (status, utility[wire.UTILITY_ERROR_CODE])
        elif kind == catalog.AGREEMENT_NOT_REQUIRED:
            self.agreements.pop(data["agreement"]["name"])
        elif kind.startswith("agreement."):
            status = data["agreement"]["status"]
            assert (kind == catalog.AGREEMENT_COMPLETED) == (status in DONE)
            self.agreements[data["agreement"]["name"]] = status
        else:
            assert kind == catalog.CONNECTION_STARTED


def state_of(entry: dict[str, Any]) -> ConsumerState:
    return ConsumerState(
        connection_status=entry[wire.ENTRY_CONNECTION_STATUS],
        utilities={
            u[wire.UTILITY_NAME]: (u[wire.UTILITY_STATUS], u[wire.UTILITY_ERROR_CODE])
            for u in entry[wire.ENTRY_UTILITY_CONNECTIONS]
        },
        agreements={n: s for n, s in entry[wire.ENTRY_AGREEMENTS].items() if agreement_is_required(s)},
    )


def emit(history: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The events of each stored change (sequence 1, 2, ...)."""
    return [change_events(history[i - 1] if i else None, entry, i + 1) for i, entry in enumerate(history)]


@settings(max_examples=200, deadline=None)
@given(histories())
def test_events_applied_in_order_reproduce_the_final_state(history: list[dict[str, Any]]) -> None:
    consumer = ConsumerState()
    for events in emit(history):
        for event in events:
            consumer.apply(event)

    assert consumer == state_of(history[-1])


@settings(max_examples=100, deadline=None)
@given(histories())
def test_ids_are_deterministic_and_unique_and_events_carry_their_change(
    history: list[dict[str, Any]],
) -> None:
    emitted = emit(history)
    ids = [event["id"] for events in emitted for event in events]

    assert ids == [event["id"] for events in emit(copy.deepcopy(history)) for event in events]
    assert len(set(ids)) == len(ids)
    for i, events in enumerate(emitted):
        for event in events:
            assert event["sequence"] == catalog.format_sequence(i + 1)
            assert event["data"]["connection"] == history[i]
            assert event["subject"] == history[i][wire.ENTRY_REF_ID]


@settings(max_examples=100, deadline=None)
@given(histories())
def test_a_change_emits_events_exactly_when_it_enters_a_state(history: list[dict[str, Any]]) -> None:
    for i, events in enumerate(emit(history)):
        if i == 0:
            assert events[0]["type"] == catalog.CONNECTION_STARTED
            continue
        entered_something = state_of(history[i]) != state_of(history[i - 1])
        assert bool(events) == entered_something
        if history[i] == history[i - 1]:
            assert events == []
