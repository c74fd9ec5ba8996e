"""lab.shards and what follows from it, without a stack: the round-robin, the label the renderer puts
on exactly the objects KCP's filter reads, the shard programs and their ports, K=1 as today's stack,
the stored count, the status and report figures per shard, and `lab up --shards` refusing bad K."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab import manifests, naming, pki, report, report_html, shards, tuning
from lab.clusters import inventory
from lab.config import Settings
from lab.errors import UsageError
from lab.phases import PHASES, RunKind
from lab.records import Event, MetricSample, Run, Sample
from lab.stack import health, managers, ports, scrape, status, up

Obj = dict[str, Any]
WATCH = shards.WATCH_LABEL
T0 = 1_700_000_000.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_round_robin_by_index_is_deterministic_and_alternates() -> None:
    assert [shards.of_index(i, 2) for i in range(8901, 8905)] == [1, 0, 1, 0]
    assert [shards.of_index(i, 3) for i in range(1, 7)] == [1, 2, 0, 1, 2, 0]
    # every shard gets its share of a consecutive range, whatever the start
    for start in (1, 8901, 9997):
        got = [shards.of_index(i, 3) for i in range(start, start + 9)]
        assert sorted(got) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert shards.labels(8901, 1) == {} and shards.labels(8902, 1) == {}
    assert shards.labels(8901, 2) == {WATCH: "shard-1"} and shards.labels(8902, 2) == {WATCH: "shard-0"}
    assert shards.programs(3) == ["kcp-manager", "kcp-manager-shard-1", "kcp-manager-shard-2"]
    assert shards.shard_of_label("shard-4") == 4
    assert [shards.shard_of_label(v) for v in (None, "", "shard-", "shard-x", "other-1", "shard-1 ")] == [
        None
    ] * 6


@pytest.mark.parametrize("k", [0, -1, shards.MAX_SHARDS + 1, 10**20])
def test_a_shard_count_out_of_range_is_a_usage_error(k: int) -> None:
    with pytest.raises(UsageError, match=rf"--shards must be 1\.\.{shards.MAX_SHARDS}, got {k}$"):
        shards.check_count(k)


def _objects(settings: Settings, index: int, k: int, ca: pki.KeyPair) -> list[Obj]:
    name = naming.cluster_name(settings.prefix, index)
    host, port = naming.local_endpoint(index)
    cp = pki.generate_cluster_pki(name, host, port, ca)
    return manifests.cluster_objects(
        settings, index, (host, port), cp, ["https://127.0.0.1:2379"], "pw", n_shards=k
    )


def _labelled(objs: list[Obj]) -> dict[str, str]:
    """kind (or KCP's machine template) -> the watch-filter value it carries."""
    out = {
        o["kind"]: o["metadata"]["labels"][WATCH] for o in objs if WATCH in o["metadata"].get("labels", {})
    }
    for o in objs:
        if o["kind"] == "KubeadmControlPlane":
            tmpl = o["spec"]["machineTemplate"]["metadata"]["labels"]
            if WATCH in tmpl:
                out["KubeadmControlPlane.machineTemplate"] = tmpl[WATCH]
    return out


def test_the_renderer_labels_cluster_kcp_and_its_machines_for_the_shard_and_nothing_with_one(
    settings: Settings, schema_validator: Any
) -> None:
    ca = pki.new_ca("etcd-ca")
    default = manifests.cluster_objects  # K=1 is the renderer's default: today's objects, byte for byte
    one = _objects(settings, 8901, 1, ca)
    assert _labelled(one) == {}
    assert "watch-filter" not in json.dumps(one)
    name = naming.cluster_name(settings.prefix, 8901)
    host, port = naming.local_endpoint(8901)
    cp = pki.generate_cluster_pki(name, host, port, ca)
    plain = default(settings, 8901, (host, port), cp, ["https://127.0.0.1:2379"], "pw")
    assert plain == manifests.cluster_objects(
        settings, 8901, (host, port), cp, ["https://127.0.0.1:2379"], "pw", n_shards=1
    )
    for index, want in ((8901, "shard-1"), (8902, "shard-0")):
        objs = _objects(settings, index, 2, ca)
        assert _labelled(objs) == {
            "Cluster": want,
            "KubeadmControlPlane": want,
            "KubeadmControlPlane.machineTemplate": want,
        }
        for o in objs:  # what the management apiserver would store
            assert schema_validator(o) == [], o["kind"]
    # the label is the only difference from the unsharded objects
    two = _objects(settings, 8901, 2, ca)
    assert len(two) == len(one) and [o["kind"] for o in two] == [o["kind"] for o in one]
    with pytest.raises(UsageError):
        _objects(settings, 8901, 0, ca)


def test_one_shard_is_todays_managers_and_k_shards_add_filtered_kcp_programs(settings: Settings) -> None:
    today = up.manager_programs(settings, "default", 1)
    assert [p.name for p in today] == list(managers.NAMES)
    assert not any("--watch-filter" in a for p in today for a in p.argv)
    kcp = managers.BY_NAME["kcp-manager"]
    flags = tuning.flags(settings, "kcp-manager", "default")
    assert today[managers.NAMES.index("kcp-manager")] == managers.program(settings, kcp, flags, {})
    assert up.port_owners(settings, 1) == up.port_owners(settings)

    three = {p.name: p for p in up.manager_programs(settings, "default", 3)}
    names = [*managers.NAMES[:3], "kcp-manager-shard-1", "kcp-manager-shard-2", *managers.NAMES[3:]]
    assert sorted(three) == sorted(names)
    cert_dir = managers.cert_dir(settings, kcp)
    seen_ports: set[int] = set()
    for n, name in enumerate(shards.programs(3)):
        argv = three[name].argv
        pp = ports.shard(settings, n)
        assert f"--watch-filter=shard-{n}" in argv
        assert f"--webhook-port={pp.webhook}" in argv and f"--webhook-cert-dir={cert_dir}" in argv
        assert f"--health-addr=127.0.0.1:{pp.health}" in argv
        assert f"--diagnostics-address=127.0.0.1:{pp.metrics}" in argv
        assert "--leader-elect=false" in argv
        assert three[name].env["KUBECONFIG"] == str(managers.kubeconfig(settings, kcp))
        assert argv[0] == str(managers.argv(settings, kcp, [])[0])  # the one KCP build
        seen_ports |= {pp.webhook, pp.health, pp.metrics}
        assert health.probes(settings)[name].url == f"http://127.0.0.1:{pp.health}/readyz"
    assert len(seen_ports) == 9
    # the webhook configurations and conversion keep naming kcp-manager's port: shard 0's
    assert ports.shard(settings, 0) == ports.manager(settings, "kcp-manager")
    # the other programs are untouched by sharding
    for p in today:
        if p.name != "kcp-manager":
            assert three[p.name] == p


def test_every_shard_port_is_in_the_block_and_collides_with_nothing(settings: Settings) -> None:
    owners = up.port_owners(settings, shards.MAX_SHARDS)
    block = range(settings.ports.stack_base, settings.ports.stack_base + ports.BLOCK)
    mine = [p for p, o in owners.items() if o in shards.EXTRA_PROGRAMS]
    assert len(mine) == 3 * (shards.MAX_SHARDS - 1) and all(p in block for p in mine)
    every = [p for n in range(1, shards.MAX_SHARDS) for p in vars(ports.shard(settings, n)).values()]
    every += [p for m in managers.NAMES for p in vars(ports.manager(settings, m)).values()]
    every += [ports.kcm(settings), ports.mgmt_etcd_metrics(settings), ports.tenant_etcd_metrics(settings)]
    assert len(every) == len(set(every))
    with pytest.raises(ValueError):
        ports.shard(settings, shards.MAX_SHARDS)
    # status lists each shard right after kcp-manager
    at = status.ORDER.index("kcp-manager")
    assert status.ORDER[at + 1 : at + shards.MAX_SHARDS] == shards.EXTRA_PROGRAMS


def test_the_shard_count_is_kept_in_the_stack_state_and_read_back(settings: Settings) -> None:
    from lab import management

    assert up.current_shards(settings) == 1 and management.shards(settings) == 1
    up.write_state(settings, tuning="seed", shards=3)
    assert up.current_shards(settings) == 3 and management.shards(settings) == 3
    assert up.current_profile(settings) == "seed"
    # the metrics of every running shard are scraped, each on its own port
    targets = {t.component: t.url for t in scrape.targets(settings)}
    for n in (1, 2):
        assert (
            targets[f"kcp-manager-shard-{n}"]
            == f"http://127.0.0.1:{ports.shard(settings, n).metrics}/metrics"
        )
    assert "kcp-manager-shard-3" not in targets
    for damaged in ('"3"', "true", "0", "99", "null"):
        up.state_path(settings).write_text(f'{{"shards": {damaged}}}')
        assert up.current_shards(settings) == 1, damaged


def test_status_reads_each_clusters_shard_from_its_kcp_label() -> None:
    def ns(i: int) -> Obj:
        return {"metadata": {"name": f"test-{i}", "labels": {naming.CLUSTER_LABEL: f"test-{i}"}}}

    def kcp(i: int, labels: dict[str, str]) -> Obj:
        meta = {
            "name": f"test-{i}",
            "namespace": f"test-{i}",
            "labels": {naming.CLUSTER_LABEL: f"test-{i}", **labels},
        }
        return {"metadata": meta, "status": {}}

    got = inventory.derive(
        "test", [ns(1), ns(2), ns(3)], kcps=[kcp(1, shards.labels(1, 2)), kcp(2, shards.labels(2, 2))]
    )
    assert [(c.name, c.shard) for c in got] == [("test-1", 1), ("test-2", 0), ("test-3", None)]
    assert got[0].as_dict()["shard"] == 1


def _run(k: int | None, kind: RunKind = RunKind.create) -> Run:
    settings: dict[str, Any] = {"versions": {"capi": "v1.13.6"}}
    if k is not None:
        settings["shards"] = k
    return Run(1, kind, T0, T0 + 900, "ok", ["lab", "create-clusters", "3"], settings, {"cores": 2})


def test_the_report_of_a_sharded_run_shows_each_shards_clusters_manager_and_reconciles() -> None:
    order = PHASES[RunKind.create]
    events = [Event(f"test-{i}", i, p, T0 + 10 * i + k) for i in (1, 2, 3) for k, p in enumerate(order)]
    events = [e for e in events if not (e.index == 3 and e.phase == order[-1])]  # test-3 never done
    samples = [
        Sample(T0 + 5, "kcp-manager", 100 * 2**20, 10.0),
        Sample(T0 + 5, "kcp-manager-shard-1", 80 * 2**20, 20.0),
    ]
    reconciles = [
        MetricSample(T0 + t, name, "controller_runtime_reconcile_total", "controller=kubeadmcontrolplane", v)
        for name, values in (("kcp-manager", (0.0, 5.0)), ("kcp-manager-shard-1", (0.0, 9.0)))
        for t, v in zip((1, 60), values, strict=True)
    ]
    depth = [
        MetricSample(T0 + t, name, "workqueue_depth", "name=kubeadmcontrolplane", 1.0)
        for name in ("kcp-manager", "kcp-manager-shard-1")
        for t in (1, 60)
    ]
    r = report.build(_run(2), events, samples, metric_samples=reconciles + depth)
    s0, s1 = r.shards
    assert (s0.shard, s0.manager, s0.clusters, s0.done) == ("shard-0", "kcp-manager", 1, 1)  # test-2
    assert (s1.shard, s1.manager, s1.clusters, s1.done) == ("shard-1", "kcp-manager-shard-1", 2, 1)
    assert (s0.rss_bytes, s0.cpu_percent, s1.rss_bytes, s1.cpu_percent) == (
        100 * 2**20,
        10.0,
        80 * 2**20,
        20.0,
    )
    assert (s0.reconciles, s1.reconciles) == (5.0, 9.0)
    assert s0.to_done.p50 == float(len(order) - 1)
    md = report.to_markdown(r)
    assert "## KCP shards (2; a cluster's shard is its index mod 2)" in md
    assert "| shard-1 | kcp-manager-shard-1 | 2 | 1 |" in md
    assert json.loads(json.dumps(r.as_dict()))["shards"][1]["reconciles"] == 9.0
    page = report_html.render(r, [])
    assert "<h2>KCP shards (2; a cluster&#x27;s shard is its index mod 2)</h2>" in page
    assert "<td>kcp-manager-shard-1</td>" in page
    # an unsharded run (K=1 records nothing) has no such section
    plain = report.build(_run(None), events, samples)
    assert plain.shards == [] and "KCP shards" not in report.to_markdown(plain)
    assert "KCP shards" not in report_html.render(plain, [])
    # a hosts run records the shard count of its stack, but no KCP shard owns a host
    hosts = report.build(_run(2, RunKind.create_hosts), [], samples)
    assert hosts.shards == [] and "KCP shards" not in report.to_markdown(hosts)


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["up", "--shards", "0"], "error: --shards must be 1..5, got 0"),
        (["up", "--shards", "-2"], "error: --shards must be 1..5, got -2"),
        (["up", "--shards", "6"], "error: --shards must be 1..5, got 6"),
        (["up", "--shards", "abc"], "error: Invalid value for '--shards'"),
        (["up", "--mode", "kind", "--shards", "2"], "error: --shards is for mode local"),
    ],
)
def test_up_refuses_a_bad_shard_count_with_one_line_before_anything(
    run_lab: Any, lab_env: dict[str, str], args: list[str], want: str
) -> None:
    out = run_lab(*args, env={"GOROOT": "/nonexistent", "GOPROXY": "off"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(want) and out.stderr.count("\n") == 1 and out.stdout == ""
    assert not any(Path(lab_env["LAB_HOME"]).glob("*")), list(Path(lab_env["LAB_HOME"]).glob("*"))
