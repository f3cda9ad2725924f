"""A seeded population of Leap Connect customers whose every state is a pure function of (seed, time).

Each customer gets its own ``random.Random`` seeded from (seed, index), so any one journey can be
rebuilt on demand without generating the others. A journey is a short script: the click, utility
login attempts (each leaving the utility CONNECTED, NOT_CONNECTED or in ERROR with a code), agreement
signatures, and, once COMPLETED, the moment its meters appear in Meters v2. Replaying the script up
to an instant gives the Connect entry at that instant. Times are whole UTC epoch seconds.
"""

from __future__ import annotations

import hashlib
import random
import re
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from leap_tracker.leap import wire

HOUR = 3600
DAY = 24 * HOUR
PENDING = "PENDING"
SIGNED = "SIGNED"
UNKNOWN_ERROR_CODE = "ACCOUNT_LOCKED"  # not in wire.KNOWN_ERROR_CODES on purpose: the open-set path

# (code, weight): mostly the known codes, plus one Leap may send that we do not know.
ERROR_CODE_WEIGHTS = (
    (wire.ERROR_USER_CANCELED, 35),
    (wire.ERROR_INVALID_CREDENTIALS, 25),
    (wire.ERROR_MFA_FAILED, 15),
    (wire.ERROR_UTILITY_UNAVAILABLE, 15),
    (UNKNOWN_ERROR_CODE, 10),
)


@dataclass(frozen=True, slots=True)
class Utility:
    connect_name: str  # as the Connect API shows it
    meters_code: str  # Meters v2 ``utility_name`` enum value


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    utilities: tuple[Utility, ...]
    state: str
    cities: tuple[str, ...]
    zip_prefix: str


REGIONS: tuple[Region, ...] = (
    Region(
        "CAISO",
        (
            Utility("PG&E: Pacific Gas & Electric", "PGE"),
            Utility("SCE: Southern California Edison", "SCE"),
            Utility("SDG&E: San Diego Gas & Electric", "SDGE"),
            Utility("SMUD: Sacramento Municipal Utility District", "SMUD"),
        ),
        "CA",
        ("San Diego", "Fresno", "Oakland", "Sacramento"),
        "9",
    ),
    Region(
        "ERCOT",
        (
            Utility("Oncor Electric Delivery", "ONCOR"),
            Utility("CenterPoint Energy", "CENTERPOINT"),
            Utility("AEP Texas Central", "AEP_CENTRAL"),
            Utility("TNMP: Texas-New Mexico Power", "TNMP"),
        ),
        "TX",
        ("Dallas", "Houston", "Corpus Christi", "Austin"),
        "7",
    ),
    Region(
        "NYISO",
        (
            Utility("Con Edison: Consolidated Edison", "CECONY"),
            Utility("O&R: Orange & Rockland", "ORU"),
            Utility("PSEG Long Island", "PSEGLI"),
        ),
        "NY",
        ("New York", "Yonkers", "Hempstead"),
        "1",
    ),
    Region(
        "ISONE",
        (
            Utility("Eversource", "EVERSOURCE"),
            Utility("National Grid", "NATGRID"),
            Utility("Unitil", "UNITIL"),
        ),
        "MA",
        ("Boston", "Worcester", "Lowell"),
        "0",
    ),
    Region(
        "PJM",
        (
            Utility("ComEd: Commonwealth Edison", "COMED"),
            Utility("BGE: Baltimore Gas & Electric", "BGE"),
            Utility("PECO Energy", "PECO"),
            Utility("PSE&G: Public Service Electric & Gas", "PSEG"),
        ),
        "PA",
        ("Philadelphia", "Pittsburgh", "Allentown"),
        "1",
    ),
)
_REGION_BY_NAME = {region.name: region for region in REGIONS}
_METERS_CODE = {u.connect_name: u.meters_code for region in REGIONS for u in region.utilities}


def utility_code(connect_name: str) -> str:
    """The utility's enum value (Meters v2 ``utility_name``, webhooks' ``utility_name``): PGE, SCE..."""
    return _METERS_CODE.get(connect_name, connect_name)


@dataclass(frozen=True, slots=True)
class Attempt:
    """The customer tried a utility's login; the utility is left in ``status``."""

    at: int
    utility: str
    required: bool
    status: str
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class Signature:
    at: int
    agreement: str


