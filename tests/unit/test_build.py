"""lab.build: wrapper go.mod generation, version stamping, cache hits and the one-line errors.

Nothing here runs a real multi-minute build: cache and error tests put a fake `go` script first on
PATH (a real subprocess the code must talk to), and LAB_HOME is always a tmp dir.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
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
    r = run_lab("build", "kubelett")
    assert r.returncode == 2
    assert r.stderr.startswith("error: unknown build target kubelett; known: etcd, etcdctl, kube-apiserver")


def test_a_bare_build_leaves_out_the_node_image_targets() -> None:
    """`lab build` with no name builds what the local stack needs; the kind node image's five
    Kubernetes programs, its etcd and CoreDNS are built by `lab images build node` (or by name)."""
    node_only = [n for n, t in build.TARGETS.items() if not t.default]
    assert node_only == [
        "kubeadm",
        "kubelet",
        "kubectl",
        "kube-scheduler",
        "kube-proxy",
        "node-etcd",
        "coredns",
    ]
    assert build.TARGETS["node-etcd"].package == build.TARGETS["etcd"].package


def test_build_api_rejects_unknown_target(lab_env: dict[str, str]) -> None:
    with pytest.raises(LabError, match="unknown build target"):
        build.build(config.load(), "kubelett")


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


# --- source patches ------------------------------------------------------------------------------

REPO_PATCHES = Path(__file__).resolve().parents[2] / "patches"
EXAMPLES = REPO_PATCHES / build.EXAMPLES
KCP_EXAMPLE = EXAMPLES / "kcp-manager" / "0001-kcp-first-reconciled-annotation.patch"


def _patch_dir(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_default_patches_are_the_module_s_then_the_target_s_each_sorted(tmp_path: Path) -> None:
    d = _patch_dir(
        tmp_path / "p",
        {
            "capi/b.patch": "b",
            "capi/a.patch": "a",
            "capi/notes.txt": "not a patch",
            "kcp-manager/0001-x.patch": "x",
            "capm3/y.patch": "y",
        },
    )
    s = config.Settings(home=tmp_path / "home", patches=d)
    assert build.default_patches(s, "kcp-manager").names == [
        "capi/a.patch",
        "capi/b.patch",
        "kcp-manager/0001-x.patch",
    ]
    assert build.default_patches(s, "capi-manager").names == ["capi/a.patch", "capi/b.patch"]
    assert build.default_patches(s, "capm3-manager").names == ["capm3/y.patch"]
    assert build.default_patches(s, "etcd").files == ()
    build.check_patch_dirs(s)  # every directory names a component or a target


def test_the_repository_ships_one_example_patch_applied_only_when_asked(tmp_path: Path) -> None:
    s = config.Settings(home=tmp_path / "home")
    assert s.patches_dir == REPO_PATCHES
    assert all(not build.default_patches(s, t).files for t in build.TARGETS)  # upstream by default
    build.check_patch_dirs(s)  # examples/ is not a stray directory
    ex = config.Settings(home=tmp_path / "home", patches=EXAMPLES)
    assert build.default_patches(ex, "kcp-manager").files == (KCP_EXAMPLE,)
    assert all(not build.default_patches(ex, t).files for t in build.TARGETS if t != "kcp-manager")
    text = KCP_EXAMPLE.read_text()
    assert "+++ b/controlplane/kubeadm/internal/controllers/controller.go" in text
    assert "scale-lab.metal3.io/kcp-first-reconciled" in text


def test_the_digest_keys_the_cache_by_names_bytes_and_order(tmp_path: Path) -> None:
    d = _patch_dir(tmp_path / "p", {"kcp-manager/a.patch": "a\n", "kcp-manager/b.patch": "b\n"})
    s = config.Settings(home=tmp_path / "home", patches=d, bin_cache=tmp_path / "bin")
    a, b = d / "kcp-manager" / "a.patch", d / "kcp-manager" / "b.patch"
    upstream = build.binary_path(s, "kcp-manager", build.Patches())
    assert upstream == tmp_path / "bin" / "capi" / s.versions.capi / "kcp-manager"
    default = build.binary_path(s, "kcp-manager")
    digest = build.Patches((a, b)).digest
    assert len(digest) == 12 and default == upstream.parent.with_name(
        f"{s.versions.capi}-patched-{digest}"
    ) / ("kcp-manager")
    assert build.binary_path(s, "kcp-manager", build.Patches((a, b))) == default  # same patches, same entry
    assert build.Patches((b, a)).digest != digest  # order matters
    assert build.binary_path(s, "capi-manager") == upstream.with_name("capi-manager")  # untouched
    b.write_text("b changed\n")
    assert build.Patches((a, b)).digest != digest
    assert build.log_path(s, "kcp-manager").name.startswith(f"kcp-manager-{s.versions.capi}-patched-")


def test_a_stray_patch_directory_is_one_line_exit_2(run_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = _patch_dir(tmp_path / "p", {"kcp/x.patch": "x"})
    r = run_lab("build", "kcp-manager", env={"LAB_PATCHES": str(d)})
    assert r.returncode == 2, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {d}/kcp: patches for an unknown component or target"
    )


def test_patch_option_needs_targets_and_files(run_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run_lab("build", "--patch", str(KCP_EXAMPLE))
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --patch needs the targets"), r.stderr
    r = run_lab("build", "kcp-manager", "--patch", str(tmp_path / "nope.patch"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: patch {tmp_path / 'nope.patch'} is not a file"


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")} if root.exists() else {}


def test_a_patch_that_does_not_apply_names_its_first_failing_hunk_and_caches_nothing(
    run_lab, lab_env: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The real CLI, the real module cache and git apply: the example's first hunk applies, a second
    one whose context is not in the file fails, so nothing may be applied, built or cached."""
    bad = KCP_EXAMPLE.read_text() + (
        "@@ -300,3 +310,4 @@\n not the line that is there\n+\tadded\n also not there\n still not\n"
    )
    d = _patch_dir(tmp_path / "p", {"kcp-manager/0002-bad.patch": bad})
    bin_cache = tmp_path / "bin"
    (bin_cache / "capi" / "v1.13.6").mkdir(parents=True)
    (bin_cache / "capi" / "v1.13.6" / "capi-manager").write_text("an upstream build\n")
    before = _tree(bin_cache)
    env = {"LAB_PATCHES": str(d), "LAB_BIN_CACHE": str(bin_cache)}
    r = run_lab("build", "kcp-manager", env=env, timeout=300)
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert lines == [
        "error: patch kcp-manager/0002-bad.patch does not apply to sigs.k8s.io/cluster-api v1.13.6: "
        "hunk @@ -300,3 +310,4 @@ of controlplane/kubeadm/internal/controllers/controller.go does not match"
    ], r.stderr
    assert _tree(bin_cache) == before
    assert not any((Path(lab_env["LAB_HOME"]) / "src").glob("kcp-manager-*/upstream"))  # no copy left
    # the same file given with --patch: the same line, still nothing cached
    r = run_lab(
        "build", "kcp-manager", "--patch", str(d / "kcp-manager" / "0002-bad.patch"), env=env, timeout=300
    )
    assert r.returncode == 1 and r.stderr.strip() == lines[0]
    assert _tree(bin_cache) == before


