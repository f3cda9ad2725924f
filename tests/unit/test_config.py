"""load_settings: each variable sets its one field, defaults are the settings dataclasses' own, and a
malformed or out-of-range value is a ConfigError naming the variable."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from leap_tracker.config import ConfigError, Settings, load_settings, plain_http_variables
from leap_tracker.events.diff import DiffRules
from leap_tracker.outreach.decision import OutreachPolicy

# Variable -> (section of Settings, or None for the top level; field). The names are the partner's contract.
WIRING: dict[str, tuple[str | None, str]] = {
    "LEAP_API_BASE_URL": ("leap", "base_url"),
    "LEAP_API_KEY_SECRET_ARN": ("leap", "api_key_secret_arn"),
    "LEAP_API_KEY": ("leap", "api_key"),
    "LEAP_PAGE_SIZE": ("leap", "page_size"),
    "LEAP_CONNECT_TIMEOUT_SECONDS": ("leap", "connect_timeout_seconds"),
    "LEAP_READ_TIMEOUT_SECONDS": ("leap", "read_timeout_seconds"),
    "LEAP_MAX_RETRIES": ("leap", "max_retries"),
    "LEAP_MAX_RETRY_SECONDS": ("leap", "max_retry_seconds"),
    "LEAP_BACKOFF_FACTOR": ("leap", "backoff_factor"),
    "LEAP_API_KEY_CACHE_SECONDS": ("leap", "secret_max_age_seconds"),
    "POLL_OVERLAP_MINUTES": ("poller", "overlap_minutes"),
    "FULL_RECONCILIATION_HOURS": ("poller", "full_reconciliation_hours"),
    "FULL_RECONCILIATION_START": ("poller", "full_reconciliation_start"),
    "POLLER_LEASE_SECONDS": ("poller", "lease_seconds"),
    "POLLER_TIME_MARGIN_SECONDS": ("poller", "time_margin_seconds"),
    "OUTREACH_CHANNELS": ("outreach", "channels"),
    "OUTREACH_WEBHOOK_URL": ("outreach", "webhook_url"),
    "OUTREACH_WEBHOOK_SECRET_ARN": ("outreach", "webhook_secret_arn"),
    "OUTREACH_WEBHOOK_SECRET": ("outreach", "webhook_secret"),
    "OUTREACH_WEBHOOK_TIMEOUT_SECONDS": ("outreach", "webhook_timeout_seconds"),
    "OUTREACH_TOPIC_ARN": ("outreach", "topic_arn"),
    "OUTREACH_COOLDOWN_HOURS": ("outreach", "cooldown_hours"),
    "OUTREACH_MAX_ATTEMPTS": ("outreach", "max_attempts"),
    "OUTREACH_CONNECT_URL_PATTERN": ("outreach", "connect_url_pattern"),
    "OUTREACH_TEMPLATES_FILE": ("outreach", "templates_file"),
    "OUTREACH_NOTIFY_OTHER_UTILITY": ("outreach", "notify_other_utility"),
    "METER_FIRST_CHECK_HOURS": ("meters", "first_check_hours"),
    "METER_OVERDUE_HOURS": ("meters", "overdue_hours"),
    "METER_GIVE_UP_DAYS": ("meters", "give_up_days"),
    "METER_RETRY_MINUTES": ("meters", "retry_minutes"),
    "METER_MAX_RETRY_HOURS": ("meters", "max_retry_hours"),
    "METER_OVERDUE_RETRY_HOURS": ("meters", "overdue_retry_hours"),
    "METER_SWEEP_TIME_MARGIN_SECONDS": ("meters", "sweep_time_margin_seconds"),
    "CONNECTIONS_TABLE": (None, "connections_table"),
    "EVENTS_TOPIC_ARN": (None, "events_topic_arn"),
    "EVENTS_TOPIC_FIFO": (None, "events_topic_fifo"),
    "ACTIONABLE_DELAY_MINUTES": (None, "actionable_delay_minutes"),
    "AGREEMENT_DONE_STATUSES": (None, "agreement_done_statuses"),
    "LOG_HASH_KEY_SECRET_ARN": (None, "log_hash_key_secret_arn"),
    "LOG_HASH_KEY": (None, "log_hash_key"),
    "WEBHOOK_SECRET_ARN": ("webhooks", "secret_arn"),
    "WEBHOOK_SECRET_HEADER": ("webhooks", "secret_header"),
    "WEBHOOK_SECRET_CACHE_SECONDS": ("webhooks", "secret_cache_seconds"),
    "WEBHOOK_QUEUE_URL": ("webhooks", "queue_url"),
    "WEBHOOK_REJECTED_QUEUE_URL": ("webhooks", "rejected_queue_url"),
    "WEBHOOK_MAX_BODY_BYTES": ("webhooks", "max_body_bytes"),
}
# Variables holding a URL: their test value must be one the transport rule accepts.
URLS = {"LEAP_API_BASE_URL", "OUTREACH_WEBHOOK_URL"}

# Whole-number variables: (variable, lowest accepted, highest accepted or None).
BOUNDS = [
    ("LEAP_PAGE_SIZE", 1, 10_000),
    ("LEAP_MAX_RETRIES", 0, 20),
    ("LEAP_API_KEY_CACHE_SECONDS", 0, None),
    ("POLL_OVERLAP_MINUTES", 0, None),
    ("FULL_RECONCILIATION_HOURS", 1, None),
    ("POLLER_LEASE_SECONDS", 60, None),
    ("POLLER_TIME_MARGIN_SECONDS", 1, None),
    ("OUTREACH_COOLDOWN_HOURS", 0, None),
    ("OUTREACH_MAX_ATTEMPTS", 1, None),
    ("METER_FIRST_CHECK_HOURS", 0, None),
    ("METER_OVERDUE_HOURS", 1, None),
    ("METER_GIVE_UP_DAYS", 1, None),
    ("METER_RETRY_MINUTES", 1, None),
    ("METER_MAX_RETRY_HOURS", 1, None),
    ("METER_OVERDUE_RETRY_HOURS", 1, None),
    ("METER_SWEEP_TIME_MARGIN_SECONDS", 1, None),
    ("ACTIONABLE_DELAY_MINUTES", 0, None),
    ("WEBHOOK_SECRET_CACHE_SECONDS", 0, None),
    ("WEBHOOK_MAX_BODY_BYTES", 1024, 192_000),  # 192000 as base64 still fits one SQS message
]

# Keeps the meter moments before a one-day horizon, so bounds are tested alone.
EARLY_METER_MOMENTS = {"METER_FIRST_CHECK_HOURS": "0", "METER_OVERDUE_HOURS": "1"}


def _field(settings: Settings, variable: str) -> Any:
    section, name = WIRING[variable]
    return getattr(settings if section is None else getattr(settings, section), name)


def _other_value(default: Any, variable: str = "") -> tuple[str, Any]:
    """A valid setting that differs from ``default``: (text of the variable, value it parses to)."""
    if variable in URLS:
        return "https://set-by-test.example", "https://set-by-test.example"
    match default:
        case bool():
            return str(not default).lower(), not default
        case int():
            return str(default + 1), default + 1
        case float():
            return str(default + 0.25), default + 0.25
        case str():
            return "set-by-test", "set-by-test"
        case tuple():
            return "webhook", ("webhook",)
        case frozenset():
            return " SIGNED , DONE ", frozenset({"SIGNED", "DONE"})
    raise AssertionError(f"no test value for {default!r}")


def test_every_default_is_the_settings_dataclass_default() -> None:
    assert load_settings({}) == Settings()


def test_the_domain_rules_default_to_the_configuration_defaults() -> None:
    assert DiffRules() == DiffRules.from_settings(Settings())
    assert OutreachPolicy() == OutreachPolicy.from_settings(Settings())


@pytest.mark.parametrize("variable", sorted(WIRING))
def test_each_variable_sets_its_own_field_and_nothing_else(variable: str) -> None:
    raw, expected = _other_value(_field(Settings(), variable), variable)

    loaded = load_settings({variable: raw})

    assert _field(loaded, variable) == expected
    changed = {
        key
        for key, value in dataclasses.asdict(loaded).items()
        if value != dataclasses.asdict(Settings())[key]
    }
    assert changed == {WIRING[variable][0] or WIRING[variable][1]}


def test_the_base_url_loses_its_trailing_slash() -> None:
    assert load_settings({"LEAP_API_BASE_URL": " https://api.staging.leap.energy/ "}).leap.base_url == (
        "https://api.staging.leap.energy"
    )


@pytest.mark.parametrize(("variable", "low", "high"), BOUNDS)
def test_whole_numbers_are_held_to_their_bounds(variable: str, low: int, high: int | None) -> None:
    for accepted in (low, high) if high is not None else (low,):
        loaded = load_settings({**EARLY_METER_MOMENTS, variable: str(accepted)})
        assert _field(loaded, variable) == accepted
    for refused in (low - 1, high + 1) if high is not None else (low - 1,):
        message = f"{variable}={refused} is outside {low}..{high}"
        with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
            load_settings({**EARLY_METER_MOMENTS, variable: str(refused)})


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("LEAP_PAGE_SIZE", "many", "LEAP_PAGE_SIZE='many' is not a whole number"),
        ("POLL_OVERLAP_MINUTES", "1.5", "POLL_OVERLAP_MINUTES='1.5' is not a whole number"),
        ("LEAP_READ_TIMEOUT_SECONDS", "slow", "LEAP_READ_TIMEOUT_SECONDS='slow' is not a number"),
        ("LEAP_BACKOFF_FACTOR", "-0.5", "LEAP_BACKOFF_FACTOR=-0.5 is negative"),
        ("OUTREACH_WEBHOOK_TIMEOUT_SECONDS", "-1", "OUTREACH_WEBHOOK_TIMEOUT_SECONDS=-1.0 is negative"),
        ("EVENTS_TOPIC_FIFO", "maybe", "EVENTS_TOPIC_FIFO='maybe' is not true/false"),
        (
            "OUTREACH_CHANNELS",
            "webhook,email",
            "OUTREACH_CHANNELS='webhook,email': each value must be one of ['topic', 'webhook']",
        ),
        ("LEAP_CONNECT_WIRE_OVERRIDES", "[1]", "LEAP_CONNECT_WIRE_OVERRIDES: not a JSON object"),
    ],
)
def test_a_malformed_value_is_an_error_naming_the_variable(variable: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_settings({variable: raw})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("on", True), ("0", False), ("off", False), ("No", False)],
)
def test_flags_read_the_usual_spellings(raw: str, expected: bool) -> None:
    assert load_settings({"OUTREACH_NOTIFY_OTHER_UTILITY": raw}).outreach.notify_other_utility is expected


def test_the_connect_path_overrides_the_assumed_one() -> None:
    assert load_settings({"LEAP_CONNECT_PATH": "/v2/connections"}).leap.connect_wire.path == "/v2/connections"


def test_a_blank_value_is_the_default() -> None:
    blank = dict.fromkeys(WIRING, "  ")
    assert load_settings(blank) == Settings()


# --- transport: the Leap key and the signed outreach messages never travel in clear -------------------


@pytest.mark.parametrize("variable", sorted(URLS))
@pytest.mark.parametrize(
    "url",
    [
        "https://api.staging.leap.energy",
        "HTTPS://partner.example/outreach?x=1",
        "http://127.0.0.1:8080",  # loopback: the Leap simulator, a local receiver
        "http://127.3.4.5/path",  # the whole of 127.0.0.0/8
        "http://localhost:5000/hook",
        "http://LOCALHOST",
        "http://[::1]:9000",
    ],
)
def test_https_and_loopback_http_urls_are_accepted(variable: str, url: str) -> None:
    loaded = load_settings({variable: url})

    assert _field(loaded, variable) == url


@pytest.mark.parametrize("variable", sorted(URLS))
@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("http://api.leap.energy", "an http:// URL to 'api.leap.energy'"),
        ("http://10.0.0.8:8080/hook", "an http:// URL to '10.0.0.8'"),
        ("http://127.0.0.1.attacker.example", "an http:// URL to '127.0.0.1.attacker.example'"),
        ("http://localhost.attacker.example", "an http:// URL to 'localhost.attacker.example'"),
        ("http://[::ffff:10.0.0.1]", "an http:// URL to '::ffff:10.0.0.1'"),
        ("ftp://partner.example", "scheme 'ftp'"),
        ("partner.example/hook", "scheme 'none'"),
        ("https://", "scheme 'https'"),  # no host
    ],
)
def test_any_other_url_is_an_error_naming_the_variable(variable: str, url: str, found: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({variable: url})

    assert str(refused.value) == (
        f"{variable} must be an https:// URL (plain http:// is allowed only to 127.0.0.1, localhost or "
        f"[::1], for local runs): found {found}"
    )


def test_a_url_that_does_not_parse_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^OUTREACH_WEBHOOK_URL is not a URL"):
        load_settings({"OUTREACH_WEBHOOK_URL": "http://[::1"})


def test_the_variables_on_plain_http_are_named_for_the_handlers_warning() -> None:
    local = load_settings(
        {"LEAP_API_BASE_URL": "http://127.0.0.1:9", "OUTREACH_WEBHOOK_URL": "http://[::1]:8"}
    )
    mixed = load_settings({"OUTREACH_WEBHOOK_URL": "http://localhost:8/hook"})

    assert plain_http_variables(local) == ["LEAP_API_BASE_URL", "OUTREACH_WEBHOOK_URL"]
    assert plain_http_variables(mixed) == ["OUTREACH_WEBHOOK_URL"]
    assert plain_http_variables(load_settings({})) == []


def test_the_webhook_secret_header_is_read_in_lower_case() -> None:
    """Header names are case-blind; the receiver and the registration use the one spelling."""
    assert (
        load_settings({"WEBHOOK_SECRET_HEADER": " X-Leap-Secret "}).webhooks.secret_header == "x-leap-secret"
    )