Step = Attempt | Signature


@dataclass(frozen=True, slots=True)
class Timeline:
    """What happens to one customer and when (cheap to draw: the population indexes these)."""

    region: str
    commercial: bool
    required: tuple[str, ...]  # Connect utility names, in the Connect URL's order
    attestation_required: bool
    clicked_at: int
    steps: tuple[Step, ...]  # in time order, all after the click
    completed_at: int | None
    meters_at: int | None  # None: never completed, or completed but its meters never appear

    @property
    def change_times(self) -> tuple[int, ...]:
        return (self.clicked_at, *(step.at for step in self.steps))


@dataclass(frozen=True, slots=True)
class Journey:
    """A timeline plus the identifiers and address the wire shows (drawn only when rendering)."""

    index: int
    ref_id: str
    timeline: Timeline
    entry_uuid: str
    authorization_uuids: dict[str, str]
    meter_ids: tuple[tuple[str, str], ...]  # (meter uuid, Connect utility name)
    address: tuple[str, str, str]  # street, city, postal code

    @property
    def entry_id(self) -> str:
        return f"{self.timeline.region}_{self.entry_uuid}_{self.ref_id}"


class Population:
    """``customers`` journeys drawn from ``seed``, clicks spread over [start, start + click_window)."""

    def __init__(
        self, seed: int, customers: int, start: int, click_window: int, ref_prefix: str = "ref-"
    ) -> None:
        self.seed = seed
        self.size = customers
        self.start = start
        self.click_window = max(1, click_window)
        self.ref_prefix = ref_prefix
        self._ref_pattern = re.compile(re.escape(ref_prefix) + r"(\d{6,})")
        # One stream per customer, so any journey can be rebuilt alone; the base spreads seeds apart.
        self._seed_base = int.from_bytes(hashlib.sha256(f"leap-sim/{seed}".encode()).digest()[:8]) << 32
        self._drawn = lru_cache(maxsize=8192)(self._draw_journey)
        self._replaced: dict[int, Journey] = {}  # journeys changed after the draw (outreach nudges)
        indexed = self._index_change_times()
        self._clicked_at, self._change_times, self._change_offsets, self._meters_at = indexed

    # --- lookups ------------------------------------------------------------------------------

    def ref_id(self, index: int) -> str:
        return f"{self.ref_prefix}{index:06d}"

    def index_of(self, ref_id: str) -> int | None:
        match = self._ref_pattern.fullmatch(ref_id)
        if not match:
            return None
        index = int(match.group(1))
        return index if index < self.size and self.ref_id(index) == ref_id else None

    def journey(self, index: int) -> Journey:
        return self._replaced.get(index) or self._drawn(index)

    def replace_timeline(self, index: int, timeline: Timeline) -> None:
        """From now on the customer follows ``timeline`` (the caller keeps its past as it was)."""
        self._replaced[index] = replace(self.journey(index), timeline=timeline)

    def clicked_at(self, index: int) -> int:
        return self._clicked_at[index]

    def change_times(self, index: int) -> Sequence[int]:
        """The click and every step's time, in order (from the compact index unless replaced)."""
        if index in self._replaced:
            return self._replaced[index].timeline.change_times
        return self._change_times[self._change_offsets[index] : self._change_offsets[index + 1]]

    def meters_at(self, index: int) -> int | None:
        """When the customer's meters appear in Meters v2; None if they never do."""
        if index in self._replaced:
            return self._replaced[index].timeline.meters_at
        moment = self._meters_at[index]
        return None if moment < 0 else moment

    def last_change_at(self, index: int, t: int) -> int | None:
        """The latest change at or before ``t`` (None before the click), from the compact index."""
        if index in self._replaced:
            times = self._replaced[index].timeline.change_times
            position = bisect_right(times, t)
            return times[position - 1] if position else None
        low, high = self._change_offsets[index], self._change_offsets[index + 1]
        position = bisect_right(self._change_times, t, low, high)
        return self._change_times[position - 1] if position > low else None

    # --- rendering ----------------------------------------------------------------------------

    def entry_at(self, index: int, t: int) -> dict[str, Any] | None:
        if self._clicked_at[index] > t:
            return None
        return render_entry(self.journey(index), t)

    def visible_meters(self, index: int, t: int) -> list[dict[str, Any]]:
        journey = self.journey(index)
        meters_at = journey.timeline.meters_at
        if meters_at is None or meters_at > t:
            return []
        return [render_meter(journey, meter_id, utility) for meter_id, utility in journey.meter_ids]

    # --- generation ---------------------------------------------------------------------------

    def _index_change_times(self) -> tuple[array[int], array[int], array[int], array[int]]:
        """Click, change and meter times of every journey in flat arrays: a few bytes per customer."""
        clicked, times, offsets, meters = array("q"), array("q"), array("q", [0]), array("q")
        for index in range(self.size):
            timeline = self._draw_timeline(self._rng(index))
            clicked.append(timeline.clicked_at)
            times.extend(timeline.change_times)
            offsets.append(len(times))
            meters.append(-1 if timeline.meters_at is None else timeline.meters_at)
        return clicked, times, offsets, meters

    def _rng(self, index: int) -> random.Random:
        return random.Random(self._seed_base + index)

    def _draw_timeline(self, rng: random.Random) -> Timeline:
        region = rng.choice(REGIONS)
        commercial = rng.random() < 0.2
        required = _draw_required(rng, region, commercial)
        clicked_at = self.start + int(rng.random() * self.click_window)
        script = _Script(rng, region, required, commercial, clicked_at)
        script.play()
        return Timeline(
            region=region.name,
            commercial=commercial,
            required=required,
            attestation_required=script.attestation_required,
            clicked_at=clicked_at,
            steps=tuple(script.steps),
            completed_at=script.completed_at,
            meters_at=_draw_meters_delay(rng, script.completed_at),
        )

    def _draw_journey(self, index: int) -> Journey:
        rng = self._rng(index)
        timeline = self._draw_timeline(rng)  # same draws as the index, then the identifiers
        region = _REGION_BY_NAME[timeline.region]
        attempted = {step.utility for step in timeline.steps if isinstance(step, Attempt)}
        others = sorted(attempted - set(timeline.required))
        per_utility = (lambda: _between(rng, 1, 2)) if timeline.commercial else (lambda: 1)
        return Journey(
            index=index,
            ref_id=self.ref_id(index),
            timeline=timeline,
            entry_uuid=_uuid(rng),
            authorization_uuids={name: _uuid(rng) for name in (*timeline.required, *others)},
            meter_ids=tuple(
                (_uuid(rng), utility) for utility in timeline.required for _ in range(per_utility())
            ),
            address=(
                f"{_between(rng, 1, 9999)} {rng.choice(('Oak', 'Main', 'Elm', 'Pine', 'Cedar'))} Street",
                rng.choice(region.cities),
                f"{region.zip_prefix}{int(rng.random() * 10_000):04d}",
            ),
        )


