"""Configuration: the one module that reads environment variables.

Every variable has a default (listed in the README); handlers call :func:`load_settings` once per cold
start and pass plain values down, so domain logic never reads ``os.environ``. A malformed value is a
:class:`ConfigError` naming the variable, raised before any work starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from leap_tracker.leap import wire


class ConfigError(ValueError):
    """A configuration variable is missing or malformed."""


@dataclass(frozen=True, slots=True)
class LeapApiSettings:
    base_url: str = wire.PRODUCTION_BASE_URL
    api_key_secret_arn: str = ""  # Secrets Manager; the secret string is the key
    api_key: str = field(default="", repr=False)  # LEAP_API_KEY: local runs only, stands in for the secret
    connect_wire: wire.ConnectWire = wire.DEFAULT_CONNECT_WIRE
    page_size: int = 500
    connect_timeout_seconds: float = 3.05
    read_timeout_seconds: float = 30.0
    max_retries: int = 5
    max_retry_seconds: float = 120.0  # total time budget for retries of one request
    backoff_factor: float = 0.5
    secret_max_age_seconds: int = 300  # Powertools parameters cache

    @property
    def environment(self) -> str:
        return wire.environment_name(self.base_url)


@dataclass(frozen=True, slots=True)
class PollerSettings:
    overlap_minutes: int = 120  # incremental polls re-read this much before the watermark
    full_reconciliation_hours: int = 24
    full_reconciliation_start: str = "2015-01-01T00:00:00Z"
    lease_seconds: int = 960  # longer than the function timeout: a live holder never loses it
    time_margin_seconds: int = 60  # stop taking new pages when less than this is left


DEFAULT_OUTREACH_CHANNELS = ("topic",)
DEFAULT_CONNECT_URL_PATTERN = "https://connect.leap.energy/?refId={ref_id}&requestedUtilities={utilities}"


@dataclass(frozen=True, slots=True)
class OutreachSettings:
    """Outreach channels and pacing (docs/outreach.md)."""

    # any of: webhook, topic. The topic is the default: the stack's queue keeps every request for the
    # partner, so a default deploy never sends outreach nowhere (the webhook needs a URL and a secret).
    channels: tuple[str, ...] = DEFAULT_OUTREACH_CHANNELS
    webhook_url: str = ""
    webhook_secret_arn: str = ""
    webhook_secret: str = field(default="", repr=False)  # OUTREACH_WEBHOOK_SECRET: local runs only
    webhook_timeout_seconds: float = 10.0  # per request; a timeout is a failure, retried through the queue
    topic_arn: str = ""
    cooldown_hours: int = 48  # between two messages to one customer
    max_attempts: int = 3  # messages per customer, all reasons together
    connect_url_pattern: str = DEFAULT_CONNECT_URL_PATTERN  # {ref_id} and {utilities}, URL-encoded
    templates_file: str = ""
    notify_other_utility: bool = False  # residential customer connected a utility not asked for


@dataclass(frozen=True, slots=True)
class MeterWatchSettings:
    """Meter watch timings, all counted from the completion's last interaction (docs/meters.md)."""

    first_check_hours: int = 24
    overdue_hours: int = 72  # meter.overdue after this long without meters (once)
    give_up_days: int = 14  # the horizon: one last check, then meter.watch_expired
    retry_minutes: int = 60  # first backoff step before overdue
    max_retry_hours: int = 12  # backoff cap before overdue
    overdue_retry_hours: int = 24  # slower pace after overdue
    sweep_time_margin_seconds: int = 30  # a sweep starts no new batch with less time than this left


