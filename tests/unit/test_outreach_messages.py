"""Templates, the Connect URL, the ledger's keys and the outreach events (against their schemas)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from leap_tracker.events import catalog
from leap_tracker.events.publishing import to_message
from leap_tracker.leap import wire
from leap_tracker.outreach import ledger, messages
from leap_tracker.outreach.decision import (
    ALL_REASONS,
    Action,
    Because,
    History,
    OutreachPolicy,
    Trigger,
    assess,
    decide,
)
from leap_tracker.outreach.ledger import SINGLE_VARIANT
from leap_tracker.outreach.templates import (
    TemplateError,
    check_connect_url_pattern,
    connect_url,
    load_templates,
    phrase,
    template_values,
)
from leap_tracker.outreach.templates import (
    parse_templates as parse,
)
from tests.builders import (
    ACTIONABLE,
    PGE,
    SCE,
    SDGE,
    agreements,
    entry,
    snapshot,
    stalled_examples,
    utility,
)

PATTERN = "https://connect.leap.energy/?refId={ref_id}&requestedUtilities={utilities}"
NOW = ACTIONABLE + timedelta(minutes=1)


def validate(event: dict[str, Any]) -> None:
    schema = catalog.json_schema(event["type"])
    jsonschema.validate(event, schema, format_checker=jsonschema.FormatChecker())


# --- templates ----------------------------------------------------------------------------------


def test_the_defaults_cover_every_reason_and_render_every_placeholder() -> None:
    templates = load_templates()

    assert set(templates.by_reason) == set(ALL_REASONS)
    values = {
        name: f"<{name}>"
        for name in (
            "ref_id",
            "connect_url",
            "utility_name",
            "utility_names",
            "error_code",
            "agreements",
            "other_utility_name",
            "attempt",
        )
    }
    for reason in ALL_REASONS:
        rendered = templates.render(reason, values)
        assert rendered.subject
        assert "$" not in rendered.subject
        assert "<connect_url>" in rendered.body, reason  # every message carries the link to retry


def test_a_partner_file_replaces_some_reasons_and_keeps_the_rest(tmp_path: Path) -> None:
    custom = tmp_path / "templates.json"
    custom.write_text(
        json.dumps(
            {
                "_note": "ours",
                "not_started": {"subject": "Hello ${ref_id}", "body": "Go: ${connect_url} (costs $$0)"},
            }
        )
    )

    templates = load_templates(str(custom))

    rendered = templates.render("not_started", {"ref_id": "R1", "connect_url": "https://x"})
    assert (rendered.subject, rendered.body) == ("Hello R1", "Go: https://x (costs $0)")
    kept = templates.by_reason["agreement_pending"][SINGLE_VARIANT]
    default = load_templates().by_reason["agreement_pending"][SINGLE_VARIANT]
    assert (kept.subject.template, kept.body.template) == (default.subject.template, default.body.template)


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("[]", "must be a JSON object"),
        ("{", "not JSON"),
        ('{"not_startd": {"subject": "a", "body": "b"}}', "unknown reason 'not_startd'"),
        ('{"not_started": {"subject": "a"}}', "needs a non-empty 'body'"),
        (
            '{"not_started": {"subject": "${customer_name}", "body": "b"}}',
            "unknown placeholder(s) ['customer_name']",
        ),
        ('{"not_started": {"subject": "costs $5", "body": "b"}}', "malformed placeholder"),
    ],
)
def test_a_bad_templates_file_fails_loudly(document: str, complaint: str) -> None:
    with pytest.raises(TemplateError, match=None) as error:
        parse(document, "partner.json")
    assert complaint in str(error.value)


def test_a_missing_templates_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="OUTREACH_TEMPLATES_FILE"):
        load_templates(str(tmp_path / "nope.json"))


# --- the Connect URL ----------------------------------------------------------------------------


def test_the_connect_url_encodes_the_reference_id_and_the_requested_utilities() -> None:
    url = connect_url(PATTERN, "ref 1&x", [SDGE, SCE])

    assert url == (
        "https://connect.leap.energy/?refId=ref%201%26x"
        "&requestedUtilities=SDG%26E%3A%20San%20Diego%20Gas%20%26%20Electric,"
        "SCE%3A%20Southern%20California%20Edison"
    )


def test_the_retry_url_asks_for_the_same_required_utilities() -> None:
    snap = snapshot(entry(wire.CONNECTION_PARTIAL, [utility(SDGE), utility(PGE, required=False)]))

    assert (
        messages.retry_url("https://p/{ref_id}?u={utilities}", snap)
        == "https://p/Test1012?u=SDG%26E%3A%20San%20Diego%20Gas%20%26%20Electric"
    )


@pytest.mark.parametrize(
    "pattern",
    [
        "https://x/?id={ref}",
        "https://x/?id={ref_id!r}",
        "https://x/?id={ref_id:>5}",
        "https://x/{",
        "https://x/",
    ],
)
def test_a_bad_url_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(TemplateError):
        check_connect_url_pattern(pattern)


def test_phrases() -> None:
    assert [phrase([]), phrase(["a"]), phrase(["a", "b"]), phrase(["a", "b", "c"])] == [
        "",
        "a",
        "a and b",
        "a, b and c",
    ]


def test_template_values_name_the_agreements_for_people() -> None:
    need = assess(
        entry(
            wire.CONNECTION_PARTIAL,
            [utility(status=wire.UTILITY_CONNECTED)],
            {**agreements("PENDING", "PENDING"), "new_form_status": "SENT"},
        )
    )

    values = template_values(need, "R1", "https://x", 1)

    assert values["agreements"] == (
        "demand response participation agreement, new form and prohibited resource attestation"
    )


# --- ledger keys --------------------------------------------------------------------------------


def test_keys_and_ids_are_stable_and_distinct() -> None:
    first = ledger.dedupe_key("not_started", "abc", 1)

    assert first == "not_started#abc#1"
    assert ledger.webhook_id("E1", first) == ledger.webhook_id("E1", first)
    assert ledger.webhook_id("E1", first).startswith("msg_")
    assert (
        len(
            {
                ledger.webhook_id("E1", first),
                ledger.webhook_id("E2", first),
                ledger.webhook_id("E1", ledger.dedupe_key("not_started", "abc", 2)),
            }
        )
        == 3
    )
    assert ledger.suppression_key("completed", None, "abc") == "completed#-#abc"


@pytest.mark.parametrize(
    ("recorded", "delivered", "configured", "channels"),
    [
        pytest.param(("webhook",), set(), ("webhook",), ("webhook",), id="new-claim"),
        pytest.param(
            ("webhook", "topic"), {"topic"}, ("webhook", "topic"), ("webhook", "topic"), id="partly"
        ),
        pytest.param(
            ("webhook", "topic"), {"webhook", "topic"}, ("webhook",), ("webhook", "topic"), id="done"
        ),
        pytest.param(("webhook",), {"webhook"}, ("webhook", "topic"), ("webhook",), id="done-then-added"),
        pytest.param(
            ("webhook", "topic"), {"topic"}, ("webhook",), ("webhook", "topic"), id="partly-removed"
        ),
        pytest.param(("webhook",), set(), ("topic",), ("topic",), id="undelivered-replaced"),
    ],
)
def test_a_claimed_message_goes_to_the_recorded_channels_once_complete_else_the_configured(
    recorded: tuple[str, ...], delivered: set[str], configured: tuple[str, ...], channels: tuple[str, ...]
) -> None:
    assert ledger.message_channels(recorded, frozenset(delivered), configured) == channels


# --- events -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", sorted(stalled_examples()))
def test_requested_sent_and_suppressed_events_match_their_schemas(reason: str) -> None:
    snap = snapshot(stalled_examples()[reason], sequence=4)
    result = decide(snap, History(), OutreachPolicy(), NOW, Trigger.EVENT)
    assert (result.action, result.need.reason) == (Action.SEND, reason)

    message = messages.requested_message(snap, result, load_templates(), PATTERN, NOW)
    sent = messages.sent_event(message, ["webhook"], NOW, snap.sequence)

    for event in (message.event, sent):
        validate(event)
        assert event["subject"] == snap.ref_id
        assert event["sequence"] == "000000000004"
    data = message.event["data"]
    assert data["reason"] == reason
    assert data["attempt"] == 1
    assert data["reminder"] is False
    assert data["webhook_id"] == ledger.webhook_id(snap.entry_id, str(result.dedupe_key))
    assert data["connect_url"] in data["body"]
    assert json.loads(message.body) == message.event
    assert sent["data"]["message_id"] == message.event["id"]


def test_event_ids_are_deterministic_per_message() -> None:
    snap = snapshot(stalled_examples()["not_started"])
    result = decide(snap, History(), OutreachPolicy(), NOW, Trigger.EVENT)

    first = messages.requested_message(snap, result, load_templates(), PATTERN, NOW)
    again = messages.requested_message(snap, result, load_templates(), PATTERN, NOW)

    assert first.body == again.body


def test_message_attributes_let_partners_filter_outreach() -> None:
    snap = snapshot(stalled_examples()["utility_error.USER_CANCELED"])
    result = decide(snap, History(), OutreachPolicy(), NOW, Trigger.EVENT)
    message = messages.requested_message(snap, result, load_templates(), PATTERN, NOW)

    attributes = to_message(message.event, snap.entry_id).attributes

    assert attributes == {
        "type": "outreach.requested",
        "connection_status": "ERROR",
        "transmission_region": "CAISO",
        "error_code": "USER_CANCELED",
    }


def test_a_suppression_event_says_why_and_when_it_may_go() -> None:
    snap = snapshot(stalled_examples()["not_started"])
    history = History(attempts=1, last_sent_at=NOW - timedelta(hours=2), last_reason="x", last_state="y")
    result = decide(snap, history, OutreachPolicy(), NOW, Trigger.EVENT)
    assert result.because is Because.COOLDOWN

    event = messages.suppressed_event(snap, result, history.attempts, NOW)

    validate(event)
    assert event["data"]["suppressed_because"] == "cooldown"
    assert event["data"]["next_attempt_at"] == "2025-03-07T07:01:00Z"


def test_a_completed_suppression_has_no_reason() -> None:
    snap = snapshot(entry(wire.CONNECTION_COMPLETED, [utility(status=wire.UTILITY_CONNECTED)]))
    result = decide(snap, History(), OutreachPolicy(), NOW, Trigger.EVENT)

    event = messages.suppressed_event(snap, result, 0, NOW)

    validate(event)
    assert (event["data"]["reason"], event["data"]["suppressed_because"]) == (None, "completed")
