"""The webhook receiver's rules (leap_tracker.webhooks.intake): authentication by the secret header,
the size bound, JSON and shape checks, and the queue messages; table-driven, then properties
(hypothesis), then the shape checks against ``jsonschema`` on the same shapes rendered as a schema."""

from __future__ import annotations

import base64
import json
import re
import string
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.leap import wire
from leap_tracker.webhooks import intake
from leap_tracker.webhooks.intake import Accepted, IntakeRules, Refused
from tests.builders import WEBHOOK_SAMPLE_PAYLOADS, webhook_delivery

SECRET = "s3cretValueOf40LettersAndDigits000000000"
PREVIOUS = "thePreviousVersionOfTheSecret00000000000"
HEADERS = {wire.DEFAULT_WEBHOOK_SECRET_HEADER: SECRET, "content-type": "application/json"}
RECEIVED = datetime(2025, 1, 6, 9, 30, 15, 123456, tzinfo=UTC)
REFERENCE = "customer-0001"


def encoded(document: Any) -> bytes:
    return json.dumps(document).encode()


def call(
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    secrets: tuple[str, ...] = (SECRET,),
    rules: IntakeRules | None = None,
) -> Accepted | Refused:
    given = HEADERS if headers is None else headers
    return intake.receive(method, given, body, secrets, rules or IntakeRules())


# --- authentication ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "secrets", "accepted"),
    [
        ({"x-api-key": SECRET}, (SECRET,), True),
        ({"X-API-Key": SECRET}, (SECRET,), True),  # header names are case-blind
        ({"x-api-key": f" {SECRET} "}, (SECRET,), True),  # surrounding blanks are not the value
        ({"x-api-key": PREVIOUS}, (SECRET, PREVIOUS), True),  # during a rotation
        ({"x-api-key": SECRET}, (SECRET, PREVIOUS), True),
        ({"x-api-key": PREVIOUS}, (SECRET,), False),  # after it
        ({"x-api-key": SECRET.upper()}, (SECRET,), False),  # values are not case-blind
        ({"x-api-key": SECRET[:-1]}, (SECRET,), False),
        ({"x-api-key": SECRET + "0"}, (SECRET,), False),
        ({"x-api-key": ""}, (SECRET,), False),
        ({"x-api-key": ""}, ("",), False),  # an empty secret never matches, not even an empty value
        ({"x-api-key": "é" + SECRET}, (SECRET,), False),  # not ASCII: compared as bytes, no crash
        ({"authorization": SECRET}, (SECRET,), False),  # the value in another header
        ({}, (SECRET,), False),
        ({"x-api-key": SECRET}, (), False),  # no accepted value at all
    ],
)
def test_only_an_accepted_secret_in_the_secret_header_authenticates(
    headers: dict[str, str], secrets: tuple[str, ...], accepted: bool
) -> None:
    outcome = call(encoded(webhook_delivery()), headers, secrets=secrets)

    assert isinstance(outcome, Accepted) is accepted
    if not accepted:
        assert outcome == Refused(401, outcome.reason)


def test_the_secret_header_name_is_configurable() -> None:
    rules = IntakeRules(secret_header="x-leap-secret")
    body = encoded(webhook_delivery())

    assert isinstance(call(body, {"X-Leap-Secret": SECRET}, rules=rules), Accepted)
    assert call(body, {"x-api-key": SECRET}, rules=rules) == Refused(401, "no x-leap-secret header")


def test_a_missing_and_a_wrong_secret_are_told_apart_in_the_reason_without_the_value() -> None:
    missing = call(b"{}", {})
    wrong = call(b"{}", {"x-api-key": "guess"})

    assert missing == Refused(401, "no x-api-key header")
    assert wrong == Refused(401, "the x-api-key value matches no accepted secret")
    assert "guess" not in wrong.reason


# --- order of the rules, size, method -----------------------------------------------------------


def test_the_method_is_checked_first_then_the_secret_then_the_size_then_the_body() -> None:
    big = b"x" * (intake.DEFAULT_MAX_BODY_BYTES + 1)

    assert call(big, {}, method="GET").status == 405
    assert call(big, {}).status == 401  # a stranger learns nothing about size limits
    assert call(big).status == 413
    assert call(b"not json").status == 400


