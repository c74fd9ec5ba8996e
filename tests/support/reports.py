"""What the benchmarks read from a `lab report --format json` model: the run's phase percentiles and
each component's whole-run CPU and RSS (the components table shows only the idle window once there
is one, and benchmarks compare the managers while they work)."""

from __future__ import annotations

import statistics
from typing import Any


def series(model: dict[str, Any], key: str) -> dict[str, list[float]]:
    """Each component's samples over the whole run from the report's chart `key` ("cpu", "rss")."""
    return {
        line["label"]: [v for v in line["v"] if v is not None]
        for chart in model.get("charts") or []
        if chart["key"] == key
        for line in chart["lines"]
    }


def usage(cpu: dict[str, list[float]], rss_mib: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Whole run: median CPU (% of a core) and largest RSS (MiB) of each component sampled."""
    return {
        n: {"cpu": round(statistics.median(cpu[n]), 1), "rss_mib": round(max(rss_mib[n]))}
        for n in cpu
        if cpu[n] and rss_mib.get(n)
    }


def run_summary(model: dict[str, Any]) -> dict[str, Any]:
    """The run's clusters done and wall time, and each phase's p50/p90/max from run start (the
    caller names the run as its rows do)."""
    return {
        "clusters": model["clusters"],
        "done": model["done"],
        "wall_seconds": model["wall_seconds"],
        "phases": {
            p["phase"]: {k: p["since_start"][k] for k in ("p50", "p90", "max")} for p in model["phases"]
        },
    }
