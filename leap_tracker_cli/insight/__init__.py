"""``leap-tracker report``'s parts: the figures (analysis, pure), reading the table (source) and the
self-contained HTML page (render, matplotlib: the ``[report]`` extra). docs/insight.md explains them."""