@pytest.mark.parametrize("method", ["post", "POST"])
def test_post_in_any_case_is_taken(method: str) -> None:
    assert isinstance(call(encoded(webhook_delivery()), method=method), Accepted)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS", ""])
def test_every_other_method_is_405(method: str) -> None:
    assert call(encoded(webhook_delivery()), method=method) == Refused(405, "only POST is accepted")


def test_the_body_bound_is_inclusive_and_configurable() -> None:
    rules = IntakeRules(max_body_bytes=2048)
    document = webhook_delivery(padding="")
    room = rules.max_body_bytes - len(encoded(document))
    exactly = encoded(webhook_delivery(padding="p" * room))
    over = encoded(webhook_delivery(padding="p" * (room + 1)))

    assert len(exactly) == 2048
    assert isinstance(call(exactly, rules=rules), Accepted)
    assert call(over, rules=rules) == Refused(413, "the body has 2049 bytes, more than the 2048 accepted")


# --- the body: JSON and the envelope -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "the body is not JSON"),
        (b"{", "the body is not JSON"),
        (b"\xff\xfe{}", "the body is not UTF-8 text"),
        (b'{"a": NaN}', "the body is not JSON"),
        ('{"a": "\ufffe"}'.encode(), "the body holds characters an SQS message cannot carry"),
        (b"[]", "the body is not a JSON object"),
        (b'"text"', "the body is not a JSON object"),
        (encoded({"payload": {"webhook_event_type": "meter.created"}}), "webhook_event_id: missing"),
        (encoded(webhook_delivery(event_id="not-a-uuid")), "webhook_event_id: not a UUID string"),
        (
            encoded(webhook_delivery(event_id=f"{'0' * 8}-0000-0000-0000-{'0' * 12}\n")),
            "webhook_event_id: not",
        ),
        (encoded({**webhook_delivery(), "webhook_event_id": 7}), "webhook_event_id: not a UUID string"),
        (encoded({"webhook_event_id": "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11"}), "payload: missing or not"),
        (encoded({**webhook_delivery(), "payload": []}), "payload: missing or not an object"),
        (encoded({**webhook_delivery(), "payload": {}}), "payload.webhook_event_type: missing or not"),
        (encoded(webhook_delivery(event_type="")), "payload.webhook_event_type: missing or not a string"),
        (encoded(webhook_delivery(webhook_event_type=3)), "payload.webhook_event_type: missing or not"),
        (encoded(webhook_delivery(event_type="t" * 129)), "payload.webhook_event_type: longer than 128"),
    ],
)
def test_a_body_that_is_not_a_delivery_is_400(body: bytes, reason: str) -> None:
    outcome = call(body)

    assert isinstance(outcome, Refused)
    assert (outcome.status, outcome.reason[: len(reason)]) == (400, reason)


@pytest.mark.parametrize("event_type", wire.WEBHOOK_EVENT_TYPES)
def test_each_known_type_is_accepted_and_known(event_type: str) -> None:
    body = encoded(webhook_delivery(event_type))

    assert call(body) == Accepted("0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11", event_type, True, body.decode())


def test_an_unknown_type_is_accepted_with_only_the_envelope_checked() -> None:
    body = encoded(webhook_delivery("meter.deleted", meter_id="anything", extra={"nested": [1, 2]}))

    assert call(body) == Accepted(
        "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11", "meter.deleted", False, body.decode()
    )


def test_fields_the_file_does_not_list_pass_unchecked() -> None:
    assert isinstance(call(encoded(webhook_delivery(audit={"created_at": 1}, note=None))), Accepted)


# --- the known types' fields ---------------------------------------------------------------------

MC, CS, AU = (
    wire.WEBHOOK_METER_CREATED,
    wire.WEBHOOK_CONNECT_SESSION_UPDATED,
    wire.WEBHOOK_AUTHORIZATION_UPDATED,
)
GS, PS = wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS, wire.WEBHOOK_ENROLLMENT_PARTICIPATION
RA, GR = wire.WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS, wire.WEBHOOK_ENROLLMENT_GROUP
ACTION = WEBHOOK_SAMPLE_PAYLOADS[RA]["required_actions"]["partner"][0]


