"""The checker behind `make contract-check`, fed small OpenAPI documents written here (never Leap's file)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.contracts.check_against_openapi import Finding, compare, main
from tests.contracts.meters_v2 import JSON, OPERATIONS, Operation

THING: dict[str, Any] = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "kind": {"type": "string", "enum": ["A", "B"]},
        "code": {"type": "string", "pattern": "^[A-Z]+$"},
        "audit": {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}},
    },
}
THINGS = Operation(
    method="post",
    path="/v1/things/search",
    request={
        "type": "object",
        "properties": {
            "ids": {
                "type": "array",
                "items": {"type": "string", "minLength": 3},
                "maxItems": 10,
                "uniqueItems": True,
            },
            "size": {"type": "integer", "minimum": 1, "maximum": 50},
        },
        "additionalProperties": False,
    },
    answers={
        200: {
            "type": "object",
            "required": ["things"],
            "properties": {"things": {"type": "array", "items": THING}},
        },
        400: {"type": "object", "properties": {"title": {"type": "string"}}},
        500: {"type": "string"},
    },
)
SEARCH = "POST /v1/things/search"


def leap_document() -> dict[str, Any]:
    """A Leap-like document for THINGS: $refs, allOf, a shared response, more than we describe."""
    return {
        "openapi": "3.0.2",
        "security": [{"Token": []}],
        "paths": {
            "/v1/things/search": {
                "post": {
                    "requestBody": {"content": {JSON: {"schema": {"$ref": "#/components/schemas/Filter"}}}},
                    "responses": {
                        "200": {"content": {JSON: {"schema": {"$ref": "#/components/schemas/Page"}}}},
                        "400": {"$ref": "#/components/responses/Refused"},
                        "500": {"content": {JSON: {"schema": {"type": "string"}}}},
                    },
                }
            }
        },
        "components": {
            "securitySchemes": {"Token": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Refused": {
                    "content": {
                        JSON: {"schema": {"type": "object", "properties": {"title": {"type": "string"}}}}
                    }
                }
            },
            "schemas": {
                "Filter": {
                    "type": "object",
                    "properties": {
                        "ids": {
                            "type": "array",
                            "maxItems": 10,
                            "uniqueItems": True,
                            "items": {"allOf": [{"$ref": "#/components/schemas/Ref"}], "type": "string"},
                        },
                        "size": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 50},
                        "colour": {"type": "string"},
                    },
                },
                "Ref": {"type": "string", "minLength": 3, "maxLength": 9},
                "Page": {
                    "type": "object",
                    "required": ["things"],
                    "properties": {
                        "things": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}
                    },
                },
                "Thing": {
                    "allOf": [{"$ref": "#/components/schemas/Ids"}, {"$ref": "#/components/schemas/Rest"}],
                    "required": ["id"],
                    "type": "object",
                },
                "Ids": {"properties": {"id": {"type": "string", "format": "uuid"}}},
                "Rest": {
                    "type": "object",
                    "properties": {
                        "kind": {"$ref": "#/components/schemas/Kind"},
                        "code": {"type": "string", "enum": ["PGE", "SCE"]},
                        "audit": {"properties": {"at": {"type": "string", "format": "date-time"}}},
                    },
                },
                "Kind": {"type": "string", "enum": ["A", "B", "C"]},
            },
        },
    }


def schemas(document: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"]


def differing(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(finding.where, finding.fact) for finding in findings if not finding.agrees]


def test_an_agreeing_document_agrees_on_every_fact():
    findings = compare(leap_document(), [THINGS])

    assert differing(findings) == []
    facts = {(finding.where, finding.fact) for finding in findings}
    assert (f"{SEARCH} request.ids", "maxItems 10") in facts
    assert (f"{SEARCH} request.ids[]", "minLength 3") in facts
    assert (f"{SEARCH} 200 answer.things[].id", "required") in facts
    assert (f"{SEARCH} 200 answer.things[].kind", "enum ['A', 'B'] (Leap's also lists ['C'])") in facts
    assert (f"{SEARCH} 200 answer.things[].code", "pattern '^[A-Z]+$' fits all 2 values Leap lists") in facts
    assert (f"{SEARCH} 200 answer.things[].audit", "type object (implied by Leap's properties)") in facts
    assert (f"{SEARCH} 400 answer.title", "type 'string'") in facts
    assert (f"{SEARCH} 500 answer", "type 'string'") in facts


def _set(path: str | tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to the document at a slash-separated path or a tuple of keys (None deletes)."""

    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split("/") if isinstance(path, str) else path
        node = document
        for part in parents:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return change


FILTER = "components/schemas/Filter/properties"
OPERATION = ("paths", THINGS.path, THINGS.method)
REST = "components/schemas/Rest/properties"


