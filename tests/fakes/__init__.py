"""Test doubles shared across the suite, one module per thing they stand for.

- ``lambda_runtime``: the Lambda context a handler gets, and what it printed (log lines, EMF metrics).
- ``leap``: a Connect source over fixed pages, and client settings pointing at the Leap simulator.
- ``poller``: the in-memory poller store (held to the DynamoDB store's contract in
  tests/integration/test_dynamo_store.py), a clock and a remaining-time budget.
- ``dynamodb``: what reached a (moto) table: its items read back, the requests counted, writes failed.
- ``outreach``: the in-memory outreach store (held to the DynamoDB store's contract in
  tests/integration/test_outreach_store.py), recording channels and topic, the service wired to them.
- ``log_key``: the log hash key every test's environment holds, and the pseudonyms it gives.
- ``webhooks``: the webhook processor's stores in memory (held to the DynamoDB adapters' contracts in
  tests/integration/test_webhook_stores.py), a Meters source that can lag, the poll requests asked.

Test data (entries, stalled customers, ...) is built by ``tests.builders``.
"""