@pytest.mark.parametrize(
    ("event_type", "fields", "reason"),
    [
        (MC, {"meter_id": None}, "meter.created: payload.meter_id: missing"),
        (MC, {"meter_id": "5af2968d"}, "meter.created: payload.meter_id: not a UUID string"),
        (MC, {"transmission_region": None}, "meter.created: payload.transmission_region: missing"),
        (MC, {"transmission_region": 1}, "meter.created: payload.transmission_region: not a string"),
        (MC, {"partner_reference": "ab"}, "meter.created: payload.partner_reference: not a Reference ID"),
        (MC, {"partner_reference": "a" * 257}, "meter.created: payload.partner_reference: not a Reference"),
        (MC, {"partner_reference": "cust/1"}, "meter.created: payload.partner_reference: not a Reference"),
        (MC, {"meter_type": ["SUBMETER"]}, "meter.created: payload.meter_type: not a string"),
        (CS, {"partner_reference": None}, "connect_session.updated: payload.partner_reference: missing"),
        (CS, {"status": None}, "connect_session.updated: payload.status: missing"),
        (AU, {"utility_name": None}, "connect_session.authorization_updated: payload.utility_name: missing"),
        (AU, {"status": True}, "connect_session.authorization_updated: payload.status: not a string"),
        (GS, {"global_enrollment_status": None}, f"{GS}: payload.global_enrollment_status: missing"),
        (PS, {"start_time": None}, f"{PS}: payload.start_time: missing"),
        (PS, {"start_time": "soon"}, f"{PS}: payload.start_time: not a date-time string"),
        (PS, {"end_time": 1738368000}, f"{PS}: payload.end_time: not a date-time string"),
        (PS, {"participation_preference": None}, f"{PS}: payload.participation_preference: missing"),
        (RA, {"required_actions": None}, f"{RA}: payload.required_actions: missing"),
        (RA, {"required_actions": []}, f"{RA}: payload.required_actions: not an object"),
        (RA, {"required_actions": {"partner": {}}}, f"{RA}: payload.required_actions.partner: not a list"),
        (RA, {"required_actions": {"partner": [1]}}, f"{RA}: payload.required_actions.partner[0]: not an"),
        (
            RA,
            {"required_actions": {"partner": [ACTION, {**ACTION, "action_code": None}]}},
            f"{RA}: payload.required_actions.partner[1].action_code: missing",
        ),
        (
            RA,
            {"required_actions": {"partner": [{**ACTION, "enrollment_deadline_date_time": "tomorrow"}]}},
            f"{RA}: payload.required_actions.partner[0].enrollment_deadline_date_time: not a date-time",
        ),
        (GR, {"meter_ids": None}, f"{GR}: payload.meter_ids: missing"),
        (GR, {"meter_ids": "5af2968d-2652-4ebf-9057-b831102a94ef"}, f"{GR}: payload.meter_ids: not a list"),
        (GR, {"meter_ids": ["5af2968d"]}, f"{GR}: payload.meter_ids: not a list of UUID strings"),
        (GR, {"market_group_id": None}, f"{GR}: payload.market_group_id: missing"),
        (GR, {"end_date_time": None}, f"{GR}: payload.end_date_time: missing"),
    ],
)
def test_a_known_type_with_a_field_wrong_or_missing_is_400(
    event_type: str, fields: dict[str, Any], reason: str
) -> None:
    outcome = call(encoded(webhook_delivery(event_type, **fields)))

    assert isinstance(outcome, Refused)
    assert (outcome.status, outcome.reason[: len(reason)]) == (400, reason)


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [
        (MC, {"partner_reference": None, "meter_type": None}),  # optional: absent
        (GS, {"partner_reference": REFERENCE, "meter_type": "DEVICE"}),
        (PS, {"end_time": "2025-03-01T00:00:00+01:00"}),  # an offset
        (PS, {"start_time": "2025-02-01T00:00:00"}),  # no offset: UTC, as everywhere in the product
        (RA, {"required_actions": {}}),  # no actions asked of the partner
        (RA, {"required_actions": {"partner": []}}),
        (GR, {"meter_ids": []}),
        (MC, {"transmission_region": "MISO"}),  # a region Leap adds later: a string is enough
        (CS, {"status": "ARCHIVED"}),  # a status Leap adds later
        (MC, {"meter_id": "5AF2968D-2652-4EBF-9057-B831102A94EF"}),
    ],
)
def test_optional_fields_may_be_absent_and_values_are_checked_by_type_not_enumeration(
    event_type: str, fields: dict[str, Any]
) -> None:
    assert isinstance(call(encoded(webhook_delivery(event_type, **fields))), Accepted)


