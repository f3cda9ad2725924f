"""Leap's webhooks: pushed deliveries next to the hourly poll, which stays the reconciliation.

- :mod:`.intake`: the receiver's rules (pure): authenticate a call by its secret header, bound its
  size, check its JSON shape, and the queue message an accepted delivery becomes.
- :mod:`.targeted`: targeted polls (pure): what a poll request carries, when it is due (soon, then
  after Leap's hourly refresh) and when it is done; ``poller.targeted`` consumes them.
- :mod:`.payloads`, :mod:`.processing`, :mod:`.enrollment`, :mod:`.ports`: the processor of
  WebhookQueue: a queue message read back as a delivery, the service (duplicates, meter.created
  verified then meter.appeared, poll requests, unknown types kept), which enrollment webhooks become
  public events, and the ports it works through.

docs/webhooks.md explains the behaviour for partners and operators.
"""
