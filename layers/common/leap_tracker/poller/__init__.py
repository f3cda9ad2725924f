"""The poller: read Leap's Connect API page by page and store only what changed.

Three parts, each testable alone:
- the request and the pass plan: :func:`parse_request` and :func:`plan_pass` (pure: which selection
  a run reads, from the checkpoint, the clock and the settings);
- change detection: :func:`validate_page` and :func:`decide_entry` / :func:`decide_page` (pure);
- the run: :func:`run_poll` drives a ``ConnectSource`` and a ``PollerStore`` under the lease, page by
  page (the next page already asked for: ``prefetch``): validate, read stored hashes, write the
  changes, and every ``checkpoint_every_pages`` pages record the progress. Progress is recorded only
  after the pages' writes succeeded, so a crash replays at most that many pages, and the replay
  writes nothing because the hashes then match. A run that cannot do its work raises
  :class:`PollFailed` (after recording what it did), so the platform counts and retries it; a run the
  time limit cut short is continued by a new invocation (:func:`next_continuation`), and a refused
  page token goes on from what the listing order allows (``listing``).
"""