class _Script:
    """Draws one customer's steps: who stalls, who errs, who recovers, who completes and when."""

    def __init__(
        self, rng: random.Random, region: Region, required: tuple[str, ...], commercial: bool, clicked: int
    ) -> None:
        self.rng = rng
        self.region = region
        self.required = required
        self.commercial = commercial
        self.t = clicked
        self.steps: list[Step] = []
        self.completed_at: int | None = None
        self.attestation_required = commercial or rng.random() < 0.3

    def play(self) -> None:
        rng = self.rng
        fate = rng.random()
        if fate < 0.10:
            return  # clicked, never logged in: NOT_STARTED for good
        self.t += _first_login_delay(rng)
        if not self.commercial and rng.random() < 0.10:
            self._other_utility(wire.UTILITY_NOT_CONNECTED)  # a stray click on a second utility
        if fate < 0.18:
            self._attempt(self.required[0], wire.UTILITY_NOT_CONNECTED)  # gave up mid-login: PARTIAL
        elif fate < 0.28:
            self._connect_all(failing=int(rng.random() * len(self.required)), recovers=False)
        elif fate < 0.45:
            self._connect_all(failing=int(rng.random() * len(self.required)), recovers=True)
            self._sign()
        elif fate < 0.50:
            self._connect_all()  # utilities connected, agreements never signed: PARTIAL
        elif fate < 0.55 and not self.commercial:
            self._other_utility(wire.UTILITY_CONNECTED)  # connected a utility not asked for: PARTIAL
        else:
            self._connect_all()
            self._sign()

    def _connect_all(self, failing: int | None = None, recovers: bool = True) -> None:
        for position, utility in enumerate(self.required):
            if position == failing:
                self._attempt(utility, wire.UTILITY_ERROR, _draw_error_code(self.rng))
                if not recovers:
                    return
                if self.rng.random() < 0.3:  # a second failure before it works
                    self._later(2 * HOUR, 72 * HOUR)
                    self._attempt(utility, wire.UTILITY_ERROR, _draw_error_code(self.rng))
                self._later(2 * HOUR, 72 * HOUR)
            self._attempt(utility, wire.UTILITY_CONNECTED)
            self._later(120, 900)

    def _sign(self) -> None:
        if self.rng.random() < 0.25:
            self._later(HOUR, 36 * HOUR)  # the agreements wait: PARTIAL with every utility CONNECTED
        self._later(60, 600)
        self.steps.append(Signature(self.t, wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION))
        if self.attestation_required:
            self._later(60, 600)
            self.steps.append(Signature(self.t, wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION))
        self.completed_at = self.t

    def _other_utility(self, status: str) -> None:
        others = [u.connect_name for u in self.region.utilities if u.connect_name not in self.required]
        self.steps.append(Attempt(self.t, self.rng.choice(others), False, status))
        self._later(60, 600)

    def _attempt(self, utility: str, status: str, error_code: str | None = None) -> None:
        self.steps.append(Attempt(self.t, utility, True, status, error_code))

    def _later(self, low: int, high: int) -> None:
        self.t += _between(self.rng, low, high)