@dataclass(frozen=True, slots=True)
class Settings:
    connections_table: str = ""
    events_topic_arn: str = ""
    events_topic_fifo: bool = False
    actionable_delay_minutes: int = 60  # act only on entries whose last interaction is this old
    agreement_done_statuses: frozenset[str] = wire.DEFAULT_AGREEMENT_DONE_STATUSES
    leap: LeapApiSettings = field(default_factory=LeapApiSettings)
    poller: PollerSettings = field(default_factory=PollerSettings)
    outreach: OutreachSettings = field(default_factory=OutreachSettings)
    meters: MeterWatchSettings = field(default_factory=MeterWatchSettings)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every variable (see README) from ``environ`` (default: the process environment)."""
    env = _Env(os.environ if environ is None else environ)
    leap = LeapApiSettings(
        base_url=env.str("LEAP_API_BASE_URL", wire.PRODUCTION_BASE_URL).rstrip("/"),
        api_key_secret_arn=env.str("LEAP_API_KEY_SECRET_ARN", ""),
        api_key=env.str("LEAP_API_KEY", ""),
        connect_wire=_connect_wire(env),
        page_size=env.int("LEAP_PAGE_SIZE", 500, low=1, high=10_000),
        connect_timeout_seconds=env.float("LEAP_CONNECT_TIMEOUT_SECONDS", 3.05),
        read_timeout_seconds=env.float("LEAP_READ_TIMEOUT_SECONDS", 30.0),
        max_retries=env.int("LEAP_MAX_RETRIES", 5, low=0, high=20),
        max_retry_seconds=env.float("LEAP_MAX_RETRY_SECONDS", 120.0),
        backoff_factor=env.float("LEAP_BACKOFF_FACTOR", 0.5),
        secret_max_age_seconds=env.int("LEAP_API_KEY_CACHE_SECONDS", 300, low=0),
    )
    poller = PollerSettings(
        overlap_minutes=env.int("POLL_OVERLAP_MINUTES", 120, low=0),
        full_reconciliation_hours=env.int("FULL_RECONCILIATION_HOURS", 24, low=1),
        full_reconciliation_start=env.str("FULL_RECONCILIATION_START", "2015-01-01T00:00:00Z"),
        lease_seconds=env.int("POLLER_LEASE_SECONDS", 960, low=60),
        time_margin_seconds=env.int("POLLER_TIME_MARGIN_SECONDS", 60, low=1),
    )
    outreach = OutreachSettings(
        channels=env.csv("OUTREACH_CHANNELS", DEFAULT_OUTREACH_CHANNELS, allowed={"webhook", "topic"}),
        webhook_url=env.str("OUTREACH_WEBHOOK_URL", ""),
        webhook_secret_arn=env.str("OUTREACH_WEBHOOK_SECRET_ARN", ""),
        webhook_secret=env.str("OUTREACH_WEBHOOK_SECRET", ""),
        webhook_timeout_seconds=env.float("OUTREACH_WEBHOOK_TIMEOUT_SECONDS", 10.0),
        topic_arn=env.str("OUTREACH_TOPIC_ARN", ""),
        cooldown_hours=env.int("OUTREACH_COOLDOWN_HOURS", 48, low=0),
        max_attempts=env.int("OUTREACH_MAX_ATTEMPTS", 3, low=1),
        connect_url_pattern=env.str("OUTREACH_CONNECT_URL_PATTERN", DEFAULT_CONNECT_URL_PATTERN),
        templates_file=env.str("OUTREACH_TEMPLATES_FILE", ""),
        notify_other_utility=env.bool("OUTREACH_NOTIFY_OTHER_UTILITY", False),
    )
    meters = MeterWatchSettings(
        first_check_hours=env.int("METER_FIRST_CHECK_HOURS", 24, low=0),
        overdue_hours=env.int("METER_OVERDUE_HOURS", 72, low=1),
        give_up_days=env.int("METER_GIVE_UP_DAYS", 14, low=1),
        retry_minutes=env.int("METER_RETRY_MINUTES", 60, low=1),
        max_retry_hours=env.int("METER_MAX_RETRY_HOURS", 12, low=1),
        overdue_retry_hours=env.int("METER_OVERDUE_RETRY_HOURS", 24, low=1),
        sweep_time_margin_seconds=env.int("METER_SWEEP_TIME_MARGIN_SECONDS", 30, low=1),
    )
    for name, hours in (
        ("METER_FIRST_CHECK_HOURS", meters.first_check_hours),
        ("METER_OVERDUE_HOURS", meters.overdue_hours),
    ):
        if hours >= meters.give_up_days * 24:
            # The watch would give up before this moment: meter.overdue could never be published.
            raise ConfigError(
                f"{name}={hours} must be less than METER_GIVE_UP_DAYS={meters.give_up_days} days "
                f"({meters.give_up_days * 24} h)"
            )
    return Settings(
        connections_table=env.str("CONNECTIONS_TABLE", ""),
        events_topic_arn=env.str("EVENTS_TOPIC_ARN", ""),
        events_topic_fifo=env.bool("EVENTS_TOPIC_FIFO", False),
        actionable_delay_minutes=env.int("ACTIONABLE_DELAY_MINUTES", 60, low=0),
        agreement_done_statuses=frozenset(
            env.csv("AGREEMENT_DONE_STATUSES", tuple(sorted(wire.DEFAULT_AGREEMENT_DONE_STATUSES)))
        ),
        leap=leap,
        poller=poller,
        outreach=outreach,
        meters=meters,
    )


def require(value: str, name: str) -> str:
    """The value of a variable a handler cannot run without."""
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def _connect_wire(env: _Env) -> wire.ConnectWire:
    names = wire.DEFAULT_CONNECT_WIRE
    path = env.str("LEAP_CONNECT_PATH", "")
    if path:
        names = names.with_overrides({"path": path})
    raw = env.str("LEAP_CONNECT_WIRE_OVERRIDES", "")
    if raw:
        try:
            overrides = json.loads(raw)
            if not isinstance(overrides, dict):
                raise TypeError("not a JSON object")
            names = names.with_overrides(overrides)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"LEAP_CONNECT_WIRE_OVERRIDES: {exc}") from exc
    return names


class _Env:
    """Typed reads of a mapping of strings; every error names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def str(self, name: str, default: str) -> str:
        value = self._environ.get(name)
        return default if value is None or value.strip() == "" else value.strip()

    def int(self, name: str, default: int, low: int | None = None, high: int | None = None) -> int:
        raw = self.str(name, "")
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not a whole number") from exc
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{name}={value} is outside {low}..{high}")
        return value

    def float(self, name: str, default: float) -> float:
        raw = self.str(name, "")
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not a number") from exc
        if value < 0:
            raise ConfigError(f"{name}={value} is negative")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self.str(name, "").lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name}={raw!r} is not true/false")

    def csv(self, name: str, default: tuple[str, ...], allowed: set[str] | None = None) -> tuple[str, ...]:
        raw = self.str(name, "")
        if not raw:
            return default
        values = tuple(part.strip() for part in raw.split(",") if part.strip())
        if allowed is not None and not set(values) <= allowed:
            raise ConfigError(f"{name}={raw!r}: each value must be one of {sorted(allowed)}")
        return values
