"""The plots of a report: the PNG of `--plot` (clusters done over time, and the spread of each
phase's latency), and for `--html` the same as SVG plus one SVG per time series chart
(lab.report_series).

matplotlib is imported here only, with the Agg backend, so nothing else pays for it and no display
is ever needed. Figures are matplotlib.figure.Figure objects, not pyplot's: nothing global to close.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.report import Report, done_word, unit
from lab.report_series import Chart

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _matplotlib() -> None:
    try:
        import matplotlib
    except ImportError:
        raise LabError(
            "--plot and --html need matplotlib 3.10 or later: pip install 'matplotlib>=3.10'"
        ) from None
    matplotlib.use("Agg")


def render_png(report: Report, latencies: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Write the plot of `report` (and its per-phase latencies, see report.latencies) to `path`."""
    _matplotlib()
    fig = _overview(report, latencies)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _overview(report: Report, latencies: Mapping[str, Sequence[float]]) -> Figure:
    from matplotlib.figure import Figure

    done = done_word(report.run)
    what = unit(report.run)
    fig = Figure(figsize=(13, 5), layout="constrained")
    left, right = fig.subplots(1, 2)
    fig.suptitle(
        f"lab run {report.run['id']} ({report.run['kind']}): {report.done}/{report.clusters} {what} {done}"
    )

    minutes = [t / 60 for t in report.timeline]
    left.step([0.0, *minutes], list(range(len(minutes) + 1)), where="post", color="tab:blue")
    left.set_xlabel("minutes since run start")
    left.set_ylabel(f"{what} {done}")
    left.set_title(f"{what.capitalize()} {done} over time")
    left.set_ylim(0, max(report.clusters, 1) * 1.05)
    left.grid(alpha=0.3)

    origin = next(iter(latencies), "start")
    # the origin phase is 0 for every cluster by definition: leave it out
    named = [(p, list(v)) for p, v in latencies.items() if v and p != origin]
    if named:
        right.boxplot(
            [v for _p, v in named],
            orientation="horizontal",
            tick_labels=[p for p, _v in named],
            whis=(0, 100),
        )
        right.invert_yaxis()  # lifecycle order from top to bottom
    else:
        right.text(0.5, 0.5, "no phase reached", ha="center", va="center", transform=right.transAxes)
    right.set_xlabel(f"seconds since {origin}")
    right.set_title("Phase latency per cluster (box: p25-p75, whiskers: min-max)")
    right.grid(alpha=0.3, axis="x")
    return fig


def _chart(chart: Chart) -> Figure:
    from matplotlib.figure import Figure

    # fixed margins, the legend in the right quarter: the constrained layout drew each chart twice
    # and was half the time of `lab report --html` (3 s of 5.7 s for 9 charts)
    fig = Figure(figsize=(10, 3.6))
    fig.subplots_adjust(left=0.08, right=0.74, bottom=0.14, top=0.9)
    ax = fig.subplots()
    if len(chart.lines) > 10:  # the default cycle has 10 colours: a component per colour
        from matplotlib import colormaps

        tab20 = colormaps["tab20"]
        ax.set_prop_cycle(color=[tab20(i) for i in range(20)])
    for line in chart.lines:
        ax.plot([t / 60 for t in line.t], line.v, label=line.label, linewidth=1.2)
    ax.set_title(chart.title)
    ax.set_xlabel("minutes since run start")
    ax.set_ylabel(chart.unit)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.02), frameon=False)
    return fig


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    # text stays text (not glyph paths): a tenth of the size, and searchable in the page
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def svg_figures(report: Report) -> list[tuple[str, str, str]]:
    """(key, title, SVG document) of every plot of the HTML report: the overview of render_png,
    then one per chart of report.charts."""
    _matplotlib()
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        out = [
            (
                "overview",
                "Clusters done over time, phase latencies",
                _svg(_overview(report, report.latencies)),
            )
        ]
        out += [(c.key, c.title, _svg(_chart(c))) for c in report.charts]
    return out
