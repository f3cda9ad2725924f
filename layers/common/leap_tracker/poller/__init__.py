"""The poller: read Leap's Connect API page by page and store only what changed.

Three parts, each testable alone:
- the request and the pass plan: :func:`parse_request` and :func:`plan_pass` (pure: which selection
  a run reads, from the checkpoint, the clock and the settings);
- change detection: :func:`validate_page` and :func:`decide_entry` / :func:`decide_page` (pure);
- the run: :func:`run_poll` drives a ``ConnectSource`` and a ``PollerStore`` under the lease, page by
  page: validate, read stored hashes, renew the lease, write the changes, then checkpoint. A page is
  checkpointed only after its writes succeeded, so a crash replays at most one page, and the replay
  writes nothing because the hashes then match. A run that cannot do its work raises
  :class:`PollFailed` (after checkpointing what it did), so the platform counts and retries it.
"""