def _between(rng: random.Random, low: int, high: int) -> int:
    """A whole number in [low, high]; ``randint`` is three times slower and this runs 100,000s of times."""
    return low + int(rng.random() * (high - low + 1))


def _draw_required(rng: random.Random, region: Region, commercial: bool) -> tuple[str, ...]:
    names = [u.connect_name for u in region.utilities]
    count = rng.choices((1, 2, 3), weights=(2, 6, 2))[0] if commercial else 1
    return tuple(rng.sample(names, count))


def _first_login_delay(rng: random.Random) -> int:
    draw = rng.random()
    if draw < 0.7:
        return _between(rng, 60, 20 * 60)
    if draw < 0.9:
        return _between(rng, HOUR, 48 * HOUR)
    return _between(rng, 2 * DAY, 7 * DAY)


def _draw_meters_delay(rng: random.Random, completed_at: int | None) -> int | None:
    draw = rng.random()
    if completed_at is None or draw >= 0.9:
        return None
    if draw < 0.75:
        return completed_at + _between(rng, 20 * HOUR, 30 * HOUR)
    return completed_at + _between(rng, 3 * DAY, 10 * DAY)


_ERROR_CODES, _ERROR_WEIGHTS = zip(*ERROR_CODE_WEIGHTS, strict=True)


def _draw_error_code(rng: random.Random) -> str:
    return rng.choices(_ERROR_CODES, weights=_ERROR_WEIGHTS)[0]


def _uuid(rng: random.Random) -> str:
    """A random (version 4) UUID drawn from ``rng``, so it is reproducible."""
    value = rng.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48) | (0x4000 << 64) | (0x8000 << 48)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# --- rendering (the wire shapes) ------------------------------------------------------------------


def render_entry(journey: Journey, t: int) -> dict[str, Any]:
    """The Connect entry as Leap would serve it at ``t`` (t at or after the click)."""
    timeline = journey.timeline
    utilities: dict[str, dict[str, Any]] = {
        name: _utility(journey, name, True, timeline.clicked_at) for name in timeline.required
    }
    agreements = dict.fromkeys(wire.KNOWN_AGREEMENTS, wire.AGREEMENT_NOT_REQUIRED)
    last = timeline.clicked_at
    for step in timeline.steps:
        if step.at > t:
            break
        last = step.at
        if isinstance(step, Attempt):
            _apply_attempt(journey, utilities, agreements, step)
        else:
            agreements[step.agreement] = SIGNED
    listed = list(utilities.values())
    return {
        wire.ENTRY_ID: journey.entry_id,
        wire.ENTRY_TRANSMISSION_REGION: timeline.region,
        wire.ENTRY_REF_ID: journey.ref_id,
        wire.ENTRY_START: wire_instant(timeline.clicked_at),
        wire.ENTRY_LAST_INTERACTION: wire_instant(last),
        wire.ENTRY_CONNECTION_STATUS: connection_status(listed, agreements),
        wire.ENTRY_UTILITY_CONNECTIONS: listed,
        wire.ENTRY_AGREEMENTS: agreements,
    }


