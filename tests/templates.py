"""The stack templates as tests read them: through the SAM transform, Conditions applied, intrinsics
resolved, references left as names (``Ref X`` is ``X``, ``Fn::GetAtt X.Arn`` is ``X.Arn``).

The main stack's test configuration lives here too (its pseudo parameters, the secrets and key it is
given, the two configurations every template test runs in), so the security and alarm tests share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.local_runner.template import Resolver, load_sam_template, resolve_parameters, transform

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "template.yaml"
REGION = "us-east-1"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "stack",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
LEAP_KEY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap/api-key-AbCdEf"
WEBHOOK_SECRET_ARN = (
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap/outreach-webhook-secret-AbCdEf"
)
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PARTNERS = ["111111111111", "222222222222"]
CONFIGURATIONS = {
    "defaults": {},
    "key, partners and webhook": {
        "KmsKeyArn": KEY_ARN,
        "SubscriberAccountIds": ",".join(PARTNERS),
        "OutreachChannels": "webhook,topic",
        "OutreachWebhookUrl": "https://partner.example/outreach",
        "OutreachWebhookSecretArn": WEBHOOK_SECRET_ARN,
        "AlarmEmail": "operations@partner.example",
    },
}
configurations = pytest.mark.parametrize("overrides", CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())


def resolved_resources(
    cfn: dict[str, Any], values: dict[str, Any], pseudo: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each resource a transformed template creates with these parameter values, resolved."""
    resolver = Resolver(
        cfn, values, pseudo, lambda name, attribute: f"{name}.{attribute}" if attribute else name
    )
    return {
        logical_id: {"Type": r["Type"], "Properties": resolver.resolve(r.get("Properties", {}))}
        for logical_id, r in cfn["Resources"].items()
        if resolver.resource_enabled(logical_id)
    }


def of_type(resources: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- the main stack ---------------------------------------------------------------------------------


def sam_template() -> dict[str, Any]:
    return load_sam_template(TEMPLATE)


def parameters(sam: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    return resolve_parameters(sam["Parameters"], {"LeapApiKeySecretArn": LEAP_KEY_ARN, **overrides})


def deployed(overrides: dict[str, str], sam: dict[str, Any] | None = None) -> dict[str, Any]:
    """The transformed main template; ``sam``: a (planted) copy instead of template.yaml."""
    sam = sam or sam_template()
    return transform(sam, parameters(sam, overrides), REGION)


def stack(overrides: dict[str, str], sam: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Each resource the main stack creates in this configuration (see the module docstring)."""
    sam = sam or sam_template()
    values = parameters(sam, overrides)
    return resolved_resources(transform(sam, values, REGION), values, PSEUDO)
