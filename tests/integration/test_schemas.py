"""schemas/, the sample stream event and docs/events.md match the catalog; the doc's examples are valid."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator

from devtools import generate_schemas
from leap_tracker.events import catalog

EXAMPLE_BLOCK = re.compile(r"### `(?P<type>[a-z_.]+)`.*?```json\n(?P<body>.*?)\n```", re.DOTALL)


def test_generated_files_match_the_catalog() -> None:
    stale = generate_schemas.stale_files()

    assert stale == [], f"run `make schemas`: {[str(p.relative_to(generate_schemas.ROOT)) for p in stale]}"


def test_a_drifted_schema_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    kind = catalog.CATALOG[catalog.CONNECTION_COMPLETED]
    monkeypatch.setitem(catalog.CATALOG, kind.name, kind.__class__(kind.name, "changed", {}, ()))

    assert generate_schemas.SCHEMAS_DIR / f"{kind.name}.json" in generate_schemas.stale_files()


def test_every_type_has_a_schema_file() -> None:
    names = {path.stem for path in generate_schemas.SCHEMAS_DIR.glob("*.json")}

    assert names == set(catalog.CATALOG)


def test_every_example_in_the_doc_is_valid_against_its_schema() -> None:
    text = generate_schemas.EVENTS_DOC.read_text()
    examples = {m["type"]: json.loads(m["body"]) for m in EXAMPLE_BLOCK.finditer(text)}

    assert set(examples) == set(catalog.CATALOG)  # every type, each with a real example
    for event_type, example in examples.items():
        schema = json.loads((generate_schemas.SCHEMAS_DIR / f"{event_type}.json").read_text())
        Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(example)
        assert example["type"] == event_type


def test_every_type_is_documented() -> None:
    text = generate_schemas.EVENTS_DOC.read_text()

    for event_type in catalog.CATALOG:
        assert f"### `{event_type}`" in text
