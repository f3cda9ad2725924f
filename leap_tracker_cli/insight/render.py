"""report.html: one self-contained page (opens offline), its charts inline SVG drawn with matplotlib.

matplotlib is operator tooling (the ``[report]`` extra), imported here on first use only, with its
non-interactive SVG backend. Matplotlib's SVG carries an XML prolog, a DOCTYPE, namespace and
metadata URLs; none is needed inline in HTML5, so they are removed: the page names no URL at all.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from typing import Any

from leap_tracker.insight.analysis import (
    Distribution,
    ReasonEffect,
    Report,
    Share,
    StallMap,
    VariantEffect,
)

CHARTS = (
    "funnel over time",
    "where customers stall",
    "time to complete",
    "outreach comparison",
    "message variants",
)
_PROLOG = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<metadata>.*?</metadata>", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')


def page(report: Report) -> str:
    figures = _figures(report)
    sections = "\n".join(
        f"<section><h2>{html.escape(title)}</h2>{svg}{notes}</section>"
        for title, svg, notes in zip(
            CHARTS,
            figures,
            (
                _funnel_note(report),
                _stall_table(report.stalls),
                _duration_table(report),
                _outreach_table(report.outreach),
                _variant_table(report.variants),
            ),
            strict=True,
        )
    )
    since = html.escape(report.since or "the oldest stored change")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>leap-tracker report</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}th:first-child{text-align:left}"
        "svg{max-width:100%;height:auto}</style></head><body>"
        f"<h1>leap-tracker report</h1><p>From {since} to {html.escape(report.now)}: "
        f"{report.entries} entries, {report.changes} stored changes, {report.messages} outreach messages. "
        "What each figure means: docs/insight.md.</p>"
        f"{sections}</body></html>\n"
    )


def _figures(report: Report) -> list[str]:
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    drawn = []
    for draw in (_funnel_chart, _stall_chart, _duration_chart, _outreach_chart, _variant_chart):
        figure = draw(plt, report)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight")
        plt.close(figure)
        drawn.append(inline_svg(buffer.getvalue()))
    return drawn


def inline_svg(svg: str) -> str:
    return _NAMESPACES.sub("", _PROLOG.sub("", svg)).strip()


def _funnel_chart(plt: Any, report: Report) -> Any:
    figure, axes = plt.subplots(figsize=(9, 3.6))
    points = report.funnel_daily
    statuses = sorted({s for p in points for s in p.by_status})
    days = [p.period[:10] for p in points]
    bottom = [0] * len(points)
    for status in statuses:
        heights = [p.by_status.get(status, 0) for p in points]
        axes.bar(days, heights, bottom=bottom, label=status)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_ylabel("entries at the end of the day")
    axes.tick_params(axis="x", labelrotation=60, labelsize=7)
    if statuses:
        axes.legend(fontsize=8)
    return figure


def _stall_chart(plt: Any, report: Report) -> Any:
    stalls = report.stalls
    figure, axes = plt.subplots(figsize=(7, 0.5 + 0.45 * max(1, len(stalls.stages))))
    grid = [[stalls.counts[s][b] for b in stalls.buckets] for s in stalls.stages]
    grid = grid or [[0] * len(stalls.buckets)]
    axes.imshow(grid, cmap="Oranges", aspect="auto")
    axes.set_xticks(range(len(stalls.buckets)), stalls.buckets)
    axes.set_yticks(range(len(stalls.stages)), stalls.stages)
    axes.set_xlabel("time since the last interaction")
    for row, values in enumerate(grid if stalls.stages else []):
        for column, value in enumerate(values):
            axes.text(column, row, str(value), ha="center", va="center", fontsize=8)
    return figure


def _duration_chart(plt: Any, report: Report) -> Any:
    figure, panes = plt.subplots(1, 2, figsize=(10, 3.2))
    for axes, (title, shape) in zip(
        panes,
        (("first click to COMPLETED", report.time_to_complete), ("COMPLETED to meter", report.time_to_meter)),
        strict=True,
    ):
        axes.bar(list(shape.histogram), list(shape.histogram.values()), color="#4878a8")
        axes.set_title(f"{title} (n={shape.count})", fontsize=9)
        axes.tick_params(axis="x", labelsize=7)
    panes[0].set_ylabel("entries")
    return figure


def _outreach_chart(plt: Any, report: Report) -> Any:
    effects = report.outreach
    figure, panes = plt.subplots(2, 3, figsize=(11, 3 + 0.3 * len(effects)), sharey=True, squeeze=False)
    reasons = [e.reason for e in effects]
    for column, days in enumerate((1, 3, 7)):
        for row, outcome in enumerate(("progressed", "completed")):
            axes = panes[row][column]
            for offset, group, colour in ((-0.2, "messaged", "#4878a8"), (0.2, "comparison", "#aaaaaa")):
                shares, errors = _bars(effects, days, group, outcome)
                axes.barh(
                    [i + offset for i in range(len(reasons))],
                    shares,
                    height=0.4,
                    xerr=errors,
                    color=colour,
                    label=group,
                    capsize=2,
                )
            axes.set_xlim(0, 1)
            axes.set_title(f"{outcome} within {days} d", fontsize=9)
            axes.set_yticks(range(len(reasons)), reasons, fontsize=7)
    panes[0][0].legend(fontsize=7)
    return figure


def _variant_chart(plt: Any, report: Report) -> Any:
    """Each reason's variants side by side: the share of its customers that progressed / completed
    within 1, 3 and 7 days, with the 95% Wilson interval."""
    effects = report.variants
    figure, panes = plt.subplots(2, 3, figsize=(11, 3 + 0.3 * len(effects)), sharey=True, squeeze=False)
    labels = [f"{e.reason} / {e.variant}" for e in effects]
    for column, days in enumerate((1, 3, 7)):
        for row, outcome in enumerate(("progressed", "completed")):
            axes = panes[row][column]
            shares, errors = _error_bars(
                [getattr(next(w for w in e.windows if w.days == days).variant, outcome) for e in effects]
            )
            axes.barh(range(len(labels)), shares, height=0.6, xerr=errors, color="#4878a8", capsize=2)
            axes.set_xlim(0, 1)
            axes.set_title(f"{outcome} within {days} d", fontsize=9)
            axes.set_yticks(range(len(labels)), labels, fontsize=7)
    return figure


def _bars(
    effects: Sequence[ReasonEffect], days: int, group: str, outcome: str
) -> tuple[list[float], list[list[float]]]:
    return _error_bars(
        [getattr(getattr(next(w for w in e.windows if w.days == days), group), outcome) for e in effects]
    )


def _error_bars(results: Sequence[Share]) -> tuple[list[float], list[list[float]]]:
    shares, below, above = [], [], []
    for result in results:
        if result.share is None or result.low is None or result.high is None:
            shares.append(0.0)
            below.append(0.0)
            above.append(0.0)
        else:
            shares.append(result.share)
            below.append(result.share - result.low)
            above.append(result.high - result.share)
    return shares, [below, above]


# --- the numbers beside the charts -----------------------------------------------------------------


def _funnel_note(report: Report) -> str:
    if not report.funnel_daily:
        return "<p>No stored change in the window.</p>"
    last = report.funnel_daily[-1]
    rows = "".join(f"<tr><th>{html.escape(s)}</th><td>{n}</td></tr>" for s, n in last.by_status.items())
    return f"<p>At {html.escape(last.at)}: {last.total} entries.</p><table>{rows}</table>"


def _stall_table(stalls: StallMap) -> str:
    head = "".join(f"<th>{html.escape(b)}</th>" for b in stalls.buckets)
    rows = "".join(
        f"<tr><th>{html.escape(s)}</th>" + "".join(f"<td>{stalls.counts[s][b]}</td>" for b in stalls.buckets)
        for s in stalls.stages
    )
    return f"<table><tr><th>stage</th>{head}</tr>{rows}</table>"


def _duration_table(report: Report) -> str:
    def row(name: str, shape: Distribution) -> str:
        cells = (shape.count, _hours(shape.median_hours), _hours(shape.p90_hours))
        return f"<tr><th>{name}</th>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"

    return (
        "<table><tr><th></th><th>count</th><th>median</th><th>p90</th></tr>"
        + row("first click to COMPLETED", report.time_to_complete)
        + row("COMPLETED to meter", report.time_to_meter)
        + "</table>"
    )


def _outreach_table(effects: Sequence[ReasonEffect]) -> str:
    rows = []
    for effect in effects:
        for window in effect.windows:
            m, c = window.messaged, window.comparison
            rows.append(
                f"<tr><th>{html.escape(effect.reason)}</th><td>{window.days} d</td>"
                f"<td>{m.observed}</td><td>{_pct(m.progressed.share)}</td><td>{_pct(m.completed.share)}</td>"
                f"<td>{c.observed}</td><td>{_pct(c.progressed.share)}</td><td>{_pct(c.completed.share)}</td>"
                f"<td>{html.escape(window.progressed_verdict)}</td><td>{html.escape(window.completed_verdict)}</td></tr>"
            )
    return (
        "<table><tr><th>reason</th><th>window</th><th>messaged</th><th>progressed</th><th>completed</th>"
        "<th>comparison</th><th>progressed</th><th>completed</th><th>progress</th><th>completion</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _variant_table(effects: Sequence[VariantEffect]) -> str:
    if not effects:
        return "<p>No message sent yet.</p>"
    rows = []
    for effect in effects:
        for window in effect.windows:
            ours = window.variant
            rows.append(
                f"<tr><th>{html.escape(effect.reason)}</th><td>{html.escape(effect.variant)}</td>"
                f"<td>{window.days} d</td><td>{ours.observed}</td>"
                f"<td>{_interval(ours.progressed)}</td><td>{_interval(ours.completed)}</td>"
                f"<td>{window.others.observed}</td>"
                f"<td>{html.escape(window.progressed_verdict)}</td><td>{html.escape(window.completed_verdict)}</td></tr>"
            )
    return (
        "<p>Each customer's first message of a reason decides its variant; each variant is held against "
        "the reason's other variants together (95% Wilson intervals).</p>"
        "<table><tr><th>reason</th><th>variant</th><th>window</th><th>messaged</th><th>progressed</th>"
        "<th>completed</th><th>other variants</th><th>progress</th><th>completion</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _interval(result: Share) -> str:
    if result.share is None or result.low is None or result.high is None:
        return "-"
    return f"{_pct(result.share)} ({_pct(result.low)}-{_pct(result.high)})"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} h"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
