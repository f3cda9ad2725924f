"""Creating the template's resources in moto, and what ``Ref``/``Fn::GetAtt`` answer for each.

Created in moto: DynamoDB tables (keys, indexes, stream, billing, SSE, TTL, point-in-time recovery),
SNS topics (FIFO, KMS key, inline subscriptions), SQS queues (every queue attribute, redrive),
SNS subscriptions (filter policy and its scope, raw delivery, redrive), queue and topic policies,
Secrets Manager secrets, CloudWatch alarms and dashboards (stored: moto evaluates no alarm).
Functions, their URLs, event source mappings, schedules, layers, IAM roles and log groups are not
created in moto: the runner plays them itself, so they only get names and ARNs. Any other type is listed in
:attr:`Resources.not_emulated` and answers ``Ref`` with its logical id.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

PLAYED_BY_RUNNER = {
    "AWS::Lambda::Function",
    "AWS::Lambda::EventSourceMapping",
    "AWS::Lambda::LayerVersion",
    "AWS::Lambda::Permission",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Lambda::Url",
    "AWS::Scheduler::Schedule",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::Logs::LogGroup",
}


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    ref: Any  # what Ref answers
    attributes: Mapping[str, Any] = field(default_factory=dict)  # what Fn::GetAtt answers
    properties: Mapping[str, Any] = field(default_factory=dict)  # resolved properties


class Resources(Mapping[str, Resource]):
    """The created resources by logical id, with typed shortcuts for the common look-ups."""

    def __init__(self) -> None:
        self._by_id: dict[str, Resource] = {}
        self.not_emulated: dict[str, str] = {}  # logical id -> type

    def add(self, resource: Resource) -> None:
        self._by_id[resource.logical_id] = resource

    def __getitem__(self, logical_id: str) -> Resource:
        return self._by_id[logical_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self._by_id.values() if r.type == resource_type]

    def _typed(self, logical_id: str, resource_type: str) -> Resource:
        resource = self._by_id[logical_id]
        if resource.type != resource_type:
            raise TypeError(f"{logical_id} is a {resource.type}, not a {resource_type}")
        return resource

    def table_name(self, logical_id: str) -> str:
        return self._typed(logical_id, "AWS::DynamoDB::Table").ref

    def stream_arn(self, logical_id: str) -> str:
        return self._typed(logical_id, "AWS::DynamoDB::Table").attributes["StreamArn"]

    def topic_arn(self, logical_id: str) -> str:
        return self._typed(logical_id, "AWS::SNS::Topic").ref

    def queue_url(self, logical_id: str) -> str:
        return self._typed(logical_id, "AWS::SQS::Queue").ref

    def queue_arn(self, logical_id: str) -> str:
        return self._typed(logical_id, "AWS::SQS::Queue").attributes["Arn"]

    def function_name(self, logical_id: str) -> str:
        return self._typed(logical_id, "AWS::Lambda::Function").ref

    def find_by_attribute(self, name: str, value: Any) -> Resource:
        for resource in self._by_id.values():
            if resource.attributes.get(name) == value:
                return resource
        raise KeyError(f"no resource has {name}={value!r}")


class Provisioner:
    """Turns resolved CloudFormation properties into moto API calls."""

    def __init__(
        self,
        client: Callable[[str], Any],
        *,
        stack_name: str,
        region: str,
        account_id: str,
    ) -> None:
        self._client = client
        self._stack_name = stack_name
        self._region = region
        self._account = account_id

    def physical_name(self, logical_id: str, suffix: str = "", limit: int = 80) -> str:
        """CloudFormation's generated-name shape (stack-LogicalId), without the random part."""
        return f"{self._stack_name}-{logical_id}"[: limit - len(suffix)] + suffix

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self._region}:{self._account}:{resource}"

    def create(self, logical_id: str, resource_type: str, properties: dict[str, Any]) -> Resource | None:
        create = self._CREATORS.get(resource_type)
        if create is not None:
            return create(self, logical_id, properties)
        return None

    # -- DynamoDB -------------------------------------------------------------------------------
    def _table(self, logical_id: str, p: dict[str, Any]) -> Resource:
        ddb = self._client("dynamodb")
        name = p.get("TableName") or self.physical_name(logical_id, limit=255)
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": p["AttributeDefinitions"],
            "KeySchema": p["KeySchema"],
            "BillingMode": p.get("BillingMode", "PROVISIONED"),
        }
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput", "TableClass"):
            if key in p:
                request[key] = p[key]
        if "StreamSpecification" in p:
            request["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": p["StreamSpecification"]["StreamViewType"],
            }
        sse = p.get("SSESpecification")
        if sse:
            request["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled", False))}
            for source, target in (("SSEType", "SSEType"), ("KMSMasterKeyId", "KMSMasterKeyId")):
                if source in sse:
                    request["SSESpecification"][target] = sse[source]
        if "DeletionProtectionEnabled" in p:
            request["DeletionProtectionEnabled"] = bool(p["DeletionProtectionEnabled"])
        description = ddb.create_table(**request)["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "AttributeName": ttl["AttributeName"],
                    "Enabled": bool(ttl["Enabled"]),
                },
            )
        pitr = p.get("PointInTimeRecoverySpecification")
        if pitr:
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={
                    "PointInTimeRecoveryEnabled": bool(pitr.get("PointInTimeRecoveryEnabled", False))
                },
            )
        attributes = {"Arn": description["TableArn"]}
        if "LatestStreamArn" in description:
            attributes["StreamArn"] = description["LatestStreamArn"]
        return Resource(logical_id, "AWS::DynamoDB::Table", name, attributes, p)

    # -- SQS ------------------------------------------------------------------------------------
    _QUEUE_ATTRIBUTES = (
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "RedrivePolicy",
        "RedriveAllowPolicy",
        "FifoQueue",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "SqsManagedSseEnabled",
    )

    def _queue(self, logical_id: str, p: dict[str, Any]) -> Resource:
        fifo = _truthy(p.get("FifoQueue", False))
        name = p.get("QueueName") or self.physical_name(logical_id, ".fifo" if fifo else "")
        attributes = {key: _attribute_text(p[key]) for key in self._QUEUE_ATTRIBUTES if key in p}
        url = self._client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = self.arn("sqs", name)
        return Resource(
            logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url}, p
        )

    def _queue_policy(self, logical_id: str, p: dict[str, Any]) -> Resource:
        for url in p["Queues"]:
            self._client("sqs").set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(p["PolicyDocument"])}
            )
        return Resource(logical_id, "AWS::SQS::QueuePolicy", logical_id, {}, p)

    # -- SNS ------------------------------------------------------------------------------------
    _TOPIC_ATTRIBUTES = (
        "DisplayName",
        "KmsMasterKeyId",
        "FifoTopic",
        "ContentBasedDeduplication",
        "SignatureVersion",
        "TracingConfig",
    )

    def _topic(self, logical_id: str, p: dict[str, Any]) -> Resource:
        fifo = _truthy(p.get("FifoTopic", False))
        name = p.get("TopicName") or self.physical_name(logical_id, ".fifo" if fifo else "", limit=256)
        attributes = {key: _attribute_text(p[key]) for key in self._TOPIC_ATTRIBUTES if key in p}
        sns = self._client("sns")
        arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
        for inline in p.get("Subscription", []):
            sns.subscribe(TopicArn=arn, Protocol=inline["Protocol"], Endpoint=inline["Endpoint"])
        return Resource(logical_id, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": name}, p)

    _SUBSCRIPTION_ATTRIBUTES = (
        "RawMessageDelivery",
        "FilterPolicy",
        "FilterPolicyScope",
        "RedrivePolicy",
        "DeliveryPolicy",
        "SubscriptionRoleArn",
    )

    def _subscription(self, logical_id: str, p: dict[str, Any]) -> Resource:
        attributes = {key: _attribute_text(p[key]) for key in self._SUBSCRIPTION_ATTRIBUTES if key in p}
        arn = self._client("sns").subscribe(
            TopicArn=p["TopicArn"],
            Protocol=p["Protocol"],
            Endpoint=p["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return Resource(logical_id, "AWS::SNS::Subscription", arn, {"Arn": arn}, p)

    def _topic_policy(self, logical_id: str, p: dict[str, Any]) -> Resource:
        for arn in p["Topics"]:
            self._client("sns").set_topic_attributes(
                TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(p["PolicyDocument"])
            )
        return Resource(logical_id, "AWS::SNS::TopicPolicy", logical_id, {}, p)

    # -- Secrets Manager ------------------------------------------------------------------------
    def _secret(self, logical_id: str, p: dict[str, Any]) -> Resource:
        name = p.get("Name") or self.physical_name(logical_id, limit=512)
        value = p.get("SecretString")
        if value is None:
            value = _generated_secret(p.get("GenerateSecretString", {}))
        request = {"Name": name, "SecretString": value}
        if p.get("KmsKeyId"):
            request["KmsKeyId"] = p["KmsKeyId"]
        arn = self._client("secretsmanager").create_secret(**request)["ARN"]
        return Resource(logical_id, "AWS::SecretsManager::Secret", arn, {"Id": arn}, p)

    # -- CloudWatch -----------------------------------------------------------------------------
    _ALARM_TEXT = (
        "AlarmDescription",
        "Namespace",
        "MetricName",
        "Statistic",
        "ExtendedStatistic",
        "Unit",
        "ComparisonOperator",
        "TreatMissingData",
        "EvaluateLowSampleCountPercentile",
        "ThresholdMetricId",
    )
    _ALARM_NUMBERS = {"Period": int, "EvaluationPeriods": int, "DatapointsToAlarm": int, "Threshold": float}
    _ALARM_AS_IS = ("Dimensions", "Metrics", "AlarmActions", "OKActions", "InsufficientDataActions")

    def _alarm(self, logical_id: str, p: dict[str, Any]) -> Resource:
        name = p.get("AlarmName") or self.physical_name(logical_id, limit=255)
        request: dict[str, Any] = {"AlarmName": name}
        request |= {key: str(p[key]) for key in self._ALARM_TEXT if key in p}
        request |= {key: cast(p[key]) for key, cast in self._ALARM_NUMBERS.items() if key in p}
        request |= {key: p[key] for key in self._ALARM_AS_IS if key in p}
        if "ActionsEnabled" in p:
            request["ActionsEnabled"] = _truthy(p["ActionsEnabled"])
        self._client("cloudwatch").put_metric_alarm(**request)
        arn = self.arn("cloudwatch", f"alarm:{name}")
        return Resource(logical_id, "AWS::CloudWatch::Alarm", name, {"Arn": arn}, p)

    def _dashboard(self, logical_id: str, p: dict[str, Any]) -> Resource:
        name = p.get("DashboardName") or self.physical_name(logical_id, limit=255)
        self._client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=p["DashboardBody"])
        return Resource(logical_id, "AWS::CloudWatch::Dashboard", name, {}, p)

    # -- S3 -------------------------------------------------------------------------------------
    def _bucket(self, logical_id: str, p: dict[str, Any]) -> Resource:
        """The bucket and its default encryption (moto keeps it; the lifecycle rule is not emulated)."""
        name = p.get("BucketName") or self.physical_name(logical_id, limit=63).lower()
        s3 = self._client("s3")
        if self._region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self._region})
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **(
                    {"BucketKeyEnabled": _truthy(rule["BucketKeyEnabled"])}
                    if "BucketKeyEnabled" in rule
                    else {}
                ),
            }
            for rule in p.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        ]
        if rules:
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        arn = f"arn:aws:s3:::{name}"
        return Resource(logical_id, "AWS::S3::Bucket", name, {"Arn": arn, "DomainName": name}, p)

    def _bucket_policy(self, logical_id: str, p: dict[str, Any]) -> Resource:
        self._client("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(p["PolicyDocument"]))
        return Resource(logical_id, "AWS::S3::BucketPolicy", logical_id, {}, p)

    _CREATORS: dict[str, Callable[[Provisioner, str, dict[str, Any]], Resource]] = {
        "AWS::DynamoDB::Table": _table,
        "AWS::SQS::Queue": _queue,
        "AWS::SQS::QueuePolicy": _queue_policy,
        "AWS::SNS::Topic": _topic,
        "AWS::SNS::Subscription": _subscription,
        "AWS::SNS::TopicPolicy": _topic_policy,
        "AWS::SecretsManager::Secret": _secret,
        "AWS::CloudWatch::Alarm": _alarm,
        "AWS::CloudWatch::Dashboard": _dashboard,
        "AWS::S3::Bucket": _bucket,
        "AWS::S3::BucketPolicy": _bucket_policy,
    }


def _generated_secret(spec: Mapping[str, Any]) -> str:
    """A random string as GenerateSecretString makes it: its length, letters and digits, and
    punctuation unless ExcludePunctuation (the other exclusion options are not emulated)."""
    alphabet = string.ascii_letters + string.digits
    if not _truthy(spec.get("ExcludePunctuation", False)):
        alphabet += string.punctuation
    return "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _attribute_text(value: Any) -> str:
    """API attributes are strings: JSON for documents, lower-case for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
