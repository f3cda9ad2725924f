"""What outreach takes from a queue message (leap_tracker.outreach.service.entry_id_of): the entry id,
checked for type and size before it reaches a key; anything else is InvalidEvent for that record."""

from __future__ import annotations

from typing import Any

import pytest

from leap_tracker import table
from leap_tracker.outreach.service import InvalidEvent, entry_id_of
from tests.builders import guide_entry

ENTRY = guide_entry("Client-7")
EVENT = {"type": "connection.partial", "subject": "Client-7", "data": {"connection": ENTRY}}


def with_id(entry_id: Any) -> dict[str, Any]:
    return {**EVENT, "data": {"connection": {**ENTRY, "id": entry_id}}}


def test_the_entry_id_of_a_change_event() -> None:
    assert entry_id_of(EVENT) == ENTRY["id"]
    assert entry_id_of(with_id("x" * table.MAX_ENTRY_ID_BYTES)) == "x" * table.MAX_ENTRY_ID_BYTES


@pytest.mark.parametrize(
    ("event", "says"),
    [
        pytest.param([EVENT], "the message is list, not a CloudEvent object", id="list"),
        pytest.param("connection.partial", "the message is str", id="text"),
        pytest.param(None, "the message is NoneType", id="null"),
        pytest.param({"type": "meter.appeared", "data": {}}, "type meter.appeared", id="no-connection"),
        pytest.param({"type": "x" * 10_000, "data": "x"}, "type xxxx", id="data-not-object-long-type"),
        pytest.param({**EVENT, "data": {"connection": "x"}}, "not a connection change event", id="text-conn"),
        pytest.param(with_id(None), "data.connection.id is not a non-empty string", id="no-id"),
        pytest.param(with_id(42), "data.connection.id is not a non-empty string", id="number"),
        pytest.param(with_id(""), "data.connection.id is not a non-empty string", id="empty"),
        pytest.param(with_id("x" * (table.MAX_ENTRY_ID_BYTES + 1)), "2038 bytes of UTF-8", id="one-over"),
        pytest.param(with_id("参" * 700), "2100 bytes of UTF-8, over the 2037-byte limit", id="cjk"),
        pytest.param(with_id("CAISO_\ud800"), "not valid Unicode text", id="surrogate"),
    ],
)
def test_a_message_without_a_usable_entry_id_is_an_invalid_event_that_names_no_id(
    event: Any, says: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        entry_id_of(event)

    assert says in str(refused.value)
    assert len(str(refused.value)) < 120  # logged with the rejected record: never grows with the input
    assert "Client-7" not in str(refused.value)
