"""The local runner judges a bucket policy's conditions as S3 does for requests over TLS (moto alone
denies every request to a bucket with the template's TLS-only statement)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from devtools.local_runner.cloud import _bucket_policy_over_tls

BUCKET = "insight-bucket"


def tls_only(transport: str) -> str:
    statement = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": transport}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        patch = _bucket_policy_over_tls()
        patch.start()
        try:
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            yield client
        finally:
            patch.stop()


def test_the_tls_only_statement_lets_a_tls_request_through(s3: Any) -> None:
    s3.put_bucket_policy(Bucket=BUCKET, Policy=tls_only("false"))
    s3.put_object(Bucket=BUCKET, Key="insight/latest.json", Body=b"{}")


def test_a_deny_whose_condition_holds_still_denies(s3: Any) -> None:
    s3.put_bucket_policy(Bucket=BUCKET, Policy=tls_only("true"))
    with pytest.raises(ClientError):
        s3.put_object(Bucket=BUCKET, Key="insight/latest.json", Body=b"{}")
