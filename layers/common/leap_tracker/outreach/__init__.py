"""Re-engaging stalled customers (docs/outreach.md).

- :mod:`.decision`: what, if anything, to tell a customer now (pure: snapshot + history + policy + now);
- :mod:`.ledger`: the exactly-once bookkeeping rules (dedupe keys, ids, the items' meaning; pure);
- :mod:`.templates`: the messages per reason and the Connect URL (pure, with a loader for the files);
- :mod:`.service`: runs a decision against the store, the channels and the audit topic (ports only).
"""
