"""Every name Leap puts on the wire, in one place.

Two kinds of facts live here:
- CONFIRMED by Leap's guide or OpenAPI files (field names of a Connect entry, ``nextPageToken`` /
  ``page-token``, the Meters v2 search contract);
- ASSUMED where Leap publishes nothing (the Connect API's path and its other query parameter names,
  the answer's list field, most error codes, agreement values other than NOT_REQUIRED). Every assumed
  name sits in :class:`ConnectWire`, which configuration can override without a code change.

Enumerations are open on purpose: Leap may add values. Code compares against the constants below and
keeps any unknown value as it came, counting it, instead of failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

# --- Connect API: the request (ASSUMED except page-token) ---------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectWire:
    """The Connect API's request and answer names. Defaults are assumptions (see LEAP-API notes)."""

    path: str = "/v1.1/connect/connections"
    param_ref_id: str = "ref-id"
    param_start_date: str = "start-date"
    param_last_interaction_date: str = "last-interaction-date"
    param_page_size: str = "page-size"
    param_page_token: str = "page-token"  # CONFIRMED; its value MUST be URL-encoded
    list_field: str = "connections"
    next_page_token_field: str = "nextPageToken"  # CONFIRMED

    def with_overrides(self, overrides: dict[str, Any]) -> ConnectWire:
        """A copy with some names replaced; unknown keys are an error so a typo cannot pass silently."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown Connect wire name(s) {unknown}; known: {sorted(known)}")
        return replace(self, **{k: str(v) for k, v in overrides.items()})


DEFAULT_CONNECT_WIRE = ConnectWire()

# Dates in query parameters and entries: ISO 8601 UTC with a Z, to the second.
WIRE_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# --- Connect API: an entry (CONFIRMED by the guide's example) -----------------------------------

ENTRY_ID = "id"
ENTRY_TRANSMISSION_REGION = "transmission_region"
ENTRY_REF_ID = "ref_id"
ENTRY_START = "start_date_time_utc"
ENTRY_LAST_INTERACTION = "last_interaction_date_time_utc"
ENTRY_CONNECTION_STATUS = "connection_status"
ENTRY_UTILITY_CONNECTIONS = "utility_connections"
ENTRY_AGREEMENTS = "agreements"

UTILITY_AUTHORIZATION_UUID = "authorization_uuid"
UTILITY_NAME = "utility_name"
UTILITY_IS_REQUIRED = "utility_is_required"
UTILITY_STATUS = "status"
UTILITY_ERROR_CODE = "error_code"
UTILITY_START = "start_date_time_utc"
UTILITY_LAST_INTERACTION = "last_interaction_date_time_utc"

AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION = "prohibited_resource_attestation_status"
AGREEMENT_DEMAND_RESPONSE_PARTICIPATION = "demand_response_participation_agreement_status"
KNOWN_AGREEMENTS = (AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION, AGREEMENT_DEMAND_RESPONSE_PARTICIPATION)

# connection_status (CONFIRMED, open)
CONNECTION_COMPLETED = "COMPLETED"
CONNECTION_NOT_STARTED = "NOT_STARTED"
CONNECTION_PARTIAL = "PARTIAL"
CONNECTION_ERROR = "ERROR"
KNOWN_CONNECTION_STATUSES = frozenset(
    {CONNECTION_COMPLETED, CONNECTION_NOT_STARTED, CONNECTION_PARTIAL, CONNECTION_ERROR}
)

# utility status (CONFIRMED, open)
UTILITY_CONNECTED = "CONNECTED"
UTILITY_NOT_CONNECTED = "NOT_CONNECTED"
UTILITY_ERROR = "ERROR"
KNOWN_UTILITY_STATUSES = frozenset({UTILITY_CONNECTED, UTILITY_NOT_CONNECTED, UTILITY_ERROR})

# error_code: USER_CANCELED is CONFIRMED; the others are ASSUMED from the kinds of failure Leap's
# webhook docs name (invalid credentials, MFA, utility-side errors). The set is OPEN.
ERROR_USER_CANCELED = "USER_CANCELED"
ERROR_INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
ERROR_MFA_FAILED = "MFA_FAILED"
ERROR_UTILITY_UNAVAILABLE = "UTILITY_UNAVAILABLE"
KNOWN_ERROR_CODES = frozenset(
    {ERROR_USER_CANCELED, ERROR_INVALID_CREDENTIALS, ERROR_MFA_FAILED, ERROR_UTILITY_UNAVAILABLE}
)

# agreement status: NOT_REQUIRED is CONFIRMED; which values mean "done" is configuration.
AGREEMENT_NOT_REQUIRED = "NOT_REQUIRED"
DEFAULT_AGREEMENT_DONE_STATUSES = frozenset({"COMPLETED", "SIGNED", "ACCEPTED"})

# --- Meters v2 (CONFIRMED by Leap's OpenAPI file meters-v2.yml) ---------------------------------

METERS_SEARCH_PATH = "/v2/meters/search"
METERS_REQ_PAGE_TOKEN = "page_token"
METERS_REQ_PAGE_SIZE = "page_size"
METERS_REQ_CREATED_AFTER = "created_after_date_time"
METERS_REQ_CONNECTION_REFERENCE_IDS = "connection_reference_ids"
METERS_MAX_PAGE_SIZE = 500
METERS_MAX_REFERENCE_IDS = 100
# Each of them is a PartnerReference: 3 to 256 characters, none of / \ ? ] [ { } ! # $ % ^ & * ( ) < > |.
# Leap refuses a whole search (400) over one Reference ID outside it.
METERS_REFERENCE_ID_PATTERN = re.compile(r"[^/\\?\]\[{}!#$%^&*()<>|]{3,256}")
METERS_RESP_NEXT_PAGE_TOKEN = "next_page_token"
METERS_RESP_METERS = "meters"
METER_ID = "meter_id"
METER_CONNECTION_REFERENCES = "connection_references"
METER_AUDIT = "audit"
METER_AUDIT_CREATED_AT = "created_at"
METER_UTILITY = "utility"

# --- Webhooks (CONFIRMED by Leap's OpenAPI file webhooks-v1.1.yml) ------------------------------
# What Leap pushes: {"webhook_event_id": <uuid>, "payload": {"webhook_event_type": <type>, ...}}. Leap
# sends back the custom headers a subscription was registered with, which is how a receiver
# authenticates a call (no signature is published).

WEBHOOK_EVENT_ID = "webhook_event_id"
WEBHOOK_PAYLOAD = "payload"
WEBHOOK_EVENT_TYPE = "webhook_event_type"
WEBHOOK_PARTNER_REFERENCE = "partner_reference"  # the Reference ID (the Connect URL's refId)
WEBHOOK_METER_ID = "meter_id"
WEBHOOK_TRANSMISSION_REGION = "transmission_region"
WEBHOOK_METER_TYPE = "meter_type"
WEBHOOK_STATUS = "status"  # connect_session.*: the session's or the authorization's status
WEBHOOK_UTILITY_NAME = "utility_name"  # connect_session.authorization_updated
WEBHOOK_GLOBAL_ENROLLMENT_STATUS = "global_enrollment_status"
WEBHOOK_REQUIRED_ACTIONS = "required_actions"  # {"partner": [{action_code, action_type, ...}]}
WEBHOOK_PARTICIPATION_PREFERENCE = "participation_preference"
WEBHOOK_METER_IDS = "meter_ids"  # meter.enrollment.group.updated
# The receiver's shape checks (webhooks/intake.py) name these too.
WEBHOOK_START_TIME = "start_time"  # participation-status.updated: start_time, end_time
WEBHOOK_END_TIME = "end_time"
WEBHOOK_MARKET_GROUP_ID = "market_group_id"  # group.updated: id, name, start and end
WEBHOOK_MARKET_GROUP_NAME = "market_group_name"
WEBHOOK_START_DATE_TIME = "start_date_time"
WEBHOOK_END_DATE_TIME = "end_date_time"
WEBHOOK_PARTNER_ACTIONS = "partner"  # required_actions.partner: the actions asked of the partner
WEBHOOK_ACTION_DEADLINE = "enrollment_deadline_date_time"
WEBHOOK_ACTION_TYPE = "action_type"
WEBHOOK_ACTION_DESCRIPTION = "action_description"
WEBHOOK_ACTION_CODE = "action_code"
WEBHOOK_ACTION_PROGRAM = "program_identifier"  # optional in an action, passed on as Leap sent it
WEBHOOK_ACTION_DELIVERY_PERIOD = "delivery_period"
ENROLLMENT_INELIGIBLE = "INELIGIBLE"  # a global_enrollment_status: the meter cannot be enrolled

WEBHOOK_METER_CREATED = "meter.created"
WEBHOOK_CONNECT_SESSION_UPDATED = "connect_session.updated"  # CREATED, UPDATED, CLOSED, COMPLETED
WEBHOOK_AUTHORIZATION_UPDATED = "connect_session.authorization_updated"  # INITIATED, COMPLETED, FAILED
WEBHOOK_ENROLLMENT_GLOBAL_STATUS = "meter.enrollment.global-status.updated"
WEBHOOK_ENROLLMENT_PARTICIPATION = "meter.enrollment.participation-status.updated"
WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS = "meter.enrollment.required-actions.updated"
WEBHOOK_ENROLLMENT_GROUP = "meter.enrollment.group.updated"
WEBHOOK_EVENT_TYPES = (
    WEBHOOK_METER_CREATED,
    WEBHOOK_CONNECT_SESSION_UPDATED,
    WEBHOOK_AUTHORIZATION_UPDATED,
    WEBHOOK_ENROLLMENT_GLOBAL_STATUS,
    WEBHOOK_ENROLLMENT_PARTICIPATION,
    WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS,
    WEBHOOK_ENROLLMENT_GROUP,
)
SESSION_CREATED = "CREATED"  # connect_session.updated: the first click
SESSION_UPDATED = "UPDATED"
SESSION_CLOSED = "CLOSED"
SESSION_COMPLETED = "COMPLETED"
CONNECT_SESSION_STATUSES = frozenset({SESSION_CREATED, SESSION_UPDATED, SESSION_CLOSED, SESSION_COMPLETED})
AUTHORIZATION_INITIATED = "INITIATED"  # connect_session.authorization_updated: a utility login
AUTHORIZATION_COMPLETED = "COMPLETED"
AUTHORIZATION_FAILED = "FAILED"
AUTHORIZATION_STATUSES = frozenset({AUTHORIZATION_INITIATED, AUTHORIZATION_COMPLETED, AUTHORIZATION_FAILED})

# The Webhook Subscription API: list (GET) and create (POST) on the collection; update (PUT, replaces
# every setting) and delete on one subscription; POST .../test sends a sample event to the receiver.
WEBHOOKS_PATH = "/v1.1/webhooks"
WEBHOOK_SUBSCRIPTION_ID = "webhook_id"
WEBHOOK_SUBSCRIPTION_RECEIVER_URL = "receiver_url"
WEBHOOK_SUBSCRIPTION_EVENT_TYPES = "event_types"
WEBHOOK_SUBSCRIPTION_HEADERS = "headers"  # [{"name": ..., "value": ...}]
WEBHOOK_HEADER_NAME = "name"
WEBHOOK_HEADER_VALUE = "value"
WEBHOOK_SUBSCRIPTIONS = "webhooks"  # the list answer's field
WEBHOOK_TEST_IS_SUCCESSFUL = "is_successful"  # the test answer: is_successful, status_code, error,
WEBHOOK_TEST_STATUS_CODE = "status_code"  # response_time_ms
WEBHOOK_TEST_ERROR = "error"
WEBHOOK_TEST_RESPONSE_TIME_MS = "response_time_ms"
WEBHOOK_DELETED_MESSAGE = "message"  # the delete answer: {"message": ...}
WEBHOOK_ERROR = "error"  # this API's error body: {"error": ..., "message": ...}
WEBHOOK_ERROR_MESSAGE = "message"
DEFAULT_WEBHOOK_SECRET_HEADER = "x-api-key"  # the header name Leap's own example uses


def webhook_path(webhook_id: str) -> str:
    return f"{WEBHOOKS_PATH}/{webhook_id}"


def webhook_test_path(webhook_id: str) -> str:
    return f"{webhook_path(webhook_id)}/test"


# --- Errors and auth (CONFIRMED) ----------------------------------------------------------------

AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Bearer"
ERROR_TITLE = "title"
ERROR_STATUS = "status"
ERROR_DETAILS = "details"

PRODUCTION_BASE_URL = "https://api.leap.energy"
STAGING_BASE_URL = "https://api.staging.leap.energy"


def environment_name(base_url: str) -> str:
    """A human name for the Leap environment a base URL points at, for error messages."""
    url = base_url.rstrip("/")
    if url == PRODUCTION_BASE_URL:
        return "production"
    if url == STAGING_BASE_URL:
        return "staging"
    return f"custom ({url})"
