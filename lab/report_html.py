"""The report as one self-contained HTML page, to attach to a pull request.

Pure: a Report and its plots (SVG documents, see lab.plot.svg_figures) in, one string out. Every
value is escaped with html.escape; each plot is an <img> with a base64 data: URI (an SVG in an
<img> cannot run script or fetch anything, and its ids cannot clash with another plot's); the style
is inline. A Content-Security-Policy meta tag forbids every fetch but data: images and the inline
style, so the page shows the same offline as online and a browser reports anything that tries.

The tables are those of the Markdown report (lab.report.to_markdown) without its caps: every
controller and every incomplete cluster is listed.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

from lab.bottleneck import Bottleneck
from lab.report import (
    Metrics,
    Report,
    client_table,
    controller_table,
    done_word,
    duration,
    etcd_table,
    mib,
    priority_table,
    sec,
    shards_heading,
    shards_table,
    slo_table,
    unit,
)

#: Nothing but data: images and the page's own <style>: no script, font, frame or connection.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #1f2328; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1.2em; font-size: .9em; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; text-align: left; }
th { background: #f6f8fa; } td.n { text-align: right; }
td.bad { color: #cf222e; font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #59636e; font-size: .9em; }
code { background: #f6f8fa; padding: .1em .3em; }
"""

