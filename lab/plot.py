"""The PNG of a report: clusters done over time, and the spread of each phase's latency.

matplotlib is imported here only, with the Agg backend, so nothing else pays for it and no display
is ever needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.errors import LabError
from lab.report import Report, done_word, unit


def render_png(report: Report, latencies: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Write the plot of `report` (and its per-phase latencies, see report.latencies) to `path`."""
    try:
        import matplotlib
    except ImportError:
        raise LabError("--plot needs matplotlib 3.10 or later: pip install 'matplotlib>=3.10'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = done_word(report.run)
    what = unit(report.run)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
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

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
