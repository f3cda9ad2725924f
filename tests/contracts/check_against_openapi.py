"""Does our Meters v2 description (tests/contracts/meters_v2.py) still agree with Leap's OpenAPI file?

    LEAP_METERS_OPENAPI=/path/to/meters-v2.yml make contract-check
    python -m tests.contracts.check_against_openapi /path/to/meters-v2.yml

Walks every path, method, media type, status, field, type, format, limit, enumeration and required
list our description states, finds the same place in Leap's file (following ``$ref`` and merging
``allOf``) and prints one line per fact: ``agrees`` or ``DIFFERS``. Exits 1 on any disagreement, 2 when
the file is not given or cannot be read. Never part of ``make test``: Leap's file is not in the repo.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.contracts.meters_v2 import OPERATIONS, Operation

# Keywords compared as equal values. Leap's file is OpenAPI 3.0, whose schema keywords mean the same.
EXACT = (
    "type",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
)
# Keywords walked or compared by their own rule below.
STRUCTURAL = ("properties", "required", "items", "enum", "pattern")
# Our own restrictions on what the client sends: Leap's file says nothing either way.
OURS_ONLY = ("additionalProperties",)

USAGE = (
    "no OpenAPI file given: run `LEAP_METERS_OPENAPI=/path/to/meters-v2.yml make contract-check` "
    "(or `python -m tests.contracts.check_against_openapi /path/to/meters-v2.yml`)"
)


@dataclass(frozen=True, slots=True)
class Finding:
    agrees: bool
    where: str
    fact: str

    def line(self) -> str:
        return f"{'agrees ' if self.agrees else 'DIFFERS'}  {self.where}: {self.fact}"


class _Openapi:
    """Leap's document, with references followed and ``allOf`` merged."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document

    def resolve(self, node: Any) -> Any:
        seen: set[str] = set()
        while isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen or not isinstance(ref, str) or not ref.startswith("#/"):
                raise ValueError(f"cannot follow $ref {ref!r}")
            seen.add(ref)
            node = self.document
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def schema(self, node: Any) -> dict[str, Any]:
        """One schema with its ``allOf`` parts folded in: properties joined, required lists united."""
        node = self.resolve(node)
        if not isinstance(node, Mapping):
            return {}
        merged = {key: value for key, value in node.items() if key != "allOf"}
        for part in node.get("allOf", ()):
            for key, value in self.schema(part).items():
                if key == "properties":
                    merged["properties"] = _joined_fields(merged.get("properties", {}), value)
                elif key == "required":
                    merged["required"] = sorted({*merged.get("required", ()), *value})
                else:
                    merged.setdefault(key, value)
        return merged