@pytest.mark.parametrize(
    ("change", "where", "fact"),
    [
        (_set(f"{FILTER}/ids/maxItems", 20), "request.ids", "maxItems: ours 10, Leap's 20"),
        (_set(f"{FILTER}/ids/uniqueItems", None), "request.ids", "uniqueItems: ours True, Leap's None"),
        (
            _set(f"{FILTER}/ids/items/type", "integer"),
            "request.ids[]",
            "type: ours 'string', Leap's 'integer'",
        ),
        (
            _set("components/schemas/Ref/minLength", 1),
            "request.ids[]",
            "minLength: ours 3, Leap's 1",
        ),  # via allOf
        (_set(f"{FILTER}/size/maximum", 50.5), "request.size", "maximum: ours 50, Leap's 50.5"),
        (_set(f"{FILTER}/size", None), "request.size", "Leap's file has no such field"),
        (
            _set("components/schemas/Filter/required", ["size"]),
            "request.size",
            "ours optional, Leap's required",
        ),
        (
            _set("components/schemas/Thing/required", []),
            "200 answer.things[].id",
            "ours required, Leap's optional",
        ),
        (
            _set("components/schemas/Kind/enum", ["A", "C"]),
            "200 answer.things[].kind",
            "enum: ['B'] are not among Leap's ['A', 'C']",
        ),
        (
            _set(f"{REST}/code/enum", ["PGE", "Con Edison"]),
            "200 answer.things[].code",
            "pattern '^[A-Z]+$' refuses Leap's values ['Con Edison']",
        ),
        (
            _set(f"{REST}/code", {"type": "string", "pattern": "^[A-Z0-9]+$"}),
            "200 answer.things[].code",
            "pattern: ours '^[A-Z]+$', Leap's '^[A-Z0-9]+$'",
        ),
        (
            _set(f"{REST}/code/enum", None),
            "200 answer.things[].code",
            "pattern '^[A-Z]+$': Leap's file states no pattern and no values",
        ),
        (
            _set("components/schemas/Ids/properties/id/type", "integer"),
            "200 answer.things[].id",
            "type: ours 'string', Leap's 'integer'",
        ),
        (
            _set((*OPERATION, "responses", "500"), None),
            "500 answer",
            "Leap's file has no application/json answer",
        ),
        (
            _set((*OPERATION, "requestBody", "content"), {"text/plain": {}}),
            "request",
            "Leap's file takes no application/json body",
        ),
        (
            _set("components/securitySchemes/Token", {"type": "apiKey", "in": "header", "name": "X-Key"}),
            "",
            "authentication: Leap's file names no HTTP bearer scheme",
        ),
    ],
)
def test_a_document_that_differs_on_one_fact_is_reported_on_that_fact(change, where, fact):
    document = leap_document()
    change(document)

    assert differing(compare(document, [THINGS])) == [(f"{SEARCH} {where}".rstrip(), fact)]


def test_a_missing_operation_is_the_one_disagreement():
    document = leap_document()
    document["paths"]["/v1/things/search"] = {"get": document["paths"]["/v1/things/search"]["post"]}

    assert differing(compare(document, [THINGS])) == [(SEARCH, "Leap's file has no such operation")]


def test_a_keyword_the_checker_cannot_compare_is_an_error_not_a_silent_pass():
    unchecked = Operation(
        method="post", path=THINGS.path, request={"type": "object", "const": {}}, answers={}
    )

    with pytest.raises(ValueError, match="cannot compare \\['const'\\]"):
        compare(leap_document(), [unchecked])


def test_the_projects_own_description_uses_only_what_the_checker_compares():
    """Leap's file is not here, so mirror our description as a document: every fact must then agree."""
    paths: dict[str, Any] = {}
    for operation in OPERATIONS:
        answers = {
            str(status): {"content": {JSON: {"schema": schema}}}
            for status, schema in operation.answers.items()
        }
        paths.setdefault(operation.path, {})[operation.method] = {
            "requestBody": {"content": {JSON: {"schema": operation.request}}},
            "responses": answers,
        }
    document = {
        "paths": copy.deepcopy(paths),
        "security": [{"Bearer": []}],
        "components": {"securitySchemes": {"Bearer": {"type": "http", "scheme": "bearer"}}},
    }

    findings = compare(document)

    assert differing(findings) == []
    assert len(findings) > 100


def test_main_agrees_with_an_agreeing_file(tmp_path, capsys):
    spec = tmp_path / "things.yml"
    spec.write_text(yaml.safe_dump(leap_document()))

    assert main([str(spec)], [THINGS]) == 0
    out = capsys.readouterr().out
    assert f"agrees   {SEARCH} request.ids: maxItems 10" in out
    assert out.rstrip().endswith(f"0 differ ({spec})")


def test_main_fails_on_a_disagreeing_file(tmp_path, capsys):
    document = leap_document()
    schemas(document)["Filter"]["properties"]["ids"]["maxItems"] = 1000
    spec = tmp_path / "things.yml"
    spec.write_text(yaml.safe_dump(document))

    assert main([str(spec)], [THINGS]) == 1
    assert f"DIFFERS  {SEARCH} request.ids: maxItems: ours 10, Leap's 1000" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], [""]])
def test_main_without_a_file_says_how_to_give_one(argv, capsys):
    assert main(argv) == 2
    assert "LEAP_METERS_OPENAPI=/path/to/meters-v2.yml make contract-check" in capsys.readouterr().err


def test_main_with_an_absent_file_says_so(tmp_path, capsys):
    assert main([str(tmp_path / "meters-v2.yml")]) == 2
    assert "cannot read Leap's OpenAPI file" in capsys.readouterr().err


def test_main_with_a_file_that_is_not_a_document_says_so(tmp_path, capsys):
    spec = tmp_path / "meters-v2.yml"
    spec.write_text("- just\n- a list\n")

    assert main([str(spec)]) == 2
    assert "is not an OpenAPI document" in capsys.readouterr().err
