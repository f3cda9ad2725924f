"""The daily insight files in the stack's InsightBucket (docs/insight.md#the-daily-file-in-s3): one
S3 PutObject per file, JSON, under ``insight/`` (the only prefix the function's role may write)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

PREFIX = "insight/"
LATEST_KEY = PREFIX + "latest.json"
JSON = "application/json"


def dated_key(moment: datetime) -> str:
    """``insight/<UTC date>.json``: the lifecycle rule's prefix ``insight/2`` matches these, not latest."""
    return f"{PREFIX}{moment.date().isoformat()}.json"


class S3InsightWriter:
    """Writes one JSON document under a key of the bucket; S3 encrypts it with the bucket's default."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put_json(self, key: str, document: dict[str, Any]) -> None:
        body = (json.dumps(document, indent=1) + "\n").encode("utf-8")
        self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=JSON)
