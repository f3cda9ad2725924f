"""template.yaml's own definitions, for tests and benchmarks that use plain moto (not the local runner).

One place reads them, so a table in moto is always the table that deploys: keys, GSI, billing, stream,
encryption and TTL come from the template, never from a copy.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
CONNECTIONS_TABLE_ID = "ConnectionsTable"


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (``!Ref`` ...) read as plain values: fast (cfn-lint's
    loader costs a second to import) and enough for properties that use no intrinsic function."""


def _untagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_TemplateLoader.add_multi_constructor("!", _untagged)


@cache
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_TemplateLoader)


def resource_properties(logical_id: str) -> dict[str, Any]:
    return template()["Resources"][logical_id]["Properties"]


def create_connections_table(client: Any, name: str = "connections") -> str:
    """Create, with a boto3 DynamoDB client, the connections table exactly as template.yaml declares it."""
    p = resource_properties(CONNECTIONS_TABLE_ID)
    client.create_table(
        TableName=name,
        BillingMode=p["BillingMode"],
        AttributeDefinitions=p["AttributeDefinitions"],
        KeySchema=p["KeySchema"],
        GlobalSecondaryIndexes=p["GlobalSecondaryIndexes"],
        StreamSpecification={
            "StreamEnabled": True,
            "StreamViewType": p["StreamSpecification"]["StreamViewType"],
        },
        SSESpecification={"Enabled": p["SSESpecification"]["SSEEnabled"]},
    )
    ttl = p["TimeToLiveSpecification"]
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": ttl["Enabled"], "AttributeName": ttl["AttributeName"]},
    )
    return name
