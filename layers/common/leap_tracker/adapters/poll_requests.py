"""Targeted poll requests on SQS, and the poll marks in the table (docs/webhooks.md#targeted-polls).

- :class:`SqsPollRequests` implements ``webhooks.ports.PollRequests`` for the webhook processor: one
  message per request on PollRequestQueue, delayed until its soon poll is due. Nothing is shared
  between senders, so two processors at once cannot lose a request; the debounce is the consumer's.
- :class:`DynamoPollMarks` implements ``poller.ports.PollMarks`` for the poller, which consumes the
  queue: one item per Reference ID, ``table.TARGETED_POLLED_AT``, moved forward only (a conditional
  update), so two polls finishing in either order keep the later start.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from leap_tracker import table
from leap_tracker.adapters.dynamo import is_condition_failed, string_key
from leap_tracker.config import TargetedPollSettings
from leap_tracker.timeutil import parse_instant, utc_now
from leap_tracker.webhooks import targeted


class SqsPollRequests:
    """``SqsPollRequests(sqs_client, queue_url)``; ``timing`` only sets the send delay (the consumer's
    own settings decide when a request is due), ``now`` the clock that delay is counted on."""

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        *,
        timing: TargetedPollSettings | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        if not queue_url:
            raise ValueError("SqsPollRequests needs PollRequestQueue's URL (POLL_REQUEST_QUEUE_URL)")
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._timing = timing or TargetedPollSettings()
        self._now = now

    def request(self, ref_id: str, received_at: datetime) -> None:
        """Ask for the two polls of ``ref_id`` a webhook received at ``received_at`` needs; raises
        when SQS refuses (the caller's record then fails and is retried: nothing is lost)."""
        delay = targeted.send_delay_seconds(received_at, self._now(), self._timing)
        self._send(targeted.request_body(ref_id, received_at), delay)

    def requeue(self, message: targeted.PollRequestMessage, delay_seconds: int) -> None:
        """The same request as a new message (its receive count starts again)."""
        self._send(targeted.request_body(message.ref_id, message.requested_at), delay_seconds)

    def _send(self, body: str, delay_seconds: int) -> None:
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=body, DelaySeconds=delay_seconds)


class DynamoPollMarks:
    """When the last targeted poll of each Reference ID started (one small item each, with a TTL)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def polled_at(self, ref_id: str) -> datetime | None:
        answer = self._client.get_item(
            TableName=self._table,
            Key=string_key(table.targeted_poll_key(ref_id)),
            ConsistentRead=True,
            ProjectionExpression="#at",
            ExpressionAttributeNames={"#at": table.TARGETED_POLLED_AT},
        )
        text = answer.get("Item", {}).get(table.TARGETED_POLLED_AT, {}).get("S")
        return parse_instant(text) if text else None

    def record_poll(self, ref_id: str, started_at: datetime, run_id: str) -> None:
        expires_at = int((started_at + targeted.MARK_RETENTION).timestamp())
        try:
            self._client.update_item(
                TableName=self._table,
                Key=string_key(table.targeted_poll_key(ref_id)),
                UpdateExpression="SET #type = :type, #at = :at, #by = :by, #ttl = :ttl",
                # Text order is time order (fixed width): an earlier start never replaces a later one.
                ConditionExpression="attribute_not_exists(#at) OR #at < :at",
                ExpressionAttributeNames={
                    "#type": table.ITEM_TYPE,
                    "#at": table.TARGETED_POLLED_AT,
                    "#by": table.TARGETED_POLLED_BY,
                    "#ttl": table.TTL_ATTRIBUTE,
                },
                ExpressionAttributeValues={
                    ":type": {"S": table.TARGETED_ITEM_TYPE},
                    ":at": {"S": targeted.instant_text(started_at)},
                    ":by": {"S": run_id},
                    ":ttl": {"N": str(expires_at)},
                },
            )
        except ClientError as error:
            if not is_condition_failed(error):
                raise
            # The condition failed: a later poll's start is kept already, and it covers more.
