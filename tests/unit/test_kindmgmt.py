"""kind mode's pure parts: kind config, cluster reuse rules, clusterctl command and inventory, tuning
patches for every profile and manager, and the preflight line `lab up --mode kind` ends with."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import config, doctor, tuning
from lab.errors import LabError
from lab.kindmgmt import cluster, clusterctl, lease, patches, preflight, probes


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


# --- kind config ----------------------------------------------------------------------------------


def test_kind_config_is_three_control_planes_on_the_pinned_image(settings: config.Settings) -> None:
    cfg = cluster.render_config(settings)
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert cfg["name"] == cluster.CLUSTER_NAME
    assert cfg["nodes"] == [{"role": "control-plane", "image": "kindest/node:v1.35.4"}] * 3
    assert set(cfg) == {"kind", "apiVersion", "name", "nodes"}  # the seed set no apiserver flags


def test_the_cgroup_v1_kubelet_patch_applies_only_on_a_cgroup_v1_host(settings: config.Settings) -> None:
    v1 = cluster.render_config(settings, cgroup_v1=True)
    assert v1.pop("kubeadmConfigPatches") == ["kind: KubeletConfiguration\nfailCgroupV1: false\n"]
    assert v1 == cluster.render_config(settings)
    host_is_v1 = not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    written = yaml.safe_load(cluster.config_yaml(settings))
    assert ("kubeadmConfigPatches" in written) == host_is_v1
    assert written == cluster.render_config(settings, cgroup_v1=host_is_v1)


def test_kind_nodes_and_image_come_from_settings(lab_env, monkeypatch) -> None:
    monkeypatch.setenv("LAB_KIND_NODES", "1")
    monkeypatch.setenv("LAB_VERSIONS__KUBERNETES", "v1.35.9")
    cfg = cluster.render_config(config.load())
    assert cfg["nodes"] == [{"role": "control-plane", "image": "kindest/node:v1.35.9"}]
    monkeypatch.setenv("LAB_KIND_NODE_IMAGE", "registry.local/kindest/node:v1.35.4@sha256:abc")
    assert cluster.render_config(config.load())["nodes"][0]["image"].startswith("registry.local/")


def test_kind_nodes_out_of_range_is_one_error_line(run_lab) -> None:
    r = run_lab("up", "--mode", "kind", env={"LAB_KIND_NODES": "0"})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: invalid setting kind_nodes: Input should be greater than or equal to 1"
    ]


def test_cluster_plan_creates_reuses_and_refuses(settings: config.Settings) -> None:
    assert cluster.plan(settings, ["other"]) == "create"
    with pytest.raises(LabError, match="did not create it"):
        cluster.plan(settings, [cluster.CLUSTER_NAME])
    path = cluster.config_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text(cluster.config_yaml(settings))
    assert cluster.plan(settings, [cluster.CLUSTER_NAME]) == "reuse"
    changed = cluster.render_config(settings)
    changed["nodes"] = changed["nodes"][:1]
    path.write_text(yaml.safe_dump(changed))
    with pytest.raises(LabError, match=r"another config \(1 node\(s\) now, 3 wanted\).*kind delete cluster"):
        cluster.plan(settings, [cluster.CLUSTER_NAME])


def test_kind_create_keeps_the_users_kubeconfig(settings: config.Settings) -> None:
    argv = cluster.create_argv("kind", cluster.config_path(settings), settings.home / "kubeconfig")
    assert argv == [
        "kind",
        "create",
        "cluster",
        "--config",
        str(settings.home / "kind" / "kind-config.yaml"),
        "--kubeconfig",
        str(settings.home / "kubeconfig"),
        "--wait",
        "5m",
    ]


def test_config_change_names_the_image() -> None:
    old = {"nodes": [{"role": "control-plane", "image": "kindest/node:v1.35.3"}]}
    new = {"nodes": [{"role": "control-plane", "image": "kindest/node:v1.35.4"}]}
    assert (
        cluster.config_change(old, new) == "node image kindest/node:v1.35.3 now, kindest/node:v1.35.4 wanted"
    )
    assert cluster.config_change(new, new) is None


# --- clusterctl -------------------------------------------------------------------------------------


def test_clusterctl_init_pins_every_provider(settings: config.Settings, tmp_path: Path) -> None:
    argv = clusterctl.init_argv(settings, "clusterctl", tmp_path / "kc", tmp_path / "cc.yaml")
    assert argv == [
        "clusterctl",
        "init",
        "--kubeconfig",
        str(tmp_path / "kc"),
        "--config",
        str(tmp_path / "cc.yaml"),
        "--core",
        "cluster-api:v1.13.6",
        "--bootstrap",
        "kubeadm:v1.13.6",
        "--control-plane",
        "kubeadm:v1.13.6",
        "--infrastructure",
        "metal3:v1.13.2",
        "--ipam",
        "metal3:v1.13.2",
        "--wait-providers",
        "--wait-provider-timeout",
        "600",
    ]


def test_clusterctl_init_does_not_wait_when_lab_issues_the_certificates(
    settings: config.Settings, tmp_path: Path
) -> None:
    waiting = clusterctl.init_argv(settings, "clusterctl", tmp_path / "kc", tmp_path / "cc.yaml")
    argv = clusterctl.init_argv(settings, "clusterctl", tmp_path / "kc", tmp_path / "cc.yaml", wait=False)
    assert argv == waiting[: waiting.index("--wait-providers")]
    assert not [a for a in argv if a.startswith("--wait")]


def test_clusterctl_versions_follow_settings(lab_env, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAB_VERSIONS__CAPM3", "v1.13.1")
    monkeypatch.setenv("LAB_VERSIONS__CERT_MANAGER", "v1.21.0")
    s = config.load()
    assert "metal3:v1.13.1" in clusterctl.init_argv(s, "clusterctl", tmp_path, tmp_path)
    assert clusterctl.config(s) == {
        "cert-manager": {
            "url": "https://github.com/cert-manager/cert-manager/releases/v1.21.0/cert-manager.yaml",
            "version": "v1.21.0",
            "timeout": "600s",
        }
    }
    # lab's limit on clusterctl init outlasts both of clusterctl's own waits
    waits = clusterctl.CERT_MANAGER_WAIT_SECONDS + clusterctl.WAIT_PROVIDERS_SECONDS
    assert waits < clusterctl.INIT_TIMEOUT_SECONDS
    written = yaml.safe_load(clusterctl.write_config(s).read_text())
    assert written["cert-manager"]["version"] == "v1.21.0"


def test_clusterctl_env_only_disables_the_version_check() -> None:
    assert clusterctl.init_env({"PATH": "/bin"}) == {
        "PATH": "/bin",
        "CLUSTERCTL_DISABLE_VERSIONCHECK": "true",
    }


def _inventory(*items: tuple[str, str, str]) -> dict[str, Any]:
    return {"items": [{"type": t, "providerName": n, "version": v} for t, n, v in items]}


def test_clusterctl_plan_installs_missing_and_refuses_drift(settings: config.Settings) -> None:
    missing, drifted = clusterctl.plan(settings, clusterctl.installed({}))
    assert len(missing) == 5 and not drifted
    have = clusterctl.installed(
        _inventory(
            ("CoreProvider", "cluster-api", "v1.13.6"),
            ("BootstrapProvider", "kubeadm", "v1.13.6"),
            ("ControlPlaneProvider", "kubeadm", "v1.13.6"),
            ("InfrastructureProvider", "metal3", "v1.13.0"),
        )
    )
    missing, drifted = clusterctl.plan(settings, have)
    assert missing == ["metal3 (IPAMProvider)"]
    assert drifted == ["metal3 (InfrastructureProvider) v1.13.0, wanted v1.13.2"]


def test_substitute_defaults_is_what_clusterctl_renders_without_variables() -> None:
    text = "--diagnostics-address=${CAPI_DIAGNOSTICS_ADDRESS:=:8443} --x=${EMPTY:=}"
    assert clusterctl.substitute_defaults(text) == "--diagnostics-address=:8443 --x="
    with pytest.raises(LabError, match="without defaults: NEEDED"):
        clusterctl.substitute_defaults("--a=${NEEDED}")


# --- tuning patches -------------------------------------------------------------------------------

#: args as clusterctl / BMO's config install them at the pinned versions (variables substituted)
UPSTREAM_ARGS = {
    "capi-manager": ["--leader-elect", "--diagnostics-address=:8443", "--insecure-diagnostics=false"],
    "kcp-manager": ["--leader-elect", "--diagnostics-address=:8443", "--insecure-diagnostics=false"],
    "cabpk-manager": ["--leader-elect", "--diagnostics-address=:8443", "--bootstrap-token-ttl=15m"],
    "capm3-manager": ["--webhook-port=9443", "--diagnostics-address=:8443"],
    "bmo-manager": ["--enable-leader-election", "--test-mode"],
}


def _deployment(component: str, args: list[str]) -> dict[str, Any]:
    namespace, name = patches.DEPLOYMENTS[component]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"template": {"spec": {"containers": [{"name": "manager", "args": list(args)}]}}},
    }


@pytest.mark.parametrize("profile", tuning.PROFILES)
@pytest.mark.parametrize("component", list(tuning.COMPONENTS))
def test_patch_for_every_profile_and_manager(settings: config.Settings, component: str, profile: str) -> None:
    args = UPSTREAM_ARGS[component]
    deployment = _deployment(component, args)
    patch = patches.render(settings, component, deployment, profile)
    deadlines = lease.flags(settings, component) if lease.leads(component, args) else []
    want = args + tuning.flags(settings, component, profile) + deadlines
    # CAPM3 runs without leader election; every other manager gets the deadlines in every profile
    assert bool(deadlines) == (component != "capm3-manager")
    if want == args:
        assert patch == [] and component == "capm3-manager" and profile != "high"
        return
    assert patch == [
        {"op": "test", "path": "/spec/template/spec/containers/0/args", "value": args},
        {"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": want},
    ]
    # once applied, a re-run renders nothing, and going back to default keeps only the deadlines
    tuned = patches.tuned(settings, component, deployment, profile)
    assert patches.manager_args(tuned) == want
    assert patches.render(settings, component, tuned, profile) == []
    back = patches.tuned(settings, component, tuned, "default")
    assert patches.manager_args(back) == args + deadlines


def test_patch_values_come_from_the_table(settings: config.Settings) -> None:
    patch = patches.render(settings, "capi-manager", _deployment("capi-manager", []), "seed")
    assert "--cluster-concurrency=100" in patch[1]["value"]
    assert "--kube-api-qps=200" in patch[1]["value"] and "--kube-api-burst=300" in patch[1]["value"]
    bmo_args = ["--enable-leader-election", "--test-mode"]
    bmo = patches.render(settings, "bmo-manager", _deployment("bmo-manager", bmo_args), "high")
    assert bmo[1]["value"] == [
        *bmo_args,
        "--controller-concurrency=50",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        "--lease-duration-seconds=137",
        "--renew-deadline-seconds=107",
        "--retry-period-seconds=26",
    ]


def test_lease_deadlines_satisfy_client_go() -> None:
    """client-go's LeaderElector refuses lease <= renew or renew <= 1.2 x retry (JitterFactor)."""
    assert lease.LEASE_SECONDS > lease.RENEW_SECONDS > 1.2 * lease.RETRY_SECONDS