def test_an_optional_field_sent_as_null_counts_as_absent() -> None:
    document = webhook_delivery(MC)
    document["payload"]["partner_reference"] = None

    assert isinstance(call(encoded(document)), Accepted)


def test_no_reason_ever_shows_a_value_of_the_body() -> None:
    reference = "secret-customer-42/x"  # a refused Reference ID
    bodies = [
        encoded(webhook_delivery(MC, partner_reference=reference)),
        encoded(webhook_delivery(CS, partner_reference=reference, status=None)),
        encoded(webhook_delivery(event_id=reference)),
    ]
    for body in bodies:
        outcome = call(body)
        assert isinstance(outcome, Refused)
        assert "customer-42" not in outcome.reason


# --- the queue messages ----------------------------------------------------------------------------


def test_an_accepted_delivery_becomes_its_body_with_type_id_and_time_of_receipt() -> None:
    body = encoded(webhook_delivery(CS))
    outcome = call(body)
    assert isinstance(outcome, Accepted)

    message = intake.queue_message(outcome, RECEIVED)

    assert message.body == body.decode()
    assert message.attributes == {
        intake.QUEUE_ATTR_EVENT_TYPE: CS,
        intake.QUEUE_ATTR_EVENT_ID: "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11",
        intake.QUEUE_ATTR_RECEIVED_AT: "2025-01-06T09:30:15Z",
    }


@pytest.mark.parametrize(
    ("body", "kept", "encoding"),
    [
        (b'{"webhook_event_id": 1}', '{"webhook_event_id": 1}', "text"),
        (b"{oops", "{oops", "text"),
        (b"\xff\xfe{}", base64.b64encode(b"\xff\xfe{}").decode(), "base64"),  # not UTF-8
        ('{"a": "\ufffe"}'.encode(), base64.b64encode('{"a": "\ufffe"}'.encode()).decode(), "base64"),
        (b"a\x00b", base64.b64encode(b"a\x00b").decode(), "base64"),  # SQS refuses NUL
        (b"", "(empty)", "empty"),  # SQS refuses an empty message
    ],
)
def test_a_refused_authenticated_body_is_kept_as_text_when_sqs_can_carry_it(
    body: bytes, kept: str, encoding: str
) -> None:
    refused = call(body)
    assert isinstance(refused, Refused)

    message = intake.rejected_message(body, refused, RECEIVED)

    assert message.body == kept
    assert message.attributes == {
        intake.REJECTED_ATTR_REASON: refused.reason,
        intake.REJECTED_ATTR_BODY_ENCODING: encoding,
        intake.QUEUE_ATTR_RECEIVED_AT: "2025-01-06T09:30:15Z",
    }
    if encoding == "base64":
        assert base64.b64decode(message.body) == body


# --- properties ------------------------------------------------------------------------------------

_HEADER_NAMES = st.sampled_from(["x-api-key", "X-Api-Key", "authorization", "x-other", "content-type"])
_ANY_HEADERS = st.dictionaries(_HEADER_NAMES, st.text(max_size=60), max_size=4)


@given(
    body=st.binary(max_size=300) | st.just(encoded(webhook_delivery())),
    headers=_ANY_HEADERS,
    secrets=st.lists(
        st.text(alphabet=string.ascii_letters + string.digits, min_size=40, max_size=48),
        min_size=1,
        max_size=2,
    ),
)
@settings(max_examples=300, deadline=None)
def test_any_body_with_a_wrong_or_missing_secret_is_401(
    body: bytes, headers: dict[str, str], secrets: list[str]
) -> None:
    presented = intake.header_value(headers, "x-api-key")
    if presented is not None and presented.strip() in secrets:
        headers = {k: v for k, v in headers.items() if k.lower() != "x-api-key"}  # a lucky draw

    outcome = intake.receive("POST", headers, body, secrets)

    assert isinstance(outcome, Refused)
    assert outcome.status == 401


