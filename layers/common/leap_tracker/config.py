"""Configuration: the one module that reads environment variables.

Every variable has a default (listed in the README): the default of the settings field it sets, written
there only; :data:`VARIABLES` names each field's variable and how its text is read. Handlers call
:func:`load_settings` once per cold start and pass plain values down, so domain logic never reads
``os.environ``. A malformed value is a :class:`ConfigError` naming the variable, raised before any work
starts.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

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
    history_retention_days: int = 35  # a stored change's history item expires (TTL) this long after
    # A run finding the lease held by a ref_id run (one Reference ID: seconds, retries included) waits
    # this long for it rather than skip; a waiting pass makes later ref_id runs stand back.
    lease_wait_seconds: int = 180
    # A pass records its progress (the checkpoint) every this many pages, and when a run stops: one
    # control write per 20 pages; a failed run reads at most 19 pages again (idempotent).
    checkpoint_every_pages: int = 20
    # A pass the time limit cut short invokes the poller again at once to go on (docs/poller.md#
    # continuation): at most this many times in a row, then the next scheduled run takes it up.
    max_continuations: int = 4
    dynamodb_concurrency: int = 4  # a page's BatchGetItem/BatchWriteItem calls sent at once


# SQS: a message's delay is at most 15 minutes and its visibility at most 12 hours.
MAX_SQS_DELAY_SECONDS = 900
MAX_SQS_VISIBILITY_SECONDS = 43_200


@dataclass(frozen=True, slots=True)
class TargetedPollSettings:
    """Targeted polls a Connect-session webhook asks for (docs/webhooks.md#targeted-polls)."""

    delay_seconds: int = 120  # the soon poll: this long after the first request (the debounce window)
    # The second poll: this long after the soon one. Leap refreshes its Connect data hourly, so by then
    # the refresh that follows every request the soon poll covered has happened (60 min + 5 margin).
    refresh_seconds: int = 3900
    busy_retry_seconds: int = 30  # a request meeting a pass under the lease: again after this, doubling


DEFAULT_OUTREACH_CHANNELS = ("topic",)
MAX_HOLDOUT_PERCENT = 50  # more would delay most customers' first message to measure the rest
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
    webhook_secret_cache_seconds: int = 300  # Powertools parameters cache: a rotation is seen this soon
    webhook_timeout_seconds: float = 10.0  # per request; a timeout is a failure, retried through the queue
    topic_arn: str = ""
    cooldown_hours: int = 48  # between two messages to one customer
    max_attempts: int = 3  # messages per customer, all reasons together
    connect_url_pattern: str = DEFAULT_CONNECT_URL_PATTERN  # {ref_id} and {utilities}, URL-encoded
    templates_file: str = ""
    notify_other_utility: bool = False  # residential customer connected a utility not asked for
    # The measurement holdout (docs/outreach.md#holdout): this share of never-messaged customers, chosen
    # per reason by hash, get their first message holdout_hours later than the rest, so the insight
    # report can compare messaged customers with like ones not messaged yet. 0 turns it off.
    holdout_percent: int = 10
    holdout_hours: int = 168  # 7 days: the longest window the report measures


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
class InsightSettings:
    """The daily insight file (docs/insight.md)."""

    bucket: str = ""  # the stack's InsightBucket
    # History read: 35 days is the history items' own default retention (HISTORY_RETENTION_DAYS), and
    # covers a month of funnel plus the 7-day outreach windows of messages sent in its first weeks.
    window_days: int = 35


# The receiver's body bound: SQS takes 262,144 bytes a message, and a rejected body kept in the
# dead-letter queue may travel as base64 (4/3 of its size) with its attributes.
MAX_WEBHOOK_BODY_BYTES = 192_000
# Receives of an unconfirmed meter.created: WebhookQueue dead-letters at 8, so 6 leaves two for failures.
MAX_CONFIRM_ATTEMPTS = 6


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Leap's webhooks (docs/webhooks.md)."""

    # --- the receiver (docs/webhooks.md#receiver)
    secret_arn: str = ""  # the stack's WebhookSecret: the value Leap sends in secret_header
    secret_header: str = wire.DEFAULT_WEBHOOK_SECRET_HEADER
    secret_cache_seconds: int = 300  # Powertools parameters cache: a new secret is seen this soon
    queue_url: str = ""  # WebhookQueue: every accepted delivery, as received
    rejected_queue_url: str = ""  # WebhookRejectedQueue: authenticated bodies refused as malformed (400)
    max_body_bytes: int = 65_536  # a larger body is refused (413); Leap's payloads are a few hundred bytes
    # --- the processor (docs/webhooks.md#processing)
    # How long a processed delivery is remembered (its duplicates change nothing) and a confirmed meter
    # waits for its connection's completion (the watch then opens satisfied).
    retention_days: int = 30
    # An unconfirmed meter.created (Leap's Meters API lagging its own webhook) is tried again this many
    # receives in all, the first after meter_confirm_retry_seconds, doubling; then it is acknowledged and
    # the sweep reconciles. Below WebhookQueue's maxReceiveCount (8), with room for real failures.
    meter_confirm_attempts: int = 5
    meter_confirm_retry_seconds: int = 120
    poll_request_queue_url: str = ""  # PollRequestQueue: a connect_session.* webhook asks a targeted poll


@dataclass(frozen=True, slots=True)
class Settings:
    connections_table: str = ""
    events_topic_arn: str = ""
    events_topic_fifo: bool = False
    actionable_delay_minutes: int = 60  # act only on entries whose last interaction is this old
    agreement_done_statuses: frozenset[str] = wire.DEFAULT_AGREEMENT_DONE_STATUSES
    # The key of the pseudonyms in log lines and FIFO group ids (leap_tracker.privacy): a secret the
    # stack generates; LOG_HASH_KEY stands in for it in local runs only.
    log_hash_key_secret_arn: str = ""
    log_hash_key: str = field(default="", repr=False)
    leap: LeapApiSettings = field(default_factory=LeapApiSettings)
    poller: PollerSettings = field(default_factory=PollerSettings)
    targeted: TargetedPollSettings = field(default_factory=TargetedPollSettings)
    outreach: OutreachSettings = field(default_factory=OutreachSettings)
    meters: MeterWatchSettings = field(default_factory=MeterWatchSettings)
    insight: InsightSettings = field(default_factory=InsightSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)


@dataclass(frozen=True, slots=True)
class Variable:
    """The environment variable behind one settings field. Its default is the field's own, so each
    default is written once, in the dataclasses above."""

    name: str
    read: Callable[[_Env, str, Any], Any]  # (env, variable name, field default) -> value
    then: Callable[[Any], Any] | None = None  # applied to the value read or defaulted

    def value(self, env: _Env, default: Any) -> Any:
        value = self.read(env, self.name, default)
        return value if self.then is None else self.then(value)


def _text(name: str, then: Callable[[str], Any] | None = None) -> Variable:
    return Variable(name, lambda env, var, default: env.str(var, default), then)


def _url(name: str, then: Callable[[str], Any] | None = None) -> Variable:
    """An https:// URL (or empty); plain http:// only to a loopback address, for local runs."""
    return Variable(name, lambda env, var, default: _secure_url(var, env.str(var, default)), then)


def _whole(name: str, low: int | None = None, high: int | None = None) -> Variable:
    return Variable(name, lambda env, var, default: env.int(var, default, low=low, high=high))


def _number(name: str) -> Variable:
    return Variable(name, lambda env, var, default: env.float(var, default))


def _flag(name: str) -> Variable:
    return Variable(name, lambda env, var, default: env.bool(var, default))


def _names(name: str, allowed: set[str] | None = None, then: Callable[[Any], Any] | None = None) -> Variable:
    return Variable(name, lambda env, var, default: env.csv(var, default, allowed=allowed), then)


# Settings class -> {field: the variable that sets it}. The fields not listed are built by load_settings:
# connect_wire (from LEAP_CONNECT_PATH and LEAP_CONNECT_WIRE_OVERRIDES) and the nested sections.
VARIABLES: Mapping[type, Mapping[str, Variable]] = {
    LeapApiSettings: {
        "base_url": _url("LEAP_API_BASE_URL", then=lambda url: url.rstrip("/")),
        "api_key_secret_arn": _text("LEAP_API_KEY_SECRET_ARN"),
        "api_key": _text("LEAP_API_KEY"),
        "page_size": _whole("LEAP_PAGE_SIZE", low=1, high=10_000),
        "connect_timeout_seconds": _number("LEAP_CONNECT_TIMEOUT_SECONDS"),
        "read_timeout_seconds": _number("LEAP_READ_TIMEOUT_SECONDS"),
        "max_retries": _whole("LEAP_MAX_RETRIES", low=0, high=20),
        "max_retry_seconds": _number("LEAP_MAX_RETRY_SECONDS"),
        "backoff_factor": _number("LEAP_BACKOFF_FACTOR"),
        "secret_max_age_seconds": _whole("LEAP_API_KEY_CACHE_SECONDS", low=0),
    },
    PollerSettings: {
        "overlap_minutes": _whole("POLL_OVERLAP_MINUTES", low=0),
        "full_reconciliation_hours": _whole("FULL_RECONCILIATION_HOURS", low=1),
        "full_reconciliation_start": _text("FULL_RECONCILIATION_START"),
        "lease_seconds": _whole("POLLER_LEASE_SECONDS", low=60),
        "time_margin_seconds": _whole("POLLER_TIME_MARGIN_SECONDS", low=1),
        "history_retention_days": _whole("HISTORY_RETENTION_DAYS", low=1, high=3650),
        "lease_wait_seconds": _whole("POLLER_LEASE_WAIT_SECONDS", low=0, high=600),
        "checkpoint_every_pages": _whole("POLLER_CHECKPOINT_EVERY_PAGES", low=1, high=100),
        "max_continuations": _whole("POLLER_MAX_CONTINUATIONS", low=0, high=24),
        "dynamodb_concurrency": _whole("POLLER_DYNAMODB_CONCURRENCY", low=1, high=16),
    },
    TargetedPollSettings: {
        "delay_seconds": _whole("POLL_REQUEST_DELAY_SECONDS", low=0, high=MAX_SQS_DELAY_SECONDS),
        "refresh_seconds": _whole("POLL_REQUEST_REFRESH_SECONDS", low=1, high=MAX_SQS_VISIBILITY_SECONDS),
        "busy_retry_seconds": _whole("POLL_REQUEST_BUSY_RETRY_SECONDS", low=1, high=MAX_SQS_DELAY_SECONDS),
    },
    OutreachSettings: {
        "channels": _names("OUTREACH_CHANNELS", allowed={"webhook", "topic"}),
        "webhook_url": _url("OUTREACH_WEBHOOK_URL"),
        "webhook_secret_arn": _text("OUTREACH_WEBHOOK_SECRET_ARN"),
        "webhook_secret": _text("OUTREACH_WEBHOOK_SECRET"),
        "webhook_secret_cache_seconds": _whole("OUTREACH_WEBHOOK_SECRET_CACHE_SECONDS", low=0),
        "webhook_timeout_seconds": _number("OUTREACH_WEBHOOK_TIMEOUT_SECONDS"),
        "topic_arn": _text("OUTREACH_TOPIC_ARN"),
        "cooldown_hours": _whole("OUTREACH_COOLDOWN_HOURS", low=0),
        "max_attempts": _whole("OUTREACH_MAX_ATTEMPTS", low=1),
        "connect_url_pattern": _text("OUTREACH_CONNECT_URL_PATTERN"),
        "templates_file": _text("OUTREACH_TEMPLATES_FILE"),
        "notify_other_utility": _flag("OUTREACH_NOTIFY_OTHER_UTILITY"),
        "holdout_percent": _whole("OUTREACH_HOLDOUT_PERCENT", low=0, high=MAX_HOLDOUT_PERCENT),
        "holdout_hours": _whole("OUTREACH_HOLDOUT_HOURS", low=1),
    },
    MeterWatchSettings: {
        "first_check_hours": _whole("METER_FIRST_CHECK_HOURS", low=0),
        "overdue_hours": _whole("METER_OVERDUE_HOURS", low=1),
        "give_up_days": _whole("METER_GIVE_UP_DAYS", low=1),
        "retry_minutes": _whole("METER_RETRY_MINUTES", low=1),
        "max_retry_hours": _whole("METER_MAX_RETRY_HOURS", low=1),
        "overdue_retry_hours": _whole("METER_OVERDUE_RETRY_HOURS", low=1),
        "sweep_time_margin_seconds": _whole("METER_SWEEP_TIME_MARGIN_SECONDS", low=1),
    },
    InsightSettings: {
        "bucket": _text("INSIGHT_BUCKET"),
        "window_days": _whole("INSIGHT_WINDOW_DAYS", low=1, high=3650),
    },
    WebhookSettings: {
        "secret_arn": _text("WEBHOOK_SECRET_ARN"),
        "secret_header": _text("WEBHOOK_SECRET_HEADER", then=str.lower),  # header names are case-blind
        "secret_cache_seconds": _whole("WEBHOOK_SECRET_CACHE_SECONDS", low=0),
        "queue_url": _text("WEBHOOK_QUEUE_URL"),
        "rejected_queue_url": _text("WEBHOOK_REJECTED_QUEUE_URL"),
        "max_body_bytes": _whole("WEBHOOK_MAX_BODY_BYTES", low=1024, high=MAX_WEBHOOK_BODY_BYTES),
        "retention_days": _whole("WEBHOOK_RETENTION_DAYS", low=1, high=3650),
        "meter_confirm_attempts": _whole("WEBHOOK_METER_CONFIRM_ATTEMPTS", low=1, high=MAX_CONFIRM_ATTEMPTS),
        "meter_confirm_retry_seconds": _whole("WEBHOOK_METER_CONFIRM_RETRY_SECONDS", low=1, high=43_200),
        "poll_request_queue_url": _text("POLL_REQUEST_QUEUE_URL"),
    },
    Settings: {
        "connections_table": _text("CONNECTIONS_TABLE"),
        "events_topic_arn": _text("EVENTS_TOPIC_ARN"),
        "events_topic_fifo": _flag("EVENTS_TOPIC_FIFO"),
        "actionable_delay_minutes": _whole("ACTIONABLE_DELAY_MINUTES", low=0),
        "agreement_done_statuses": _names("AGREEMENT_DONE_STATUSES", then=frozenset),
        "log_hash_key_secret_arn": _text("LOG_HASH_KEY_SECRET_ARN"),
        "log_hash_key": _text("LOG_HASH_KEY"),
    },
}


def field_default(spec: Field[Any]) -> Any:
    """A dataclass field's default value (its factory called, if it has one)."""
    if spec.default is not MISSING:
        return spec.default
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    raise TypeError(f"settings field {spec.name} has no default")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every variable (see README) from ``environ`` (default: the process environment)."""
    env = _Env(os.environ if environ is None else environ)
    leap = _load(env, LeapApiSettings, connect_wire=_connect_wire(env))
    poller = _load(env, PollerSettings)
    targeted = _load(env, TargetedPollSettings)
    outreach = _load(env, OutreachSettings)
    meters = _load(env, MeterWatchSettings)
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
    insight = _load(env, InsightSettings)
    webhooks = _load(env, WebhookSettings)
    return _load(
        env,
        Settings,
        leap=leap,
        poller=poller,
        targeted=targeted,
        outreach=outreach,
        meters=meters,
        insight=insight,
        webhooks=webhooks,
    )


def _load[S](env: _Env, settings: type[S], **built: Any) -> S:
    """One settings object: each field from its variable (in field order), or from ``built``."""
    variables = VARIABLES[settings]
    values = {}
    for spec in fields(settings):  # type: ignore[arg-type]
        if spec.name in built:
            values[spec.name] = built[spec.name]
        elif spec.name in variables:
            values[spec.name] = variables[spec.name].value(env, field_default(spec))
        else:  # a new field without its line in VARIABLES: fail every load, not silently default
            raise TypeError(f"{settings.__name__}.{spec.name} has no variable in config.VARIABLES")
    return settings(**values)


def require(value: str, name: str) -> str:
    """The value of a variable a handler cannot run without."""
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


# --- transport: what may carry the Leap key and the signed outreach messages ------------------------

LOOPBACK_NAMES = frozenset({"localhost"})


def _secure_url(name: str, url: str) -> str:
    """``url`` when it is empty, https://, or http:// to a loopback host; else a ConfigError.

    The Leap key travels as a Bearer header and outreach messages carry customers' details: over
    plain http anyone on the path reads them. A loopback address never leaves the machine, which is
    what local runs (the Leap simulator, a local webhook receiver) use.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError as exc:  # e.g. an unclosed [IPv6 bracket
        raise ConfigError(f"{name} is not a URL: {exc}") from None
    if scheme == "https" and host:
        return url
    if scheme == "http" and is_loopback(host):
        return url
    found = f"an http:// URL to {host!r}" if scheme == "http" else f"scheme {scheme or 'none'!r}"
    raise ConfigError(
        f"{name} must be an https:// URL (plain http:// is allowed only to 127.0.0.1, localhost or "
        f"[::1], for local runs): found {found}"
    )


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_variables(settings: Settings) -> list[str]:
    """The URL variables set to a loopback http:// URL: fine for a local run, a mistake in AWS, so
    the handlers say so in a WARNING at each cold start."""
    urls = {
        "LEAP_API_BASE_URL": settings.leap.base_url,
        "OUTREACH_WEBHOOK_URL": settings.outreach.webhook_url,
    }
    return [name for name, url in urls.items() if urlsplit(url).scheme.lower() == "http"]


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