def _utility(journey: Journey, name: str, required: bool, at: int) -> dict[str, Any]:
    return {
        wire.UTILITY_AUTHORIZATION_UUID: journey.authorization_uuids[name],
        wire.UTILITY_NAME: name,
        wire.UTILITY_IS_REQUIRED: required,
        wire.UTILITY_STATUS: wire.UTILITY_NOT_CONNECTED,
        wire.UTILITY_ERROR_CODE: None,
        wire.UTILITY_START: wire_instant(at),
        wire.UTILITY_LAST_INTERACTION: wire_instant(at),
    }


def _apply_attempt(
    journey: Journey, utilities: dict[str, dict[str, Any]], agreements: dict[str, str], step: Attempt
) -> None:
    utility = utilities.get(step.utility)
    if utility is None:
        utility = utilities[step.utility] = _utility(journey, step.utility, step.required, step.at)
    utility[wire.UTILITY_STATUS] = step.status
    utility[wire.UTILITY_ERROR_CODE] = step.error_code
    utility[wire.UTILITY_LAST_INTERACTION] = wire_instant(step.at)
    if all(value == wire.AGREEMENT_NOT_REQUIRED for value in agreements.values()):
        # Agreements turn up once a utility is picked (and stay NOT_REQUIRED if they do not apply).
        agreements[wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION] = PENDING
        if journey.timeline.attestation_required:
            agreements[wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION] = PENDING


def connection_status(utilities: list[dict[str, Any]], agreements: dict[str, str]) -> str:
    """The top-level status the utilities and agreements imply (the simulator's reading of Leap's rules).

    Picking a utility is what turns the agreements from NOT_REQUIRED to PENDING, so "no agreement
    required yet" means the customer has not logged into any utility: NOT_STARTED.
    """
    required = [u for u in utilities if u[wire.UTILITY_IS_REQUIRED]]
    if any(u[wire.UTILITY_STATUS] == wire.UTILITY_ERROR for u in required):
        return wire.CONNECTION_ERROR
    if all(value == wire.AGREEMENT_NOT_REQUIRED for value in agreements.values()):
        return wire.CONNECTION_NOT_STARTED
    connected = all(u[wire.UTILITY_STATUS] == wire.UTILITY_CONNECTED for u in required)
    signed = all(value in (wire.AGREEMENT_NOT_REQUIRED, SIGNED) for value in agreements.values())
    return wire.CONNECTION_COMPLETED if required and connected and signed else wire.CONNECTION_PARTIAL


def render_meter(journey: Journey, meter_id: str, utility: str) -> dict[str, Any]:
    """One Meters v2 meter (the required fields of the spec's meter schema, plus the useful ones)."""
    timeline = journey.timeline
    street, city, postal_code = journey.address
    created = wire_instant(timeline.meters_at or 0)
    return {
        wire.METER_ID: meter_id,
        "is_archived": False,
        "transmission_region": timeline.region,
        "customer_classification": "COMMERCIAL" if timeline.commercial else "RESIDENTIAL",
        "meter_type": "UTILITY_METER",
        wire.METER_CONNECTION_REFERENCES: [journey.ref_id],
        "customer": {
            "street_1": street,
            "city": city,
            "postal_code": postal_code,
            "state_or_province_code": _REGION_BY_NAME[timeline.region].state,
            "country_code": "US",
        },
        wire.METER_UTILITY: {
            "utility_name": _METERS_CODE[utility],
            "electric_service_account_number": f"{journey.index:08d}-{meter_id[:4]}",
        },
        wire.METER_AUDIT: {"created_by": "LEAP", wire.METER_AUDIT_CREATED_AT: created, "updated_at": created},
    }


def wire_instant(epoch_seconds: int) -> str:
    """Like ``format_instant`` (the wire form), a few times faster: rendering formats ~10 per entry."""
    day, second = divmod(epoch_seconds, DAY)
    return f"{_date(day)}T{second // HOUR:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"


@lru_cache(maxsize=4096)
def _date(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")
