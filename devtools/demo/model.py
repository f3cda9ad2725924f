"""What the demo runs with and what it saw: the records the other parts pass each other."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.leap_simulator import DEFAULT_START as CAMPAIGN_START
from devtools.local_runner import PartnerMessage

DEFAULT_SEED = 22
DEFAULT_CUSTOMERS = 300
DEFAULT_DAYS = 3
# The demo joins a campaign already running for a day: the first poll finds a backlog, and customers
# who completed before the demo started can reach meter.overdue (72 h) within three simulated days.
DEFAULT_START_OFFSET_HOURS = 24
DEFAULT_CLICK_DAYS = 4  # customers open their Connect URL over this many days from the campaign start

TICK = timedelta(hours=1)  # one simulated hour per step
FILTERED_POLICY = "errors-in-caiso"  # a ready filter policy of docs/events.md, shown on a second queue

# Logical ids of template.yaml the demo needs by name (every schedule is read from the runner).
EVENTS_TOPIC = "EventsTopic"
TABLE = "ConnectionsTable"
POLLER = "PollerFunction"
EMITTER = "EmitterFunction"
OUTREACH = "OutreachFunction"
METER_SWEEP = "MeterSweepFunction"

CHANGE_FAMILIES = ("connection", "utility", "agreement")  # what the emitter publishes


# ------------------------------------------------------------------------------------ what to run


@dataclass(frozen=True, slots=True)
class DemoConfig:
    seed: int = DEFAULT_SEED
    customers: int = DEFAULT_CUSTOMERS
    days: int = DEFAULT_DAYS
    start_offset_hours: int = DEFAULT_START_OFFSET_HOURS
    click_days: int = DEFAULT_CLICK_DAYS

    @property
    def start(self) -> datetime:
        return CAMPAIGN_START + timedelta(hours=self.start_offset_hours)

    @property
    def hours(self) -> int:
        return self.days * 24


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


@dataclass(frozen=True, slots=True)
class DemoResult:
    config: DemoConfig
    report: str  # everything written to ``out``: deterministic for a given configuration
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


# ---------------------------------------------------------------------------------- what was seen


@dataclass(frozen=True, slots=True)
class Received:
    at: datetime  # the simulated hour it was collected in
    message: PartnerMessage

    @property
    def event(self) -> dict[str, Any]:
        return self.message.body


@dataclass(frozen=True, slots=True)
class Hour:
    """One simulated hour: what the poll did and what a partner saw meanwhile."""

    at: datetime
    poll: Mapping[str, Any]
    events: Counter[str]  # by type, from the unfiltered partner queue
    messages_sent: int  # verified webhook deliveries


@dataclass
class Run:
    """Everything observed during the run, plus the ground truth read at the same instants."""

    polls: list[datetime] = field(default_factory=list)
    sweeps: list[datetime] = field(default_factory=list)
    funnels: list[tuple[datetime, Counter[str], Counter[str]]] = field(default_factory=list)  # table, truth
    # the poller run's EntriesByStatus counts (the dashboard's funnel; zeros dropped), None: not counted
    counted_funnels: list[tuple[datetime, Counter[str] | None]] = field(default_factory=list)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    inbox: list[Received] = field(default_factory=list)  # the unfiltered partner queue
    filtered: list[Received] = field(default_factory=list)  # the queue with FILTERED_POLICY
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # ref id -> table snapshot, at the end
    told: int = 0  # webhook deliveries the simulator has been told of (its outreach nudges)
    sweep_searches: list[Any] = field(default_factory=list)  # the meter sweep's Meters requests to Leap
    targeted_polls: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))  # by ref id

    def polled_at(self, ref_id: str) -> list[datetime]:
        """When the table read this customer from Leap: every hourly poll and its targeted polls."""
        return sorted([*self.polls, *self.targeted_polls.get(ref_id, [])])

    @property
    def end(self) -> datetime:
        return self.polls[-1]


# ------------------------------------------------------------------------------- shared wording


def family(event_type: str) -> str:
    """connection.partial -> connection."""
    return event_type.partition(".")[0]


def clock(moment: datetime) -> str:
    """A moment as the report and the checks print it (UTC, to the minute)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
