"""Generate schemas/<type>.json, the event-type reference of docs/events.md and the emitter's sample
stream event (events/dynamodb-stream-connection-changes.json) from the event catalog and samples; and,
from the ready filter policies (subscriber/filter-policies.json), their section of docs/events.md and
the ``FilterPolicies`` mapping and ``FilterPolicyName`` choices of subscriber/template.yaml.

    python -m devtools.generate_schemas          # write the files (``make schemas``)
    python -m devtools.generate_schemas --check  # exit 1 when a file differs from the catalog

Every example in the doc is a REAL message: the connection examples are what the emitter publishes
for the sample histories of ``devtools.event_samples`` (stored with the poller's item format, read
back from stream records), the meter, outreach and enrollment examples come from their own
builders. The tests check that every example validates against its schema and that the files match
the catalog.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from devtools import event_samples
from leap_tracker.config import MeterWatchSettings, OutreachSettings
from leap_tracker.emitter.stream import record_messages
from leap_tracker.events import catalog
from leap_tracker.events.publishing import OutgoingMessage, to_message
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import canonical_json, content_hash
from leap_tracker.meters.events import watch_event
from leap_tracker.meters.model import MeterSummary, MeterWatch
from leap_tracker.outreach.decision import History, OutreachPolicy, Snapshot, Trigger, decide
from leap_tracker.outreach.messages import requested_message, sent_event, suppressed_event
from leap_tracker.outreach.templates import load_templates
from leap_tracker.timeutil import parse_instant
from leap_tracker.webhooks import intake
from leap_tracker.webhooks.enrollment import enrollment_event
from leap_tracker.webhooks.payloads import delivery
from subscriber.filter_policies import FilterPolicy, named_policies

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS_DIR = ROOT / "schemas"
EVENTS_DOC = ROOT / "docs" / "events.md"
# For `sam local invoke EmitterFunction -e <file>` and the emitter's tests: two entries' histories.
SAMPLE_STREAM_EVENT = ROOT / "events" / "dynamodb-stream-connection-changes.json"
SUBSCRIBER_TEMPLATE = ROOT / "subscriber" / "template.yaml"
BEGIN_MARKER = "<!-- BEGIN GENERATED: event types (python -m devtools.generate_schemas; do not edit) -->"
END_MARKER = "<!-- END GENERATED: event types -->"
_DO_NOT_EDIT = "(python -m devtools.generate_schemas; do not edit)"
POLICIES_DOC_MARKERS = (
    f"<!-- BEGIN GENERATED: filter policies {_DO_NOT_EDIT} -->",
    "<!-- END GENERATED: filter policies -->",
)
POLICY_NAMES_MARKERS = (  # in subscriber/template.yaml, with the indentation of their lines
    f"    # BEGIN GENERATED: filter policy names {_DO_NOT_EDIT}",
    "    # END GENERATED: filter policy names",
)
POLICY_MAPPING_MARKERS = (
    f"  # BEGIN GENERATED: filter policies {_DO_NOT_EDIT}",
    "  # END GENERATED: filter policies",
)
NO_POLICY = "none"  # the FilterPolicyName of a subscriber with no ready policy (every event, or its own)


def history_messages(history: list[dict[str, Any]]) -> list[OutgoingMessage]:
    """What the emitter publishes for a history of stored snapshots, through the real record path."""
    messages: list[OutgoingMessage] = []
    for raw in event_samples.history_records(history):
        record = DynamoDBRecord(raw)
        messages += record_messages(record.dynamodb.old_image, record.dynamodb.new_image)
    return messages


def _meter_events() -> list[dict[str, Any]]:
    completed = datetime(2025, 3, 5, 8, 34, 57, tzinfo=UTC)
    watch = MeterWatch(
        entry_id="CAISO_62631455-9dfd-433b-9482-fd043f2336d4_Test1012",
        ref_id="Test1012",
        transmission_region="CAISO",
        completed_at=completed,
        sequence=5,
        opened_at=datetime(2025, 3, 5, 9, 0, 3, tzinfo=UTC),
        due_at=None,
        checks=2,
    )
    meter = MeterSummary(
        "mtr_01HQ7Z3X9K2M4N6P8R0T", event_samples.SDGE, datetime(2025, 3, 6, 11, 12, 0, tzinfo=UTC)
    )
    settings = MeterWatchSettings()
    return [
        watch_event(
            catalog.METER_APPEARED, watch, datetime(2025, 3, 6, 12, 0, 0, tzinfo=UTC), settings, [meter]
        ),
        watch_event(catalog.METER_OVERDUE, watch, datetime(2025, 3, 8, 9, 0, 0, tzinfo=UTC), settings),
        watch_event(catalog.METER_WATCH_EXPIRED, watch, datetime(2025, 3, 19, 9, 0, 0, tzinfo=UTC), settings),
    ]


def _outreach_events() -> list[dict[str, Any]]:
    """A customer who cancelled at the utility: messaged once, then a new state within the cooldown."""
    entry = event_samples.commercial_history()[2]
    snapshot = Snapshot(entry, content_hash(canonical_json(entry)), sequence=3)
    now = parse_instant(entry[wire.ENTRY_LAST_INTERACTION]) + timedelta(hours=2)
    policy = OutreachPolicy()
    decision = decide(snapshot, History(), policy, now, Trigger.EVENT)
    pattern = OutreachSettings().connect_url_pattern
    message = requested_message(snapshot, decision, load_templates(), pattern, now)
    sent = sent_event(message, ["webhook"], now, snapshot.sequence)
    history = History(
        attempts=1,
        last_sent_at=now,
        last_reason=decision.need.reason,
        last_state="previous-state",  # the customer moved on since: a new state, not a duplicate
        state_sends=1,
    )
    later = now + timedelta(hours=1)
    again = decide(snapshot, history, policy, later, Trigger.EVENT)
    return [message.event, sent, suppressed_event(snapshot, again, history.attempts, later)]


def _enrollment_events() -> list[dict[str, Any]]:
    """What the webhook processor publishes for two of Leap's enrollment webhooks (its own builder)."""
    meter = {
        wire.WEBHOOK_METER_ID: "5af2968d-2652-4ebf-9057-b831102a94ef",
        wire.WEBHOOK_PARTNER_REFERENCE: "Test1012",
        wire.WEBHOOK_TRANSMISSION_REGION: "CAISO",
        wire.WEBHOOK_METER_TYPE: "UTILITY_METER",
    }
    action = {
        wire.WEBHOOK_ACTION_CODE: "SIGN_PROGRAM_AGREEMENT",
        wire.WEBHOOK_ACTION_TYPE: "AGREEMENT",
        wire.WEBHOOK_ACTION_DESCRIPTION: "Sign the program agreement for this meter",
        wire.WEBHOOK_ACTION_DEADLINE: "2025-04-01T00:00:00Z",
    }
    payloads = [
        {
            wire.WEBHOOK_EVENT_TYPE: wire.WEBHOOK_ENROLLMENT_REQUIRED_ACTIONS,
            **meter,
            wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS: "PENDING",
            wire.WEBHOOK_REQUIRED_ACTIONS: {wire.WEBHOOK_PARTNER_ACTIONS: [action]},
        },
        {
            wire.WEBHOOK_EVENT_TYPE: wire.WEBHOOK_ENROLLMENT_GLOBAL_STATUS,
            **meter,
            wire.WEBHOOK_GLOBAL_ENROLLMENT_STATUS: wire.ENROLLMENT_INELIGIBLE,
        },
    ]
    events = []
    for n, payload in enumerate(payloads):
        event_id = f"9e0c6f0a-3b1d-4f5e-8a7b-00000000000{n}"
        body = json.dumps({wire.WEBHOOK_EVENT_ID: event_id, wire.WEBHOOK_PAYLOAD: payload})
        attributes = {
            intake.QUEUE_ATTR_EVENT_ID: event_id,
            intake.QUEUE_ATTR_EVENT_TYPE: payload[wire.WEBHOOK_EVENT_TYPE],
            intake.QUEUE_ATTR_RECEIVED_AT: "2025-03-07T15:04:05Z",
        }
        event = enrollment_event(delivery(body, attributes))
        assert event is not None, payload[wire.WEBHOOK_EVENT_TYPE]
        events.append(event)
    return events


