"""Leap's Meters v2 search as this project relies on it: our own description, and checks against it.

The description is JSON Schema (draft 2020-12) for the search request the client sends and for every
answer it must understand. It states only what the product and the Leap simulator use, nothing more
of Leap's API. The names are spelled out here rather than taken from ``leap_tracker.leap.wire``: this is the
reference the client and the simulator are tested against, so it must not move when they do.
``check_against_openapi`` checks that it still agrees with Leap's published OpenAPI file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

JSON = "application/json"

# One Leap code word ("PGE", "LEAP_TEST_CAISO"): Leap's list of utilities grows, so the product treats
# it as open and this description states the form, not the list (the checker tests Leap's list on it).
CODE_WORD = "^[A-Z][A-Z0-9_]*$"

# A Connect Reference ID as Meters v2 takes and returns it (Leap's partner-reference rules: 3 to 256).
REFERENCE_ID: dict[str, Any] = {"type": "string", "minLength": 3, "maxLength": 256}

SEARCH_REQUEST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "connection_reference_ids": {
            "type": "array",
            "items": REFERENCE_ID,
            "minItems": 1,
            "maxItems": 100,
            "uniqueItems": True,
        },
        "created_after_date_time": {"type": "string", "format": "date-time"},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 500},
        "page_token": {"type": "string"},
    },
    # Our own rule, not Leap's: the client sends only the fields described (and so checked) here.
    "additionalProperties": False,
}

_TEXT_1_TO_128: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 128}
_TWO_LETTERS: dict[str, Any] = {"type": "string", "minLength": 2, "maxLength": 2}

# A meter: what Leap always sends (its required fields), what the product reads (meter_id,
# connection_references, utility.utility_name, audit.created_at) and what the simulator adds.
METER: dict[str, Any] = {
    "type": "object",
    "required": ["meter_id", "is_archived", "transmission_region", "meter_type", "customer", "audit"],
    "properties": {
        "meter_id": {"type": "string", "format": "uuid"},
        "is_archived": {"type": "boolean"},
        "transmission_region": {
            "type": "string",
            "enum": ["CAISO", "ERCOT", "NYISO", "ISONE", "PJM", "SERC", "WECC_SW", "WECC_PC"],
        },
        "customer_classification": {"type": "string", "enum": ["RESIDENTIAL", "COMMERCIAL"]},
        "meter_type": {"type": "string", "enum": ["UTILITY_METER", "SUBMETER", "DEVICE"]},
        "connection_references": {"type": "array", "items": REFERENCE_ID, "uniqueItems": True},
        "customer": {
            "type": "object",
            "required": ["street_1", "city", "postal_code", "state_or_province_code", "country_code"],
            "properties": {
                "street_1": _TEXT_1_TO_128,
                "city": _TEXT_1_TO_128,
                "postal_code": {"type": "string"},
                "state_or_province_code": _TWO_LETTERS,
                "country_code": _TWO_LETTERS,
            },
        },
        "utility": {
            "type": "object",
            "properties": {
                "utility_name": {"type": "string", "pattern": CODE_WORD},
                "electric_service_account_number": _TEXT_1_TO_128,
            },
        },
        "audit": {
            "type": "object",
            "properties": {
                "created_by": {"type": "string", "enum": ["PARTNER", "LEAP", "UTILITY"]},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
        },
    },
}

SEARCH_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["meters"],
    "properties": {
        "meters": {"type": "array", "items": METER},
        "next_page_token": {"type": "string"},  # absent on the last page
    },
}

# Leap's refusals: {title, status, details}, none of them promised (the client reads each if there).
PROBLEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 2000},
        "status": {"type": "integer"},
        "details": {"type": "object"},
    },
}

# A 500 is not a problem object: its body is one JSON string.
INTERNAL_ERROR: dict[str, Any] = {"type": "string"}


@dataclass(frozen=True, slots=True)
class Operation:
    method: str  # lower case, as OpenAPI spells it
    path: str
    request: Mapping[str, Any]
    answers: Mapping[int, Mapping[str, Any]]  # HTTP status -> the JSON body's schema
    media_type: str = JSON
    auth_scheme: str = "bearer"  # HTTP authentication: "Authorization: Bearer <API key>"


SEARCH = Operation(
    method="post",
    path="/v2/meters/search",
    request=SEARCH_REQUEST,
    answers={200: SEARCH_PAGE, 400: PROBLEM, 401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 500: INTERNAL_ERROR},
)

OPERATIONS = (SEARCH,)


class ContractViolation(ValueError):
    """A request or an answer that the Meters v2 description does not allow."""


def check_search(method: str, path: str, body: Any) -> None:
    """Raise ContractViolation unless this is a meters search Leap accepts."""
    if (method.lower(), path) != (SEARCH.method, SEARCH.path):
        raise ContractViolation(f"{method} {path} is not the meters search (POST {SEARCH.path})")
    _validate(_validator("request"), body, "the search request")


def check_search_answer(status: int, media_type: str | None, body: Any) -> None:
    """Raise ContractViolation unless Leap may answer a meters search like this."""
    if status not in SEARCH.answers:
        raise ContractViolation(f"Leap never answers a meters search with {status}")
    if media_type is None or media_type.split(";")[0].strip() != SEARCH.media_type:
        raise ContractViolation(f"a {status} answer comes as {SEARCH.media_type}, not {media_type!r}")
    _validate(_validator(status), body, f"the {status} answer")


def schema_formats(schema: Any) -> Iterator[str]:
    """Every ``format`` a schema names, at any depth."""
    if isinstance(schema, Mapping):
        if isinstance(schema.get("format"), str):
            yield schema["format"]
        for value in schema.values():
            yield from schema_formats(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from schema_formats(value)


@cache
def _validator(which: str | int) -> Draft202012Validator:
    schema = SEARCH.request if which == "request" else SEARCH.answers[int(which)]
    Draft202012Validator.check_schema(schema)
    # jsonschema passes a format it has no checker for (date-time needs rfc3339-validator): refuse
    # that, or a wrong date would go through unnoticed.
    unchecked = set(schema_formats(schema)) - set(FormatChecker.checkers)
    if unchecked:
        raise RuntimeError(f"jsonschema cannot check the format(s) {sorted(unchecked)}: install its extras")
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _validate(validator: Draft202012Validator, body: Any, what: str) -> None:
    error = best_match(validator.iter_errors(body))
    if error is not None:
        raise ContractViolation(f"{what} breaks the Meters v2 contract at {error.json_path}: {error.message}")