def test_leader_election_on_or_off_is_read_from_the_args(settings: config.Settings) -> None:
    assert lease.leads("capi-manager", ["--leader-elect"])
    assert not lease.leads("capi-manager", ["--leader-elect", "--leader-elect=false"])
    assert not lease.leads("capm3-manager", UPSTREAM_ARGS["capm3-manager"])
    assert lease.leads("bmo-manager", ["--enable-leader-election", "--test-mode"])
    assert not lease.leads("bmo-manager", ["--leader-elect"])  # not BMO's flag
    assert lease.widen(settings, "capm3-manager", ["--webhook-port=9443"]) == ["--webhook-port=9443"]


def test_lease_flags_replace_earlier_values_and_skip_versions_without_them(
    settings: config.Settings,
) -> None:
    args = ["--leader-elect", "--leader-elect-renew-deadline=10s"]
    widened = lease.widen(settings, "capi-manager", args)
    assert widened.count("--leader-elect-renew-deadline=107s") == 1
    assert "--leader-elect-renew-deadline=10s" not in widened
    assert lease.widen(settings, "capi-manager", widened) == widened
    old = settings.model_copy(update={"versions": settings.versions.model_copy(update={"bmo": "v0.6.0"})})
    assert lease.flags(old, "bmo-manager") == []  # v0.6.0's main.go has no lease flags