def example_messages() -> dict[str, OutgoingMessage]:
    """One real message per type that has a producer: the first one the sample histories yield."""
    messages = [
        *history_messages(event_samples.commercial_history()),
        *history_messages(event_samples.unusual_history()),
        *(to_message(event, event["data"]["entry_id"]) for event in _meter_events() + _outreach_events()),
        *(to_message(event, event["data"]["meter_id"]) for event in _enrollment_events()),
    ]
    examples: dict[str, OutgoingMessage] = {}
    for message in messages:
        examples.setdefault(json.loads(message.body)["type"], message)
    return examples


def sample_stream_event() -> dict[str, Any]:
    records = event_samples.interleave(event_samples.commercial_history(), event_samples.unusual_history())
    return event_samples.stream_event(list(records))


def schema_files() -> dict[Path, str]:
    return {
        SCHEMAS_DIR / f"{name}.json": json.dumps(catalog.json_schema(name), indent=2) + "\n"
        for name in catalog.CATALOG
    }


def types_section(examples: dict[str, OutgoingMessage]) -> str:
    lines = [BEGIN_MARKER, ""]
    lines += ["| type | topic | published when |", "|---|---|---|"]
    lines += [
        f"| [`{t.name}`](#{_anchor(t.name)}) | {t.topic} | {t.description} |"
        for t in catalog.CATALOG.values()
    ]
    for kind in catalog.CATALOG.values():
        lines += ["", f"### `{kind.name}`", "", kind.description, ""]
        lines += [f"Schema: [`schemas/{kind.name}.json`](../schemas/{kind.name}.json) (`{kind.dataschema}`)."]
        example = examples.get(kind.name)
        if example is None:
            lines += ["", "_No example yet: its producer is not built._"]
            continue
        attributes = ", ".join(f"`{name}={value}`" for name, value in example.attributes.items())
        lines += ["", f"Message attributes: {attributes}.", "", "<details><summary>Example</summary>", ""]
        body = json.dumps(json.loads(example.body), indent=2, ensure_ascii=False)
        lines += ["```json", body, "```", "", "</details>"]
    lines += ["", END_MARKER]
    return "\n".join(lines)


