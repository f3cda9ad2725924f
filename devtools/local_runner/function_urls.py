"""Lambda function URLs, played by the runner: the URL a stack output names, the event Lambda's front
end builds from an HTTP request (payload format 2.0), and the HTTP answer it makes of the result.

The template's ``FunctionUrlConfig`` becomes an ``AWS::Lambda::Url`` resource (the SAM transform); its
``FunctionUrl`` is ``https://<url id>.lambda-url.<region>.on.aws/``, the id derived from the function's
ARN so that a run is repeatable. A call goes through the cloud's invocation path like any other
(recorded, counted, its timeouts and injected failures included); an unhandled error, a timeout
included, is answered 502 as Lambda's front end does. What is not emulated: the 6 MB payload limit,
throttling (429 when the reserved concurrency is taken: invocations run one at a time here), CORS,
streamed responses, cookies and query string parameters (the raw query string is passed on).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

URL_ID_CHARACTERS = 32  # as Lambda's: 32 lower-case letters and digits
BAD_GATEWAY = 502
# Content types Lambda passes as text; any other body arrives base64-encoded (isBase64Encoded).
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml")

HttpAnswer = tuple[int, dict[str, str], bytes]


def url_id(function_arn: str) -> str:
    return hashlib.sha256(function_arn.encode()).hexdigest()[:URL_ID_CHARACTERS]


def function_url(function_arn: str, region: str) -> str:
    """The ``FunctionUrl`` of the function's URL."""
    return f"https://{url_id(function_arn)}.lambda-url.{region}.on.aws/"


@dataclass(frozen=True)
class ParsedUrl:
    url_id: str
    host: str
    path: str
    query: str


def parse_url(url: str) -> ParsedUrl:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return ParsedUrl(host.split(".", 1)[0], host, parts.path or "/", parts.query)


def request_event(
    url: str, method: str, headers: Mapping[str, str], body: bytes, now: datetime
) -> dict[str, Any]:
    """The event Lambda sends for this request (payload format 2.0), timed at ``now``."""
    target = parse_url(url)
    lowered = {name.lower(): value for name, value in headers.items()}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": target.path,
        "rawQueryString": target.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": target.url_id,
            "domainName": target.host,
            "domainPrefix": target.url_id,
            "http": {
                "method": method.upper(),
                "path": target.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if body:
        if _is_text(lowered.get("content-type", ""), body):
            event["body"] = body.decode("utf-8")
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def http_answer(result: Any, error: BaseException | None) -> HttpAnswer:
    """What the caller of the URL gets from the function's result (or its failure)."""
    if error is not None:
        return BAD_GATEWAY, {"content-type": "application/json"}, b'{"Message":"Internal Server Error"}'
    if isinstance(result, dict) and "statusCode" in result:
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        headers.setdefault("content-type", "application/json")
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
        return int(result["statusCode"]), headers, body
    # Anything else is the body of a 200 (Lambda's front end serializes it as JSON).
    text = result if isinstance(result, str) else json.dumps(result)
    return 200, {"content-type": "application/json"}, text.encode("utf-8")


def _is_text(content_type: str, body: bytes) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    textual = media.startswith(_TEXT_TYPES) or media.endswith(_TEXT_SUFFIXES)
    if not textual:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
