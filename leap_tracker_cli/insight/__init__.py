"""``leap-tracker report``'s page: render (the self-contained HTML, matplotlib: the ``[report]`` extra).
The figures are ``leap_tracker.insight.analysis`` and the table reading
``leap_tracker.adapters.insight_source``, shared with the daily insight function; docs/insight.md."""
