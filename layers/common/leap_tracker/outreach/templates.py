"""Message templates per reason, and the Connect URL the customer retries with.

Templates are JSON: ``{"<reason>": {"subject": "...", "body": "..."}, ...}`` with ``string.Template``
placeholders (``${connect_url}`` ...; ``$$`` is a literal ``$``); keys starting with ``_`` are comments.
A reason may instead map to a list of named variants, ``[{"name": "a", "subject": ..., "body": ...},
...]``; a single template is the variant :data:`SINGLE_VARIANT`. Each customer gets one variant per
reason, :func:`choose_variant` (a stable hash of the entry id), so a partner can compare them.
The defaults (``templates.json`` beside this module) cover every reason; a partner's file
(``OUTREACH_TEMPLATES_FILE``) replaces any of them (all of a reason's variants). Everything is checked
when loaded, so a typo in a reason or a placeholder fails the cold start instead of a customer's message.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from leap_tracker.config import ConfigError
from leap_tracker.leap import wire
from leap_tracker.outreach.decision import ALL_REASONS, Need, utility_names
from leap_tracker.outreach.ledger import SINGLE_VARIANT

DEFAULT_TEMPLATES_RESOURCE = "templates.json"
PLACEHOLDERS = frozenset(
    {
        "ref_id",
        "connect_url",
        "utility_name",  # the utility the message is about
        "utility_names",  # every utility still to connect, as a phrase ("A and B")
        "error_code",
        "agreements",  # the agreements still to sign, as a phrase
        "other_utility_name",  # other_utility: the utility the customer connected instead
        "attempt",
    }
)
URL_PLACEHOLDERS = frozenset({"ref_id", "utilities"})
# Friendly names of the agreements Leap lists; an unknown one is spelled from its field name.
AGREEMENT_LABELS = {
    wire.AGREEMENT_PROHIBITED_RESOURCE_ATTESTATION: "prohibited resource attestation",
    wire.AGREEMENT_DEMAND_RESPONSE_PARTICIPATION: "demand response participation agreement",
}
_FALLBACK_UTILITY = "your utility"
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")  # goes into events and the ledger


class TemplateError(ConfigError):
    """A templates file or a Connect URL pattern that cannot be used."""


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    subject: string.Template
    body: string.Template


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    body: str


@dataclass(frozen=True, slots=True)
class TemplateSet:
    by_reason: Mapping[str, Mapping[str, MessageTemplate]]  # reason -> variant name -> template

    def choose(self, entry_id: str, reason: str) -> str:
        """The variant this customer gets for ``reason`` under these templates."""
        return choose_variant(entry_id, reason, self.by_reason[reason])

    def variant_for(self, entry_id: str, reason: str, recorded: str | None = None) -> str:
        """The variant to render: the one the ledger recorded for this message (a retry's is the first
        claim's), unless a redeploy removed it from the file while the message was part-way out; then,
        and for a new message, the one :meth:`choose` picks."""
        if recorded is not None and recorded in self.by_reason[reason]:
            return recorded
        return self.choose(entry_id, reason)

    def render(
        self, reason: str, values: Mapping[str, str], variant: str = SINGLE_VARIANT
    ) -> RenderedMessage:
        template = self.by_reason[reason][variant]
        return RenderedMessage(template.subject.substitute(values), template.body.substitute(values))


def choose_variant(entry_id: str, reason: str, variants: Iterable[str]) -> str:
    """One of ``variants`` for this customer and reason: SHA-256 of the entry id and the reason, modulo
    the count, over the names sorted (never ``hash()``, which differs between processes). Stable across
    retries, replays and cold starts, uniform over customers, and independent of the file's order."""
    names = sorted(variants)
    if not names:
        raise ValueError(f"no variant for reason {reason!r}")
    digest = hashlib.sha256(f"{entry_id}\x1f{reason}".encode()).digest()
    return names[int.from_bytes(digest[:8], "big") % len(names)]


def load_templates(partner_file: str = "") -> TemplateSet:
    """The defaults, with the partner's file (when given) replacing the reasons it defines."""
    default_text = resources.files(__package__).joinpath(DEFAULT_TEMPLATES_RESOURCE).read_text("utf-8")
    merged = dict(parse_templates(default_text, DEFAULT_TEMPLATES_RESOURCE))
    if partner_file:
        try:
            text = Path(partner_file).read_text("utf-8")
        except OSError as exc:
            raise TemplateError(f"OUTREACH_TEMPLATES_FILE {partner_file!r}: {exc.strerror}") from exc
        merged.update(parse_templates(text, partner_file))
    missing = sorted(set(ALL_REASONS) - set(merged))
    if missing:
        raise TemplateError(f"no template for reason(s) {missing}")
    return TemplateSet(merged)


def parse_templates(text: str, source: str) -> dict[str, dict[str, MessageTemplate]]:
    """Parse and check one templates document (``source`` names it in errors)."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise TemplateError(f"{source}: not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise TemplateError(
            f"{source}: must be a JSON object of reason -> {{subject, body}} or a list of named variants"
        )
    parsed = {}
    for reason, entry in document.items():
        if reason.startswith("_"):
            continue
        if reason not in ALL_REASONS:
            raise TemplateError(f"{source}: unknown reason {reason!r}; known: {list(ALL_REASONS)}")
        parsed[reason] = _variants(entry, f"{source}: {reason}")
    return parsed


def _variants(entry: Any, where: str) -> dict[str, MessageTemplate]:
    """One reason's templates: one object (the variant :data:`SINGLE_VARIANT`) or a list of named ones."""
    if not isinstance(entry, list):
        return {SINGLE_VARIANT: _message(entry, where)}
    if not entry:
        raise TemplateError(f"{where}: the list of variants is empty")
    variants: dict[str, MessageTemplate] = {}
    for index, variant in enumerate(entry):
        name = variant.get("name") if isinstance(variant, dict) else None
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
            raise TemplateError(
                f"{where}: variant {index + 1} needs a 'name' of 1-40 letters, digits, '_', '.' or '-' "
                "(starting with a letter or digit)"
            )
        if name in variants:
            raise TemplateError(f"{where}: the variant name {name!r} is used twice")
        variants[name] = _message(variant, f"{where} variant {name!r}")
    return variants


def _message(entry: Any, where: str) -> MessageTemplate:
    return MessageTemplate(_template(entry, "subject", where), _template(entry, "body", where))


def _template(entry: Any, part: str, where: str) -> string.Template:
    text = entry.get(part) if isinstance(entry, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(f"{where}: needs a non-empty {part!r} string")
    template = string.Template(text)
    if not template.is_valid():
        raise TemplateError(f"{where}: {part} has a malformed placeholder (write $$ for a dollar sign)")
    unknown = sorted(set(template.get_identifiers()) - PLACEHOLDERS)
    if unknown:
        raise TemplateError(
            f"{where}: {part} uses unknown placeholder(s) {unknown}; known: {sorted(PLACEHOLDERS)}"
        )
    return template


def check_connect_url_pattern(pattern: str) -> str:
    """The pattern if it uses only ``{ref_id}`` and ``{utilities}`` (plain fields); else TemplateError."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(pattern)
            if name is not None
        ]
    except ValueError as exc:
        raise TemplateError(f"OUTREACH_CONNECT_URL_PATTERN: {exc}") from exc
    for name, spec, conversion in fields:
        if name not in URL_PLACEHOLDERS or spec or conversion:
            raise TemplateError(
                f"OUTREACH_CONNECT_URL_PATTERN: only {{ref_id}} and {{utilities}} may appear, not {{{name}}}"
            )
    if "{ref_id}" not in pattern:
        raise TemplateError("OUTREACH_CONNECT_URL_PATTERN must contain {ref_id}")
    return pattern


def connect_url(pattern: str, ref_id: str, utilities: Sequence[str]) -> str:
    """The Connect URL to retry with: the Reference ID and the requested utilities, URL-encoded."""
    return pattern.format(
        ref_id=quote(ref_id, safe=""), utilities=",".join(quote(u, safe="") for u in utilities)
    )


def phrase(items: Sequence[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def agreement_label(field_name: str) -> str:
    return AGREEMENT_LABELS.get(field_name) or field_name.removesuffix("_status").replace("_", " ")


def template_values(need: Need, ref_id: str, url: str, attempt: int) -> dict[str, str]:
    """Every placeholder's value for one message (empty when it does not apply)."""
    utility = need.utility or {}
    pending = utility_names(need.pending_utilities)
    return {
        "ref_id": ref_id,
        "connect_url": url,
        "utility_name": str(utility.get(wire.UTILITY_NAME) or _FALLBACK_UTILITY),
        "utility_names": phrase(pending) or str(utility.get(wire.UTILITY_NAME) or _FALLBACK_UTILITY),
        "error_code": str(utility.get(wire.UTILITY_ERROR_CODE) or ""),
        "agreements": phrase([agreement_label(name) for name in need.pending_agreements]),
        "other_utility_name": str((need.other_utility or {}).get(wire.UTILITY_NAME) or ""),
        "attempt": str(attempt),
    }