#: (key, title, SVG document)
Figure = tuple[str, str, str]


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: object, bad: str) -> str:
    text = str(value)
    classes = ["n"] if text[:1].isdigit() or text in ("-", bad) or text.startswith("> ") else []
    if text == bad:
        classes.append("bad")
    return f'<td class="{" ".join(classes)}">{esc(text)}</td>' if classes else f"<td>{esc(text)}</td>"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], bad: str = "NO") -> str:
    """A table; numbers right-aligned, a cell equal to `bad` marked (a missed SLO)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c, bad) for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(fig: Figure) -> str:
    key, title, svg = fig
    data = base64.b64encode(svg.encode()).decode("ascii")
    return (
        f'<figure class="plot" id="plot-{esc(key)}">'
        f'<img alt="{esc(title)}" src="data:image/svg+xml;base64,{data}">'
        f"<figcaption>{esc(title)}</figcaption></figure>"
    )


def _summary(r: Report) -> str:
    run = r.run
    host = run["host"]
    done = done_word(run)
    mem = f"{host['memory_bytes'] / 2**30:.0f} GiB" if host.get("memory_bytes") else "?"
    rate = (
        f", in {duration(r.wall_seconds)} ({r.clusters_per_minute:.1f}/min)" if r.clusters_per_minute else ""
    )
    settings = run["settings"]
    items = [
        f"started {esc(run['started'])}, finished {esc(run['finished'] or '-')}",
        f"command: <code>{esc(' '.join(run['argv']))}</code>",
        f"host: {esc(host.get('cores', '?'))} cores, {esc(mem)}, {esc(host.get('platform', '?'))}",
        "versions: " + esc(", ".join(f"{k} {v}" for k, v in settings.get("versions", {}).items())),
        f"tuning: {esc(settings.get('tuning') or 'default')}",
        "settings: "
        + esc(", ".join(f"{k}={v}" for k, v in settings.items() if k not in ("versions", "tuning"))),
        f"{unit(run)}: {r.clusters}, {esc(done)}: {r.done}{esc(rate)}",
    ]
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _phases(r: Report) -> str:
    return table(
        [
            "phase",
            "reached",
            "p50",
            "p90",
            "p99",
            "max",
            "step from",
            "step p50",
            "step p90",
            "step p99",
            "step max",
        ],
        [
            [
                p.phase,
                p.reached,
                *(
                    sec(v)
                    for v in (p.since_start.p50, p.since_start.p90, p.since_start.p99, p.since_start.max)
                ),
                p.step_from or "-",
                *(sec(v) for v in (p.step.p50, p.step.p90, p.step.p99, p.step.max)),
            ]
            for p in r.phases
        ],
    )


def _metrics(m: Metrics) -> str:
    cpu = "not measured"
    if m.sampler_cpu_seconds is not None:
        cpu = f"{m.sampler_cpu_seconds:.1f} s CPU"
        if m.sampled_seconds:
            cpu += f" ({100 * m.sampler_cpu_seconds / m.sampled_seconds:.1f} % of a core)"
    out = [
        f"<h2>Metrics ({m.scrapes} scrapes over {esc(duration(m.sampled_seconds))}; increases over the run)</h2>",
        f"<p>sampler: {m.rows_per_scrape:.0f} rows per scrape, {esc(cpu)}</p>",
        "<h3>kube-apiserver: p99 against the clusterloader2 SLOs</h3>",
        table(*slo_table(m)),
    ]
    if m.inflight_peak:
        peaks = ", ".join(f"{k} {v:.0f}" for k, v in sorted(m.inflight_peak.items()))
        out.append(f"<p>peak inflight: {esc(peaks)}</p>")
    if m.priority_levels:
        out += ["<h3>Priority and fairness (by priority level)</h3>", table(*priority_table(m))]
    out.append("<h3>Controllers (deepest queue first)</h3>")
    out.append(
        table(*controller_table(m.controllers)) if m.controllers else "<p>No controller queued anything.</p>"
    )
    if m.clients:
        out += ["<h3>API clients</h3>", table(*client_table(m))]
    if m.etcd:
        out += ["<h3>etcd</h3>", table(*etcd_table(m))]
    return "\n".join(out)


def _bottleneck(b: Bottleneck) -> str:
    head = f"<h2>Bottleneck (from {b.scrapes} scrapes and the phase records; t+ = seconds from the run start)</h2>"
    return head + table(
        ["topic", "verdict", "statement"], [[f.topic, f.verdict, f.statement] for f in b.findings]
    )


def render(r: Report, figures: Sequence[Figure], found: Bottleneck | None = None) -> str:
    """The page: summary, what held the run (`found`, lab.bottleneck), the overview plot, the
    tables, then one plot per time series chart. `figures` are in the order of
    lab.plot.svg_figures: the overview first."""
    run = r.run
    done = done_word(run)
    title = f"lab run {run['id']}: {run['kind']} ({run['status']})"
    overview, series = (figures[0], figures[1:]) if figures else (None, [])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        _summary(r),
    ]
    if found is not None:
        parts.append(_bottleneck(found))
    if overview is not None:
        parts.append(figure(overview))
    parts += [
        f"<h2>Scaling (batches of {r.batch_size}, by index; times from the run start)</h2>",
        table(
            [unit(run), done, "cumulative", "step"],
            [
                [f"{b.first}-{b.last}", f"{b.done}/{b.clusters}", duration(b.done_at), duration(b.step)]
                for b in r.batches
            ],
        ),
        f"<h2>Phase latencies (seconds; from <code>{esc(r.phases[0].phase if r.phases else '-')}</code>,"
        " and step from the phase waited for)</h2>",
        _phases(r),
        "<h2>Components (median RSS and CPU)</h2>",
        table(
            ["component", "processes", "samples", "window", "RSS", "CPU (% of a core)"],
            [
                [
                    c.component,
                    c.processes,
                    c.samples,
                    "idle" if c.idle else "whole run",
                    mib(c.rss_bytes),
                    f"{c.cpu_percent:.1f}",
                ]
                for c in r.components
            ],
        )
        if r.components
        else "<p>No resource samples were recorded.</p>",
    ]
    if r.shards:
        parts += [f"<h2>{esc(shards_heading(r.shards))}</h2>", table(*shards_table(r.shards, done))]
    if r.metrics is not None:
        parts.append(_metrics(r.metrics))
    if series:
        parts.append("<h2>Over time (per component)</h2>")
        parts += [figure(f) for f in series]
    if r.incomplete:
        parts += [
            f"<h2>Incomplete: {len(r.incomplete)} cluster(s) never reached <code>{esc(r.final_phase)}</code></h2>",
            table(
                ["cluster", "last phase", "waiting for"],
                [[i.cluster, i.last_phase or "-", i.waiting_for] for i in r.incomplete],
            ),
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