_REFERENCES = st.text(alphabet=string.ascii_letters + string.digits + "-_.@ ", min_size=3, max_size=256)
_TEXTS = st.text(max_size=40).filter(lambda t: "\ufffe" not in t and "\uffff" not in t)


@st.composite
def deliveries(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from([*wire.WEBHOOK_EVENT_TYPES, "meter.deleted", "x" * 20]))
    document = webhook_delivery(event_type, event_id=str(draw(st.uuids())))
    payload = document["payload"]
    if "partner_reference" in payload:
        payload["partner_reference"] = draw(_REFERENCES)
    for name in ("transmission_region", "status", "utility_name", "market_group_name"):
        if name in payload:
            payload[name] = draw(_TEXTS)
    payload |= draw(st.dictionaries(st.sampled_from(["extra", "note", "audit"]), _TEXTS, max_size=2))
    return document


@given(document=deliveries(), indent=st.sampled_from([None, 2]), ascii_only=st.booleans())
@settings(max_examples=300, deadline=None)
def test_a_valid_body_round_trips_into_the_queue_message_unchanged(
    document: dict[str, Any], indent: int | None, ascii_only: bool
) -> None:
    body = json.dumps(document, indent=indent, ensure_ascii=ascii_only).encode()

    outcome = call(body)

    assert isinstance(outcome, Accepted), outcome
    message = intake.queue_message(outcome, RECEIVED)
    assert message.body.encode() == body  # byte for byte: whitespace and escapes as Leap sent them
    assert message.attributes[intake.QUEUE_ATTR_EVENT_ID] == document["webhook_event_id"]
    assert message.attributes[intake.QUEUE_ATTR_EVENT_TYPE] == document["payload"]["webhook_event_type"]
    assert outcome.known is (document["payload"]["webhook_event_type"] in wire.WEBHOOK_EVENT_TYPES)


# --- the checks against jsonschema on the same shapes ---------------------------------------------

_CHECKER = jsonschema.Draft7Validator.FORMAT_CHECKER  # rfc3339-validator makes date-time strict


def _corruptions() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.integers(),
        st.booleans(),
        st.just([]),
        st.just({}),
        st.just("ab"),
        st.just("cust/1"),
        st.just("5af2968d"),
        st.just("2025-02-01T00:00:00Z"),
        st.uuids().map(str),
        st.just([str(uuid.UUID(int=1))]),
        st.just(["5af2968d"]),
        st.just([None]),
        st.just({"partner": [{}]}),
        _TEXTS,
    )


FIELDS = [(t, name) for t in wire.WEBHOOK_EVENT_TYPES for name in [*WEBHOOK_SAMPLE_PAYLOADS[t], "<event id>"]]
_SCHEMA = jsonschema.Draft7Validator(intake.json_schema(), format_checker=_CHECKER)


def _strict_date_times(document: Any) -> bool:
    """Whether every string that looks like a date-time is RFC 3339 (where the schema's format is
    stricter than the receiver, which takes what the rest of the product parses: no offset = UTC)."""
    return not re.search(r'"\d{4}-\d{2}-\d{2}T[^"Z+]*"', json.dumps(document))


def _agree(document: Any) -> None:
    outcome = intake.parse(encoded(document))
    if _strict_date_times(document):
        assert isinstance(outcome, Accepted) is _SCHEMA.is_valid(document), outcome


@pytest.mark.parametrize(("event_type", "name"), FIELDS, ids=[f"{t}-{n}" for t, n in FIELDS])
@given(value=_corruptions(), drop=st.booleans())
@settings(max_examples=40, deadline=None)
def test_the_checks_agree_with_jsonschema_on_each_field(
    event_type: str, name: str, value: Any, drop: bool
) -> None:
    """Each field of each known type (and the event id) replaced by anything, or dropped."""
    document = webhook_delivery(event_type)
    if name == "<event id>":
        document["webhook_event_id"] = value
    elif drop:
        del document["payload"][name]
    else:
        document["payload"][name] = value

    _agree(document)


@given(document=deliveries())
@settings(max_examples=200, deadline=None)
def test_the_checks_agree_with_jsonschema_on_valid_deliveries(document: dict[str, Any]) -> None:
    _agree(document)


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(intake.json_schema())