def _joined_fields(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two ``properties`` maps as one; a field in both must satisfy both."""
    joined = dict(first)
    for name, schema in second.items():
        joined[name] = {"allOf": [joined[name], schema]} if name in joined else schema
    return joined


def compare(document: Mapping[str, Any], operations: Sequence[Operation] = OPERATIONS) -> list[Finding]:
    """Every fact our description states about ``operations``, checked against Leap's document."""
    leap = _Openapi(document)
    findings: list[Finding] = []
    for operation in operations:
        findings += _compare_operation(leap, operation)
    return findings


def _compare_operation(leap: _Openapi, operation: Operation) -> list[Finding]:
    where = f"{operation.method.upper()} {operation.path}"
    found = leap.resolve(leap.document.get("paths", {}).get(operation.path, {})).get(operation.method)
    if not isinstance(found, Mapping):
        return [Finding(False, where, "Leap's file has no such operation")]
    findings = [Finding(True, where, "the operation exists"), _compare_auth(leap, found, operation, where)]
    body = leap.resolve(found.get("requestBody", {})).get("content", {}).get(operation.media_type)
    if body is None:
        missing = f"Leap's file takes no {operation.media_type} body"
        findings.append(Finding(False, f"{where} request", missing))
    else:
        findings += _compare_schema(leap, operation.request, body.get("schema"), f"{where} request")
    answers = found.get("responses", {})
    for status, ours in operation.answers.items():
        answer_where = f"{where} {status} answer"
        answer = leap.resolve(answers.get(str(status), answers.get(status)))
        content = (answer or {}).get("content", {}).get(operation.media_type)
        if content is None:
            findings.append(Finding(False, answer_where, f"Leap's file has no {operation.media_type} answer"))
        else:
            findings += _compare_schema(leap, ours, content.get("schema"), answer_where)
    return findings


def _compare_auth(leap: _Openapi, found: Mapping[str, Any], operation: Operation, where: str) -> Finding:
    requirements = found.get("security", leap.document.get("security", ()))
    schemes = leap.document.get("components", {}).get("securitySchemes", {})
    wanted = operation.auth_scheme
    for requirement in requirements:
        for name in requirement:
            scheme = leap.resolve(schemes.get(name, {}))
            if scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == wanted:
                return Finding(True, where, f"authentication: HTTP {wanted} (scheme {name!r})")
    return Finding(False, where, f"authentication: Leap's file names no HTTP {wanted} scheme")


def _compare_schema(leap: _Openapi, ours: Mapping[str, Any], theirs: Any, where: str) -> list[Finding]:
    unknown = set(ours) - {*EXACT, *STRUCTURAL, *OURS_ONLY}
    if unknown:
        raise ValueError(f"{where}: the checker cannot compare {sorted(unknown)}; teach it or drop them")
    if theirs is None:
        return [Finding(False, where, "Leap's file describes nothing here")]
    leaps = leap.schema(theirs)
    findings = [_compare_exact(keyword, ours[keyword], leaps, where) for keyword in EXACT if keyword in ours]
    if "enum" in ours:
        findings.append(_compare_enum(ours["enum"], leaps.get("enum"), where))
    if "pattern" in ours:
        findings.append(_compare_pattern(ours["pattern"], leaps, where))
    if "items" in ours:
        findings += _compare_schema(leap, ours["items"], leaps.get("items"), f"{where}[]")
    if ours.get("type") == "object":
        findings += _compare_fields(leap, ours, leaps, where)
    return findings


def _compare_fields(
    leap: _Openapi, ours: Mapping[str, Any], leaps: Mapping[str, Any], where: str
) -> list[Finding]:
    findings: list[Finding] = []
    our_required, leaps_required = set(ours.get("required", ())), set(leaps.get("required", ()))
    leaps_fields = leaps.get("properties", {})
    for name, field_schema in ours.get("properties", {}).items():
        field_where = f"{where}.{name}"
        if name not in leaps_fields:
            findings.append(Finding(False, field_where, "Leap's file has no such field"))
            continue
        ours_says, leaps_say = _presence(name in our_required), _presence(name in leaps_required)
        fact = ours_says if ours_says == leaps_say else f"ours {ours_says}, Leap's {leaps_say}"
        findings.append(Finding(ours_says == leaps_say, field_where, fact))
        findings += _compare_schema(leap, field_schema, leaps_fields[name], field_where)
    for name in sorted(our_required - set(ours.get("properties", {}))):
        findings.append(Finding(name in leaps_required, f"{where}.{name}", "required (no schema of ours)"))
    return findings


def _presence(required: bool) -> str:
    return "required" if required else "optional"


def _compare_exact(keyword: str, ours: Any, leaps: Mapping[str, Any], where: str) -> Finding:
    theirs = leaps.get(keyword)
    if keyword == "type" and theirs is None and ours == "object" and "properties" in leaps:
        return Finding(True, where, "type object (implied by Leap's properties)")
    if theirs == ours and isinstance(theirs, bool) == isinstance(ours, bool):  # True is not 1 here
        return Finding(True, where, f"{keyword} {ours!r}")
    return Finding(False, where, f"{keyword}: ours {ours!r}, Leap's {theirs!r}")


def _compare_enum(ours: Sequence[str], theirs: Any, where: str) -> Finding:
    """Our values must all be Leap's; Leap may list more (the product keeps unknown values)."""
    if not isinstance(theirs, list):
        return Finding(False, where, f"enum: ours {list(ours)}, Leap's file lists no values")
    missing = [value for value in ours if value not in theirs]
    if missing:
        return Finding(False, where, f"enum: {missing} are not among Leap's {theirs}")
    extra = [value for value in theirs if value not in ours]
    return Finding(True, where, f"enum {list(ours)}" + (f" (Leap's also lists {extra})" if extra else ""))


def _compare_pattern(ours: str, leaps: Mapping[str, Any], where: str) -> Finding:
    """The same pattern as Leap's, or a pattern every value of Leap's list matches."""
    if "pattern" in leaps:
        if leaps["pattern"] == ours:
            return Finding(True, where, f"pattern {ours!r}")
        return Finding(False, where, f"pattern: ours {ours!r}, Leap's {leaps['pattern']!r}")
    values = leaps.get("enum")
    if not isinstance(values, list):
        return Finding(False, where, f"pattern {ours!r}: Leap's file states no pattern and no values")
    outside = [value for value in values if not (isinstance(value, str) and re.search(ours, value))]
    if outside:
        return Finding(False, where, f"pattern {ours!r} refuses Leap's values {outside}")
    return Finding(True, where, f"pattern {ours!r} fits all {len(values)} values Leap lists")


def main(argv: Sequence[str], operations: Sequence[Operation] = OPERATIONS) -> int:
    if not argv or not argv[0]:
        print(USAGE, file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        print(f"cannot read Leap's OpenAPI file {path}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(document, Mapping):
        print(f"{path} is not an OpenAPI document (no mapping at the top)", file=sys.stderr)
        return 2
    findings = compare(document, operations)
    for finding in findings:
        print(finding.line())
    differing = sum(not finding.agrees for finding in findings)
    print(f"{len(findings) - differing} agree, {differing} differ ({path})")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
