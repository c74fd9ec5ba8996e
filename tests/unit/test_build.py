"""lab.build: wrapper go.mod generation, version stamping, cache hits and the one-line errors.

Nothing here runs a real multi-minute build: cache and error tests put a fake `go` script first on
PATH (a real subprocess the code must talk to), and LAB_HOME is always a tmp dir.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import build, config, gomod
from lab.errors import LabError

GOMOD = """module example.com/up

go 1.25.0

godebug default=go1.25

require example.com/api v0.0.0

replace example.com/api => ./api // local sibling

replace (
\texample.com/b => ./staging/src/example.com/b
\texample.com/c v1.0.0 => example.com/c v1.0.1
)
"""


def _gomod(tmp_path: Path, text: str) -> gomod.GoMod:
    path = tmp_path / "go.mod"
    path.write_text(text)
    return gomod.read_gomod(path)


def test_read_gomod_sees_single_line_and_block_forms(tmp_path: Path) -> None:
    text = GOMOD + "require (\n\texample.com/d v1.2.3\n\texample.com/e v0.1.0 // indirect\n)\n"
    mod = _gomod(tmp_path, text)
    assert mod.replaces == [
        ("example.com/api", "./api"),
        ("example.com/b", "./staging/src/example.com/b"),
        ("example.com/c v1.0.0", "example.com/c v1.0.1"),
    ]
    assert mod.requires == [
        ("example.com/api", "v0.0.0"),
        ("example.com/d", "v1.2.3"),
        ("example.com/e", "v0.1.0"),
    ]


def test_go_directives_keep_go_and_godebug_lines(tmp_path: Path) -> None:
    assert _gomod(tmp_path, GOMOD).directives() == ["go 1.25.0", "godebug default=go1.25"]
    (tmp_path / "bare").mkdir()
    assert _gomod(tmp_path / "bare", "module x\n").directives() == ["go 1.25"]


def test_sibling_candidates() -> None:
    assert build._k8s_staging_candidates("k8s.io/api", "v1.35.4") == ["v0.35.4"]
    assert build._same_minor_candidates("m", "v0.13.2") == ["v0.13.2", "v0.13.1", "v0.13.0"]


def test_build_order_puts_kubernetes_before_the_managers() -> None:
    names = list(build.TARGETS)
    assert names.index("kube-apiserver") < names.index("capi-manager") < names.index("bmo-manager")
    assert names.index("kube-controller-manager") < names.index("kcp-manager")


def test_version_stamps_follow_the_settings(lab_env: dict[str, str]) -> None:
    s = config.load(versions={"kubernetes": "v1.34.2", "capi": "v1.12.3", "bmo": "v0.12.1"})
    k8s = build.ldflags(s, build.TARGETS["kube-apiserver"])
    assert k8s.startswith("-s -w ")
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.2" in k8s
    assert "-X k8s.io/client-go/pkg/version.gitMinor=34" in k8s
    assert "-X sigs.k8s.io/cluster-api/version.gitVersion=v1.12.3" in build.ldflags(
        s, build.TARGETS["kcp-manager"]
    )
    assert "pkg/version.Raw=v0.12.1" in build.ldflags(s, build.TARGETS["bmo-manager"])
    assert build.ldflags(s, build.TARGETS["capm3-manager"]) == "-s -w"


def test_kubernetes_wrapper_pins_every_staging_module(lab_env: dict[str, str]) -> None:
    """Reads the real k8s.io/kubernetes go.mod from the module cache (downloads it once if absent)."""
    s = config.load()
    text = build.wrapper_gomod(s, build.TARGETS["kube-apiserver"])
    upstream = gomod.read_gomod(gomod.component_dir("kubernetes", s.versions.kubernetes) / "go.mod")
    staging = [left for left, right in upstream.replaces if right.startswith("./staging/")]
    assert len(staging) > 20  # api, apimachinery, client-go, apiserver, ...
    minor = s.versions.kubernetes.removeprefix("v1.")
    for module in staging:
        assert f"replace {module} => {module} v0.{minor}\n" in text
    assert "./" not in text
    assert f"require k8s.io/kubernetes {s.versions.kubernetes}\n" in text
    assert "\ngo 1." in text


@pytest.fixture
def fake_go(tmp_path: Path) -> Callable[[str], dict[str, str]]:
    """Write a `go` script and return an environment whose PATH finds it first."""

    def make(body: str) -> dict[str, str]:
        d = tmp_path / "fakebin"
        d.mkdir(exist_ok=True)
        go = d / "go"
        go.write_text("#!/bin/sh\n" + body)
        go.chmod(go.stat().st_mode | stat.S_IXUSR)
        return {"PATH": f"{d}{os.pathsep}{os.environ['PATH']}"}

    return make


def test_too_old_go_is_one_clear_line(run_lab, fake_go) -> None:  # type: ignore[no-untyped-def]
    env = fake_go('[ "$1 $2" = "env GOVERSION" ] && echo go1.21.4 && exit 0\nexit 1\n')
    r = run_lab("build", "kube-apiserver", env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: Go 1.21 is too old: building the pinned components needs Go 1.25+"


def test_unreadable_go_version_is_one_clear_line(run_lab, fake_go) -> None:  # type: ignore[no-untyped-def]
    env = fake_go("echo 'not a go'\n")
    r = run_lab("build", "etcd", env=env)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: cannot tell the Go version (go env GOVERSION said 'not a go')"
    ]


def test_failed_build_names_the_target_and_its_log(run_lab, fake_go, lab_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "go.mod").write_text("module go.etcd.io/etcd/server/v3\n\ngo 1.25\n")
    env = fake_go(
        f"""case "$1 $2" in
  "env GOVERSION") echo go1.26.0 ;;
  "mod download") [ "$3" = "-json" ] && echo '{{"Dir": "{upstream}"}}' ;;
  "mod edit") echo '{{"Go": "1.25"}}' ;;
  "build -mod=mod") echo "compile error: boom" >&2; exit 1 ;;
