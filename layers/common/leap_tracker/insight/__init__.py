"""The insight figures (docs/insight.md): :mod:`.analysis`, pure functions of the stored history, used
by the daily insight function (functions/insight) and by ``leap-tracker report``. Reading the table is
the adapter ``leap_tracker.adapters.insight_source``; the HTML page stays in the CLI (matplotlib)."""
