"""A stream record's images -> messages (leap_tracker.emitter.stream): what is not a snapshot the
poller writes is a clear failure of that record (NotASnapshot), whose message never names the entry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from leap_tracker import table
from leap_tracker.emitter.stream import NotASnapshot, record_messages
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import MAX_CODE_BYTES, canonical_json
from tests.builders import guide_entry

ENTRY = guide_entry("Client-7")


def image(raw: dict[str, Any] | None = ENTRY, **attributes: Any) -> dict[str, Any]:
    """A snapshot item of ``raw`` as the stream's (deserialised) image carries it; ``attributes``
    replace the item's (None: removed)."""
    item: dict[str, Any] = {
        table.PK: table.CONNECTION_PREFIX + (raw or ENTRY)[wire.ENTRY_ID],
        table.SK: table.CONNECTION_SK,
        table.CONN_SEQUENCE: Decimal(1),
    }
    if raw is not None:
        item[table.CONN_ENTRY] = table.encode_stored_entry(canonical_json(raw))
    item.update(attributes)
    return {name: value for name, value in item.items() if value is not None}


def test_a_first_snapshot_becomes_its_messages_grouped_by_entry() -> None:
    messages = record_messages(None, image())

    assert [m.entry_id for m in messages] == [ENTRY[wire.ENTRY_ID]] * len(messages)
    assert messages[0].attributes["type"] == "connection.started"


OVERSIZED_ID = "CAISO_" + "参" * 700


@pytest.mark.parametrize(
    ("new_image", "says"),
    [
        pytest.param(
            image(pk=table.CONNECTION_PREFIX + OVERSIZED_ID), "entry id is empty", id="id-oversized"
        ),
        pytest.param(image(pk=table.CONNECTION_PREFIX), "entry id is empty", id="id-empty"),
        pytest.param(image(None), "has no 'entry'", id="no-entry"),
        pytest.param(image(entry=b"not zlib"), "cannot be read", id="unreadable-entry"),
        pytest.param(image(sequence=None), "'sequence' is absent", id="no-sequence"),
        pytest.param(image(sequence=Decimal("1.5")), "not a whole number from 1", id="sequence-fraction"),
        pytest.param(image(sequence=Decimal(0)), "not a whole number from 1", id="sequence-zero"),
        pytest.param(image(sequence=Decimal("NaN")), "not a whole number from 1", id="sequence-nan"),
        pytest.param(image(sequence="7"), "(a str)", id="sequence-text"),
        pytest.param(image(sequence=True), "(a bool)", id="sequence-bool"),
        pytest.param(
            image({**ENTRY, wire.ENTRY_TRANSMISSION_REGION: "R" * (MAX_CODE_BYTES + 1)}),
            "SNS attribute transmission_region is 257 bytes",
            id="region-stored-before-codes-were-bounded",
        ),
        pytest.param(
            image({**ENTRY, wire.ENTRY_CONNECTION_STATUS: "PARTIAL\x01"}),
            "SNS attribute connection_status holds a control character",
            id="status-sns-refuses",
        ),
        pytest.param(
            image({k: v for k, v in ENTRY.items() if k != wire.ENTRY_LAST_INTERACTION}),
            "the entry cannot be diffed: KeyError",
            id="entry-without-last-interaction",
        ),
    ],
)
def test_a_record_that_is_not_a_usable_snapshot_fails_alone_without_naming_the_entry(
    new_image: dict[str, Any], says: str
) -> None:
    with pytest.raises(NotASnapshot) as refused:
        record_messages(None, new_image)

    assert says in str(refused.value)
    assert "Client-7" not in str(refused.value)  # the message is logged with the failed record
    assert len(str(refused.value)) < 200


def test_other_items_and_removals_carry_no_messages() -> None:
    assert record_messages(image(), None) == []
    assert record_messages(None, {table.PK: "WATCH#x", table.SK: table.WATCH_SK}) == []