#: probes as CAPI's config/manager/manager.yaml and BMO's config/base/manager.yaml have them at the pins
CAPI_PROBE = {
    "httpGet": {"path": "/healthz", "port": "healthz"},
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "failureThreshold": 3,
}
BMO_PROBE = {
    "httpGet": {"path": "/healthz", "port": 9440},
    "periodSeconds": 10,
    "timeoutSeconds": 2,
    "failureThreshold": 10,
}


def _with_probes(deployment: dict[str, Any], probe: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"] = dict(probe)
    container["readinessProbe"] = {**probe, "httpGet": {"path": "/readyz", "port": "healthz"}}
    return deployment


def test_probes_are_widened_never_narrowed() -> None:
    assert probes.widened(CAPI_PROBE) == {**CAPI_PROBE, "timeoutSeconds": 10, "failureThreshold": 6}
    assert probes.widened(BMO_PROBE) == {**BMO_PROBE, "timeoutSeconds": 10}  # its 10 failures stay
    assert probes.widened({"httpGet": {"path": "/healthz"}})["failureThreshold"] == 6  # unset means 3
    assert probes.patch_ops(probes.widen({"livenessProbe": CAPI_PROBE})) == []
    assert probes.widen({"name": "manager"}) == {"name": "manager"}  # no probe: none added


def test_patch_widens_the_probes_after_the_args(settings: config.Settings) -> None:
    component = "capi-manager"
    deployment = _with_probes(_deployment(component, UPSTREAM_ARGS[component]), CAPI_PROBE)
    patch = patches.render(settings, component, deployment, "default")
    assert [op["op"] for op in patch] == ["test", "replace", "replace", "replace"]
    assert [op["path"] for op in patch[2:]] == [
        "/spec/template/spec/containers/0/livenessProbe",
        "/spec/template/spec/containers/0/readinessProbe",
    ]
    assert all(
        op["value"]["timeoutSeconds"] == 10 and op["value"]["failureThreshold"] == 6 for op in patch[2:]
    )
    tuned = patches.tuned(settings, component, deployment, "default")
    assert patches.render(settings, component, tuned, "default") == []
    assert patches.render(settings, component, tuned, "high")[2:] == []  # a re-tune touches args only


def test_patch_refuses_a_deployment_whose_first_container_is_not_the_manager(settings) -> None:
    d = _deployment("capi-manager", [])
    d["spec"]["template"]["spec"]["containers"].insert(0, {"name": "kube-rbac-proxy"})
    with pytest.raises(LabError, match="container 0 is not 'manager'"):
        patches.render(settings, "capi-manager", d, "high")


def test_component_of_knows_the_five_managers() -> None:
    for component in tuning.COMPONENTS:
        assert patches.component_of(_deployment(component, [])) == component
    assert patches.component_of({"kind": "Deployment", "metadata": {"namespace": "x", "name": "y"}}) is None
    service_account = {"kind": "ServiceAccount", "metadata": dict(_deployment("bmo-manager", [])["metadata"])}
    assert patches.component_of(service_account) is None


# --- preflight ------------------------------------------------------------------------------------


def _tool(bindir: Path, name: str, script: str) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_preflight_names_everything_missing_and_creates_nothing(run_lab, lab_env, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _tool(bindir, "kubectl", "echo 'Client Version: v1.35.4'")
    _tool(bindir, "docker", "[ \"$1\" = info ] && exit 1\necho 'Docker version 28.2.2, build x'")
    r = run_lab("up", "--mode", "kind", env={"PATH": str(bindir)})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: lab up --mode kind needs: kind (not installed); docker (client only: no Docker engine "
        "answers); clusterctl (not installed) (lab doctor --mode kind shows all)"
    ]
    assert not Path(lab_env["LAB_HOME"]).exists()


def test_preflight_mode_can_come_from_the_settings(run_lab, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    r = run_lab("up", env={"PATH": str(bindir), "LAB_MODE": "kind"})
    assert r.returncode == 1
    assert "kubectl (not installed); kind (not installed); docker (not installed)" in r.stderr


def test_preflight_refuses_a_clusterctl_older_than_capi(settings: config.Settings) -> None:
    def ok(name: str, version: str) -> doctor.ToolResult:
        return doctor.ToolResult(name, f"/x/{name}", version, True, True, "ok", "")

    tools = [
        ok("kubectl", "1.35.4"),
        ok("kind", "0.33.0"),
        ok("docker", "28.2.2"),
        ok("clusterctl", "1.12.3"),
    ]
    assert preflight.problems(tools, settings) == ["clusterctl (v1.12.3 is older than CAPI v1.13.6)"]
    tools[-1] = ok("clusterctl", "1.13.6")
    assert preflight.problems(tools, settings) == []