def policies_section(policies: dict[str, FilterPolicy]) -> str:
    """Each ready policy as docs/events.md shows it: what it selects, then a fenced block naming it."""
    lines = [POLICIES_DOC_MARKERS[0]]
    for policy in policies.values():
        members = [
            f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
            for key, value in policy.policy.items()
        ]
        lines += [
            "",
            f"{policy.title}:",
            "",
            f"```json filter-policy name={policy.name} scope={policy.scope}",
        ]
        lines += ["{", ",\n".join(members), "}", "```"]
    lines += ["", POLICIES_DOC_MARKERS[1]]
    return "\n".join(lines)


def policy_names_lines(policies: dict[str, FilterPolicy]) -> str:
    names = ", ".join([NO_POLICY, *policies])
    return "\n".join([POLICY_NAMES_MARKERS[0], f"    AllowedValues: [{names}]", POLICY_NAMES_MARKERS[1]])


def policy_mapping_lines(policies: dict[str, FilterPolicy]) -> str:
    """The named policies as a CloudFormation mapping: name -> Scope and Policy (a JSON string)."""
    lines = [POLICY_MAPPING_MARKERS[0], "  FilterPolicies:"]
    lines += [
        f"    {NO_POLICY}:  # no filter: never applied; Fn::FindInMap needs the key on either branch",
        "      Scope: MessageAttributes",
        "      Policy: '{}'",
    ]
    for policy in policies.values():
        quoted = policy.policy_json.replace("'", "''")  # a YAML single-quoted scalar
        lines += [f"    {policy.name}:", f"      Scope: {policy.scope}", f"      Policy: '{quoted}'"]
    lines.append(POLICY_MAPPING_MARKERS[1])
    return "\n".join(lines)


def _replaced(text: str, markers: tuple[str, str], section: str) -> str:
    """``text`` with everything from the first marker to the end of the second replaced by ``section``."""
    begin, end = markers
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + section + text[stop:]


def rendered_doc(text: str, examples: dict[str, OutgoingMessage]) -> str:
    text = _replaced(text, (BEGIN_MARKER, END_MARKER), types_section(examples))
    return _replaced(text, POLICIES_DOC_MARKERS, policies_section(named_policies()))


def rendered_subscriber_template(text: str) -> str:
    policies = named_policies()
    text = _replaced(text, POLICY_NAMES_MARKERS, policy_names_lines(policies))
    return _replaced(text, POLICY_MAPPING_MARKERS, policy_mapping_lines(policies))


def expected_files() -> dict[Path, str]:
    files = schema_files()
    files[EVENTS_DOC] = rendered_doc(EVENTS_DOC.read_text(), example_messages())
    files[SUBSCRIBER_TEMPLATE] = rendered_subscriber_template(SUBSCRIBER_TEMPLATE.read_text())
    files[SAMPLE_STREAM_EVENT] = json.dumps(sample_stream_event(), indent=2, ensure_ascii=False) + "\n"
    return files


def stale_files() -> list[Path]:
    """Files that differ from what the catalog generates, and schema files of no catalog type."""
    expected = expected_files()
    stale = [path for path, text in expected.items() if not path.exists() or path.read_text() != text]
    stale += [path for path in SCHEMAS_DIR.glob("*.json") if path not in expected]
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale files instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run: make schemas)", file=sys.stderr)
        return 1 if stale else 0
    SCHEMAS_DIR.mkdir(exist_ok=True)
    for path, text in expected_files().items():
        path.write_text(text)
    for path in SCHEMAS_DIR.glob("*.json"):
        if path.stem not in catalog.CATALOG:
            path.unlink()
    return 0


def _anchor(name: str) -> str:
    """GitHub's heading anchor for "### `a.b_c`": lower case, punctuation but "_" and "-" dropped."""
    return name.replace(".", "")


if __name__ == "__main__":
    sys.exit(main())
