"""lab.tuning: version ranges, profiles, and the table's defaults against upstream main.go."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from lab import config, gomod, tuning
from lab.errors import LabError


def settings(**versions: str) -> config.Settings:
    return config.Settings(versions=config.Versions(**versions))


def names(flags: list[str]) -> set[str]:
    return {f.split("=", 1)[0] for f in flags}


def test_default_profile_sets_nothing() -> None:
    s = settings()
    for c in tuning.COMPONENTS:
        assert tuning.flags(s, c, "default") == []
        assert tuning.env(c, "default") == {}
    assert tuning.describe(s, "default") == []


def test_cabpk_never_gets_cluster_concurrency() -> None:
    # A no-op since v1.6 and a fatal unknown flag since v1.13 (PR #13288).
    for capi in ("v1.8.4", "v1.12.3", "v1.13.6", "v1.14.0"):
        for profile in tuning.PROFILES:
            assert "--cluster-concurrency" not in names(
                tuning.flags(settings(capi=capi), "cabpk-manager", profile)
            )


def test_clustercache_flags_follow_the_v1_9_rename() -> None:
    old = tuning.flags(settings(capi="v1.8.7"), "kcp-manager", "high")
    new = tuning.flags(settings(capi="v1.9.0"), "kcp-manager", "high")
    assert {"--clustercachetracker-client-qps", "--clustercachetracker-concurrency"} <= names(old)
    assert not any("clustercache-" in n for n in names(old))
    assert {"--clustercache-client-qps", "--clustercache-concurrency"} <= names(new)
    assert not any("clustercachetracker" in n for n in names(new))
    assert not any(
        "clustercache" in n for n in names(tuning.flags(settings(capi="v1.7.2"), "kcp-manager", "seed"))
    )


def test_seed_is_the_metal3_run_on_every_version() -> None:
    for capi in ("v1.7.2", "v1.12.3", "v1.13.6"):
        s = settings(capi=capi)
        core = tuning.flags(s, "capi-manager", "seed")
        assert "--cluster-concurrency=100" in core and "--machine-concurrency=100" in core
        for c in ("capi-manager", "kcp-manager", "cabpk-manager"):
            assert {"--kube-api-qps=200", "--kube-api-burst=300"} <= set(tuning.flags(s, c, "seed"))
        assert "--kubeadmcontrolplane-concurrency=100" in tuning.flags(s, "kcp-manager", "seed")
        assert "--kubeadmconfig-concurrency=100" in tuning.flags(s, "cabpk-manager", "seed")
    assert tuning.flags(settings(), "capm3-manager", "seed") == []
    assert tuning.flags(settings(), "bmo-manager", "seed") == []


def test_describe_shows_the_default_that_changes() -> None:
    rows = {(c, f): (d, v) for c, f, d, v in tuning.describe(settings(), "high")}
    assert rows[("capi-manager", "--cluster-concurrency")] == ("50", "200")
    assert rows[("capm3-manager", "--kube-api-qps")] == ("20", "100")
    old = {(c, f): (d, v) for c, f, d, v in tuning.describe(settings(capi="v1.12.3"), "high")}
    assert old[("capi-manager", "--cluster-concurrency")] == ("10", "200")
    assert old[("capi-manager", "--kube-api-qps")] == ("20", "300")


def test_every_range_is_disjoint_per_flag() -> None:
    by_flag: dict[tuple[str, str], list[tuning.Knob]] = {}
    for k in tuning.TABLE:
        by_flag.setdefault((k.component, k.flag), []).append(k)
    for (c, f), ks in by_flag.items():
        ks.sort(key=lambda k: k.since)
        for a, b in itertools.pairwise(ks):
            assert a.until is not None and a.until <= b.since, (c, f)
    for c in tuning.COMPONENTS:
        for p in tuning.PROFILES:
            fl = tuning.flags(settings(), c, p)
            assert len(names(fl)) == len(fl), (c, p)


def test_errors_are_usage_errors() -> None:
    with pytest.raises(LabError, match="unknown tuning profile 'turbo'"):
        tuning.flags(settings(), "capi-manager", "turbo")
    with pytest.raises(LabError, match="unknown component"):
        tuning.flags(settings(), "kubelet", "seed")
    with pytest.raises(LabError, match=r"needs capi v1\.5\+ \(configured v1\.4\.9\)") as e:
        tuning.flags(settings(capi="v1.4.9"), "capi-manager", "seed")
    assert e.value.exit_code == 2
    assert tuning.flags(settings(capi="v1.4.9"), "capi-manager", "default") == []


def test_merge_args_replaces_instead_of_appending() -> None:
    args = ["--leader-elect", "--kube-api-qps=20", "-metrics-addr=:8085", "--v=2"]
    merged = tuning.merge_args(args, ["--kube-api-qps=200", "--kube-api-burst=300"])
    assert merged == [
        "--leader-elect",
        "-metrics-addr=:8085",
        "--v=2",
        "--kube-api-qps=200",
        "--kube-api-burst=300",
    ]
    assert tuning.merge_args(merged, ["--kube-api-qps=200", "--kube-api-burst=300"]) == merged


# Where each tunable manager declares its flags, relative to its module root.
MAIN_GO = {
    "capi-manager": "main.go",
    "kcp-manager": "controlplane/kubeadm/main.go",
    "cabpk-manager": "bootstrap/kubeadm/main.go",
    "capm3-manager": "main.go",
    "bmo-manager": "main.go",
}


def upstream_default(source: str, flag: str) -> str:
    """The default literal of a flag declaration, following one identifier (defaultConcurrency)."""
    m = re.search(rf'"{re.escape(flag)}",\s*([^,]+),', source)
    assert m, f"--{flag} not declared"
    value = m[1].strip()
    if re.fullmatch(r"[A-Za-z_]\w*", value):
        d = re.search(rf"\b{value}\s*(?::=|(?:float32|int)?\s*=)\s*([\d.]+)", source)
        assert d, f"cannot resolve {value}"
        value = d[1]
    return value


def test_table_defaults_match_upstream_source_at_pinned_versions() -> None:
    """The 'upstream default' column is what the pinned main.go says (module cache, no build)."""
    s = settings()
    checked = 0
    for component, rel in MAIN_GO.items():
        key = tuning.COMPONENTS[component]
        source = (gomod.component_dir(key, getattr(s.versions, key)) / Path(rel)).read_text()
        minor = s.versions.minor(key)
        for k in tuning.TABLE:
            if k.component == component and k.applies(minor):
                assert upstream_default(source, k.flag) == k.default.split()[0], (component, k.flag)
                checked += 1
    assert checked >= 30


def test_apply_profile_goes_back_to_upstream_defaults() -> None:
    s = settings()
    base = ["--leader-elect", "--diagnostics-address=:8443"]
    high = tuning.apply_profile(base, s, "capi-manager", "high")
    assert high == base + tuning.flags(s, "capi-manager", "high")
    seed = tuning.apply_profile(high, s, "capi-manager", "seed")
    assert seed == base + tuning.flags(s, "capi-manager", "seed")
    assert "--clustercache-client-qps=50" not in seed  # set by high, not by seed
    assert tuning.apply_profile(seed, s, "capi-manager", "default") == base


def test_deployment_patch_tests_then_replaces_the_args() -> None:
    s = settings()
    args = ["--enable-leader-election", "--controller-concurrency=5"]
    patch = tuning.deployment_patch(args, tuning.apply_profile(args, s, "bmo-manager", "high"))
    assert patch[0] == {"op": "test", "path": tuning.ARGS_PATH, "value": args}
    assert patch[1]["op"] == "replace"
    assert patch[1]["value"] == [
        "--enable-leader-election",
        "--controller-concurrency=50",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
    ]
    assert set(tuning.DEPLOYMENTS) == set(tuning.COMPONENTS)