def test_a_patched_build_in_the_cache_costs_nothing_and_is_listed(run_lab, fake_go, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "go-was-called"
    env = {**fake_go(f"touch {marker}\nexit 1\n"), "LAB_BIN_CACHE": str(tmp_path / "bin")}
    s = config.Settings(home=tmp_path / "home", bin_cache=tmp_path / "bin", patches=EXAMPLES)
    env["LAB_PATCHES"] = str(EXAMPLES)
    patched = build.binary_path(s, "kcp-manager")
    assert "-patched-" in str(patched)
    patched.parent.mkdir(parents=True)
    patched.write_text("#!/bin/sh\n")
    patched.chmod(0o755)
    r = run_lab("build", "kcp-manager", "--output", "json", env=env)
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["cached"] is True and row["path"] == str(patched)
    assert row["patches"] == ["kcp-manager/0001-kcp-first-reconciled-annotation.patch"]
    assert row["patch_digest"] == build.default_patches(s, "kcp-manager").digest
    assert not marker.exists()
    listing = {x["name"]: x for x in json.loads(run_lab("build", "--list", "-o", "json", env=env).stdout)}
    assert listing["kcp-manager"]["cached"] is True and listing["kcp-manager"]["patches"] == row["patches"]
    assert listing["capi-manager"]["patches"] == [] and listing["capi-manager"]["cached"] is False


def test_patch_info_reads_the_record_beside_a_binary(tmp_path: Path) -> None:
    exe = tmp_path / "kcp-manager"
    exe.write_text("")
    assert build.patch_info(exe) is None  # no record: an upstream build as far as lab knows
    exe.with_suffix(".json").write_text(json.dumps({"name": "kcp-manager"}))
    assert build.patch_info(exe) is None
    exe.with_suffix(".json").write_text(
        json.dumps({"patches": ["kcp-manager/a.patch"], "patch_digest": "abc"})
    )
    info = build.patch_info(exe)
    assert info == {"patches": ["kcp-manager/a.patch"], "digest": "abc"}
    assert build.describe_patches(info) == "kcp-manager/a.patch (abc)"


def test_two_homes_sharing_a_bin_cache_build_a_binary_once(fake_go, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two cold `lab build etcd` at once on one LAB_BIN_CACHE (as two test workers' `lab up` on a new
    machine): the second waits for the first and uses its binary; go build runs once."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "go.mod").write_text("module go.etcd.io/etcd/server/v3\n\ngo 1.25\n")
    builds = tmp_path / "go-builds"
    env = fake_go(
        f"""case "$1 $2" in
  "env GOVERSION") echo go1.26.0 ;;
  "mod download") [ "$3" = "-json" ] && echo '{{"Dir": "{upstream}"}}' ;;
  "mod edit") echo '{{"Go": "1.25"}}' ;;
  "build -mod=mod")
    echo build >> {builds}
    while [ "$1" != "-o" ]; do shift; done
    sleep 2
    printf '#!/bin/sh\\n' > "$2"; chmod 755 "$2" ;;
esac
exit 0
"""
    )
    env = {**os.environ, **env, "LAB_BIN_CACHE": str(tmp_path / "bin")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lab", "build", "etcd"],
            env={**env, "LAB_HOME": str(tmp_path / f"home{i}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert builds.read_text() == "build\n"
    binary = tmp_path / "bin" / "etcd" / "v3.6.5" / "etcd"
    assert os.access(binary, os.X_OK)
