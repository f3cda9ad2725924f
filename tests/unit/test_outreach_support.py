"""Builders shared by the outreach tests (this module holds no tests)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import canonical_json, content_hash
from leap_tracker.outreach.decision import Snapshot
from leap_tracker.timeutil import format_instant

SDGE = "SDG&E: San Diego Gas & Electric"
SCE = "SCE: Southern California Edison"
PGE = "PG&E: Pacific Gas and Electric"
LAST_INTERACTION = datetime(2025, 3, 5, 8, 0, 0, tzinfo=UTC)
ACTIONABLE = LAST_INTERACTION + timedelta(hours=1)


def utility(
    name: str = SDGE,
    status: str = wire.UTILITY_NOT_CONNECTED,
    required: bool = True,
    error_code: str | None = None,
) -> dict[str, Any]:
    return {
        wire.UTILITY_AUTHORIZATION_UUID: f"uuid-{name[:3]}",
        wire.UTILITY_NAME: name,
        wire.UTILITY_IS_REQUIRED: required,
        wire.UTILITY_STATUS: status,
        wire.UTILITY_ERROR_CODE: error_code,
        wire.UTILITY_START: "2025-03-05T07:50:00Z",
        wire.UTILITY_LAST_INTERACTION: format_instant(LAST_INTERACTION),
    }


def agreements(
    prohibited: str | None = wire.AGREEMENT_NOT_REQUIRED, dr: str | None = wire.AGREEMENT_NOT_REQUIRED
):
    return {
        wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION: prohibited,
        wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION: dr,
    }


def entry(
    status: str,
    utilities: list[dict[str, Any]] | None = None,
    agreement_statuses: dict[str, Any] | None = None,
    ref_id: str = "Test1012",
    last_interaction: datetime = LAST_INTERACTION,
) -> dict[str, Any]:
    return {
        wire.ENTRY_ID: f"CAISO_62631455-9dfd-433b-9482-fd043f2336d4_{ref_id}",
        wire.ENTRY_TRANSMISSION_REGION: "CAISO",
        wire.ENTRY_REF_ID: ref_id,
        wire.ENTRY_START: "2025-03-05T07:50:00Z",
        wire.ENTRY_LAST_INTERACTION: format_instant(last_interaction),
        wire.ENTRY_CONNECTION_STATUS: status,
        wire.ENTRY_UTILITY_CONNECTIONS: utilities if utilities is not None else [],
        wire.ENTRY_AGREEMENTS: agreement_statuses if agreement_statuses is not None else agreements(),
    }


def snapshot(raw: dict[str, Any], sequence: int = 1) -> Snapshot:
    """The snapshot the poller would store for ``raw`` (same canonical JSON and content hash)."""
    return Snapshot(copy.deepcopy(raw), content_hash(canonical_json(raw)), sequence)


def stalled_examples() -> dict[str, dict[str, Any]]:
    """One entry per stage a customer can stall at, named by the reason it should get."""
    return {
        "not_started": entry(wire.CONNECTION_NOT_STARTED, ref_id="NotStarted1"),
        "utility_not_connected": entry(wire.CONNECTION_PARTIAL, [utility()], ref_id="NotConnected1"),
        "utility_error.USER_CANCELED": entry(
            wire.CONNECTION_ERROR,
            [utility(status=wire.UTILITY_ERROR, error_code=wire.ERROR_USER_CANCELED)],
            ref_id="Canceled1",
        ),
        "utility_error.unknown": entry(
            wire.CONNECTION_ERROR,
            [utility(status=wire.UTILITY_ERROR, error_code="SOMETHING_NEW")],
            ref_id="NewCode1",
        ),
        "agreement_pending": entry(
            wire.CONNECTION_PARTIAL,
            [utility(status=wire.UTILITY_CONNECTED)],
            agreements(prohibited="PENDING", dr="SIGNED"),
            ref_id="Agreement1",
        ),
    }