esac
exit 0
"""
    )
    r = run_lab("build", "etcd", env=env)
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    log = Path(lab_env["LAB_HOME"]) / "logs" / "build" / "etcd-v3.6.5.log"
    assert lines == [f"error: building etcd v3.6.5 failed (go build exit 1); see {log}"]
    assert "compile error: boom" in log.read_text()
    assert not (Path(lab_env["LAB_HOME"]) / "bin" / "etcd" / "v3.6.5" / "etcd").exists()


def test_cached_binary_is_reused_without_running_go(run_lab, fake_go, lab_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "go-was-called"
    env = fake_go(f"touch {marker}\nexit 1\n")
    s = config.load()
    cached = build.binary_path(s, "kube-apiserver")
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    r = run_lab("build", "kube-apiserver", env=env)
    assert r.returncode == 0, r.stderr
    assert "cached" in r.stdout
    assert not marker.exists()
    listing = run_lab("build", "--list", "--output", "json", env=env)
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["kube-apiserver"]["cached"] is True
    assert rows["capi-manager"]["cached"] is False
    assert not marker.exists()


def test_a_target_outside_the_table_builds_by_itself(lab_env: dict[str, str]) -> None:
    """A tool only the tests need (clusterctl) is built from its Target without entering TARGETS."""
    s = config.load()
    tool = build.Target("clusterctl", "capi", "sigs.k8s.io/cluster-api/cmd/clusterctl")
    path = build.binary_path(s, tool)
    assert path == s.bin_dir / "capi" / s.versions.capi / "clusterctl"
    assert build.log_path(s, tool).name == f"clusterctl-{s.versions.capi}.log"
    assert not build.is_cached(s, tool)
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    assert build.is_cached(s, tool) and build.build(s, tool) == path  # cached: no go run
    assert "clusterctl" not in build.TARGETS


def test_unknown_target_is_a_usage_error(run_lab) -> None:  # type: ignore[no-untyped-def]
    r = run_lab("build", "kubelet")
    assert r.returncode == 2
    assert r.stderr.startswith("error: unknown build target kubelet; known: etcd, etcdctl, kube-apiserver")


def test_build_api_rejects_unknown_target(lab_env: dict[str, str]) -> None:
    with pytest.raises(LabError, match="unknown build target"):
        build.build(config.load(), "kubelet")


def test_go_version_reads_the_real_toolchain() -> None:
    out = subprocess.run([gomod.go_binary(), "version"], capture_output=True, text=True, check=True)
    major, minor = build.go_version()
    assert f"go{major}.{minor}" in out.stdout


def test_lab_mux_is_versioned_by_its_module_content(tmp_path: Path) -> None:
    """An edit of lab's own Go code must rebuild: the cache key is a digest of the module's files,
    and test files do not count."""
    src = tmp_path / "mod"
    src.mkdir()
    (src / "go.mod").write_text("module x\n")
    (src / "main.go").write_text("package main\n")
    before = build.source_version(src)
    (src / "main_test.go").write_text("package main\n")
    build.source_version.cache_clear()
    assert build.source_version(src) == before
    (src / "main.go").write_text("package main\n\nfunc main() {}\n")
    build.source_version.cache_clear()
    assert build.source_version(src) != before and before.startswith("src-")
    t = build.TARGETS["lab-mux"]
    assert (
        t.source == build.MUX_SOURCE and (t.source / "go.mod").is_file() and (t.source / "go.sum").is_file()
    )
