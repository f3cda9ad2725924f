"""The ready filter policies: one source, ``filter-policies.json`` beside this module.

Everything else is generated from it or reads it: the "Ready filter policies" section of
docs/events.md and the ``FilterPolicies`` mapping and ``FilterPolicyName`` choices of
subscriber/template.yaml (``make schemas``, drift-tested), the tests, the demo and the CLI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().with_name("filter-policies.json")
SCOPES = ("MessageAttributes", "MessageBody")


@dataclass(frozen=True, slots=True)
class FilterPolicy:
    name: str
    title: str  # one line saying what it selects
    scope: str  # the subscription's FilterPolicyScope
    policy: dict[str, Any]

    @property
    def policy_json(self) -> str:
        """The policy as SNS takes it: a JSON string."""
        return json.dumps(self.policy, separators=(",", ":"), ensure_ascii=False)


def named_policies() -> dict[str, FilterPolicy]:
    """Name -> policy, in the file's order (read anew each time: callers may change what they get)."""
    raw = json.loads(SOURCE.read_text(encoding="utf-8"))
    policies = {
        name: FilterPolicy(name, spec["title"], spec["scope"], spec["policy"]) for name, spec in raw.items()
    }
    for policy in policies.values():
        if policy.scope not in SCOPES:
            raise ValueError(f"{SOURCE.name}: {policy.name} has scope {policy.scope!r}, not one of {SCOPES}")
    return policies


def named_policy(name: str) -> FilterPolicy:
    try:
        return named_policies()[name]
    except KeyError:
        raise LookupError(f"no ready filter policy {name!r}; there are {sorted(named_policies())}") from None
