"""Message variants: the templates file format, the choice of a customer's variant, and the variant a
message is stamped with (kept across a retry whose deployment has another templates file)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leap_tracker.events import catalog
from leap_tracker.outreach import ledger, messages
from leap_tracker.outreach.decision import Action, History, OutreachPolicy, Trigger, decide
from leap_tracker.outreach.ledger import SINGLE_VARIANT
from leap_tracker.outreach.templates import TemplateError, choose_variant, load_templates, parse_templates
from tests.builders import ACTIONABLE, snapshot, stalled_examples
from tests.fakes.outreach import (
    CONNECT_URL_PATTERN,
    MemoryOutreachStore,
    RecordingChannel,
    RecordingSink,
    StoreUnavailable,
    outreach_service,
)

IDS = [f"entry-{n:04d}" for n in range(1000)]
REASON = "utility_error.USER_CANCELED"
NOW = ACTIONABLE + timedelta(minutes=1)


def variant(name: str) -> dict[str, str]:
    return {"name": name, "subject": f"[{name}] ${{utility_name}}", "body": f"{name}: ${{connect_url}}"}


def templates_file(tmp_path: Path, names: list[str], reason: str = REASON) -> str:
    path = tmp_path / f"templates-{'-'.join(names)}.json"
    path.write_text(json.dumps({reason: [variant(name) for name in names]}), encoding="utf-8")
    return str(path)


# --- the choice ------------------------------------------------------------------------------------


def test_the_choice_is_stable_across_calls_and_processes() -> None:
    here = [choose_variant(entry_id, REASON, ["a", "b", "c"]) for entry_id in IDS[:200]]
    code = (
        "import json, sys\n"
        "from leap_tracker.outreach.templates import choose_variant\n"
        f"print(json.dumps([choose_variant(i, {REASON!r}, ['a', 'b', 'c']) for i in {IDS[:200]!r}]))\n"
    )
    # Another interpreter with another hash seed: Python's hash() would differ, the choice must not.
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )

    assert here == [choose_variant(entry_id, REASON, ["a", "b", "c"]) for entry_id in IDS[:200]]
    assert json.loads(other.stdout) == here
    assert len(set(here)) == 3


@pytest.mark.parametrize("names", [["a", "b"], ["a", "b", "c"], ["control", "friendly", "short", "urgent"]])
def test_the_choice_is_roughly_uniform_over_a_thousand_customers(names: list[str]) -> None:
    counts = Counter(choose_variant(entry_id, REASON, names) for entry_id in IDS)

    expected = len(IDS) / len(names)
    assert set(counts) == set(names)
    assert all(0.8 * expected <= count <= 1.2 * expected for count in counts.values()), counts


def test_the_choice_ignores_the_order_the_variants_are_written_in(tmp_path: Path) -> None:
    written = load_templates(templates_file(tmp_path, ["b", "c", "a"]))
    reordered = load_templates(templates_file(tmp_path, ["a", "b", "c"]))

    assert [written.choose(i, REASON) for i in IDS] == [reordered.choose(i, REASON) for i in IDS]


def test_the_choice_depends_on_the_reason_too() -> None:
    first = [choose_variant(i, "not_started", ["a", "b"]) for i in IDS]
    other = [choose_variant(i, "agreement_pending", ["a", "b"]) for i in IDS]

    assert first != other  # a customer is not in the same arm for every reason by construction


def test_one_template_is_the_single_variant_for_everybody() -> None:
    templates = load_templates()

    assert {templates.choose(i, REASON) for i in IDS[:50]} == {SINGLE_VARIANT}
    with pytest.raises(ValueError, match="no variant"):
        choose_variant("x", REASON, [])


# --- the file format -------------------------------------------------------------------------------


def test_a_reason_may_list_named_variants_beside_reasons_with_one_template(tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    path.write_text(
        json.dumps(
            {
                "not_started": {"subject": "one ${ref_id}", "body": "${connect_url}"},
                REASON: [variant("friendly"), variant("short")],
            }
        )
    )

    templates = load_templates(str(path))

    assert set(templates.by_reason["not_started"]) == {SINGLE_VARIANT}
    assert set(templates.by_reason[REASON]) == {"friendly", "short"}
    rendered = templates.render(REASON, {"utility_name": "PGE", "connect_url": "https://x"}, "short")
    assert (rendered.subject, rendered.body) == ("[short] PGE", "short: https://x")
    assert set(templates.by_reason["agreement_pending"]) == {SINGLE_VARIANT}  # the defaults stay


@pytest.mark.parametrize(
    ("variants", "complaint"),
    [
        ([], "utility_error.USER_CANCELED: the list of variants is empty"),
        ([variant("a"), variant("a")], "utility_error.USER_CANCELED: the variant name 'a' is used twice"),
        ([{"subject": "s", "body": "b"}], "utility_error.USER_CANCELED: variant 1 needs a 'name'"),
        ([variant("a"), {**variant("b c")}], "variant 2 needs a 'name'"),
        (["just text"], "variant 1 needs a 'name'"),
        (
            [variant("a"), {"name": "b", "subject": "s"}],
            "USER_CANCELED variant 'b': needs a non-empty 'body'",
        ),
        (
            [{"name": "b", "subject": "${first_name}", "body": "x"}],
            "variant 'b': subject uses unknown placeholder(s) ['first_name']",
        ),
        (
            [{"name": "b", "subject": "costs $5", "body": "x"}],
            "variant 'b': subject has a malformed placeholder",
        ),
    ],
)
def test_a_bad_list_of_variants_fails_loudly_naming_the_reason(variants: list[Any], complaint: str) -> None:
    with pytest.raises(TemplateError) as error:
        parse_templates(json.dumps({REASON: variants}), "partner.json")

    assert complaint in str(error.value)
    assert str(error.value).startswith("partner.json: utility_error.USER_CANCELED")


# --- the message carries its variant ---------------------------------------------------------------


def test_the_message_and_its_audit_carry_the_variant_it_was_rendered_from(tmp_path: Path) -> None:
    templates = load_templates(templates_file(tmp_path, ["a", "b"]))
    snap = snapshot(stalled_examples()[REASON], sequence=2)
    decision = decide(snap, History(), OutreachPolicy(), NOW, Trigger.EVENT)

    message = messages.requested_message(snap, decision, templates, CONNECT_URL_PATTERN, NOW)
    sent = messages.sent_event(message, ["webhook"], NOW, snap.sequence)

    chosen = choose_variant(snap.entry_id, REASON, ["a", "b"])
    assert message.event["data"]["variant"] == chosen
    assert message.event["data"]["subject"].startswith(f"[{chosen}] ")
    assert json.loads(message.body)["data"]["variant"] == chosen  # the webhook's body
    assert sent["data"]["variant"] == chosen


def test_a_variant_removed_while_its_message_was_part_way_out_still_renders(tmp_path: Path) -> None:
    snap = snapshot(stalled_examples()[REASON], sequence=2)
    decision = decide(snap, History(), OutreachPolicy(), NOW, Trigger.EVENT)
    stamp = ledger.Stamp(NOW, 1, 2, "https://x.test/", "gone")

    message = messages.stamped_message(
        snap, decision, load_templates(templates_file(tmp_path, ["a", "b"])), stamp
    )

    chosen = choose_variant(snap.entry_id, REASON, ["a", "b"])
    assert message.event["data"]["subject"].startswith(f"[{chosen}] ")  # the variant chosen now
    assert message.event["data"]["variant"] == "gone"  # the record stays the first claim's


def other_variants(entry_id: str, names: list[str]) -> list[str]:
    """``names`` plus the fewest added variants that move this customer to another one."""
    first = choose_variant(entry_id, REASON, names)
    for extra in ("c", "d", "e", "f", "g", "h", "i", "j"):
        names = [*names, extra]
        if choose_variant(entry_id, REASON, names) != first:
            return names
    raise AssertionError("no added variant moves this customer")


def test_a_retry_after_a_redeploy_that_adds_a_variant_keeps_the_first_choice(tmp_path: Path) -> None:
    store, sink = MemoryOutreachStore(), RecordingSink()
    raw = stalled_examples()[REASON]
    store.put_snapshot(raw, 1)
    before = ["a", "b"]
    after = other_variants(raw["id"], before)
    first_channel = RecordingChannel()
    outreach = outreach_service(store, [first_channel], sink)
    outreach.templates = load_templates(templates_file(tmp_path, before))
    first_choice = outreach.templates.choose(raw["id"], REASON)

    armed: list[str] = []

    def fail_once_after_the_audit(message: Any) -> None:
        if message.attributes["type"] == catalog.OUTREACH_SENT and not armed:
            armed.append(message.event_id)
            store.failing_writes = 1  # the mark-sent write fails: the queue retries

    sink.after_publish = fail_once_after_the_audit
    with pytest.raises(StoreUnavailable):
        outreach.handle_event({"data": {"connection": raw}}, NOW, NOW + timedelta(minutes=3))

    redeployed = outreach_service(store, [RecordingChannel()], sink)
    redeployed.templates = load_templates(templates_file(tmp_path, after))
    assert redeployed.templates.choose(raw["id"], REASON) != first_choice  # a new claim would move
    retry = NOW + timedelta(minutes=13)
    result = redeployed.handle_event({"data": {"connection": raw}}, retry, retry + timedelta(minutes=3))

    assert result.action is Action.SEND
    first, again = sink.of_type(catalog.OUTREACH_SENT)
    assert again.body == first.body
    assert json.loads(again.body)["data"]["variant"] == first_choice
    assert first_channel.delivered[0].event["data"]["variant"] == first_choice
    (entry,) = store.states[raw["id"]].ledger.values()
    assert entry.stamp.variant == first_choice
