"""The settings a deployed function runs with, so a command derives exactly what the function would.

Event ids and bodies depend on the diff's rules (the actionable delay is in every body, the agreement
done statuses decide a type), and the outreach decision on its policy. So with ``--stack-name`` (or
the function's own flag) a command reads that function's environment (Lambda GetFunctionConfiguration)
and loads it with the functions' own ``config.load_settings``; without, it loads this machine's
environment, as a local run would. The answer says which it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from leap_tracker.config import VARIABLES, ConfigError, OutreachSettings, Settings, load_settings
from leap_tracker.events.diff import DiffRules
from leap_tracker.outreach.decision import OutreachPolicy
from leap_tracker_cli.discovery import Discovery, Resource, arn_region
from leap_tracker_cli.result import CommandError

EMITTER_FUNCTION = Resource(
    what="the emitter function",
    flag="--emitter-function",
    output="EmitterFunctionName",
    logical_id="EmitterFunction",
    variable="EMITTER_FUNCTION_NAME",  # set by hand: no function reads it
)
OUTREACH_FUNCTION = Resource(
    what="the outreach function",
    flag="--outreach-function",
    output="OutreachFunctionName",
    logical_id="OutreachFunction",
    variable="OUTREACH_FUNCTION_NAME",  # set by hand: no function reads it
)
_RULE_VARIABLES = tuple(
    VARIABLES[Settings][name].name for name in ("actionable_delay_minutes", "agreement_done_statuses")
)
_POLICY_VARIABLES = (
    *_RULE_VARIABLES,
    *(
        VARIABLES[OutreachSettings][name].name
        for name in (
            "cooldown_hours",
            "max_attempts",
            "notify_other_utility",
            "channels",
            "holdout_percent",
            "holdout_hours",
        )
    ),
)


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    settings: Settings
    source: str  # "the environment of function F (stack S resource EmitterFunction)", ...

    @property
    def rules(self) -> DiffRules:
        return DiffRules.from_settings(self.settings)

    @property
    def policy(self) -> OutreachPolicy:
        return OutreachPolicy.from_settings(self.settings)

    def rules_document(self) -> dict[str, Any]:
        rules = self.rules
        return {
            "source": self.source,
            "actionable_delay_minutes": int(rules.actionable_delay.total_seconds() // 60),
            "agreement_done_statuses": sorted(rules.agreement_done_statuses),
        }

    def policy_document(self) -> dict[str, Any]:
        policy = self.policy
        return {
            "source": self.source,
            "actionable_delay_minutes": int(policy.actionable_delay.total_seconds() // 60),
            "cooldown_hours": policy.cooldown.total_seconds() / 3600,
            "max_attempts": policy.max_attempts,
            "notify_other_utility": policy.notify_other_utility,
            "agreement_done_statuses": sorted(policy.agreement_done_statuses),
            "holdout_percent": policy.holdout_percent,
            "holdout_hours": policy.holdout.total_seconds() / 3600,
            "channels": list(self.settings.outreach.channels),
        }


def function_settings(discovery: Discovery, function: Resource) -> FunctionSettings:
    """The function's settings: its deployed environment when it can be found, else this machine's."""
    found = discovery.locate(function)
    if found is None:
        relevant = _POLICY_VARIABLES if function is OUTREACH_FUNCTION else _RULE_VARIABLES
        return _loaded(discovery.environ, _local_source(discovery.environ, relevant))
    lambda_client = discovery.client("lambda", region_name=arn_region(found.value))
    configuration = lambda_client.get_function_configuration(FunctionName=found.value)
    variables = (configuration.get("Environment") or {}).get("Variables") or {}
    return _loaded(variables, f"the environment of function {found.value} ({found.source})")


def _loaded(environ: Mapping[str, str], source: str) -> FunctionSettings:
    try:
        return FunctionSettings(load_settings(environ), source)
    except ConfigError as exc:
        raise CommandError(f"{source}: {exc}") from None


def _local_source(environ: Mapping[str, str], relevant: tuple[str, ...]) -> str:
    given = [name for name in relevant if environ.get(name, "").strip()]
    if not given:
        return f"the defaults (none of {', '.join(relevant)} is set here)"
    return f"this machine's environment ({', '.join(given)}; the rest default)"
