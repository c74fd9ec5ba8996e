"""playbooks/backing-cluster.yml over real SSH, against network-namespace hosts (tests/support/hosts.py).

What runs for real: molecule converges the playbook on two hosts (labh1 runtime kind, labh2 runtime
process), every task that needs no container engine: inputs checked, sysctl.d and limits.d files,
kind and kubectl installed from the offline artifacts directory, the kind config rendered, a venv
with lab installed from a wheel built here plus its dependency wheelhouse (no index on the host), and
binaries copied from a binary cache. molecule's idempotence step and a further plain ansible-playbook
run must report no change.

What runs in --check only: the apt and container-runtime tasks (against this machine's real apt, no
install) and the kind-cluster tasks (kind create, kind get kubeconfig, fetch), which need docker.
Ansible's command module does not execute in check mode, so those kind tasks are reported skipped:
this proves they are check-mode safe and correctly gated; the rendered config is checked by kind's
own loader and validator (built from the pinned kind module), and by parsing it. The kind-cluster
tasks run for real in tests/e2e/test_kind_host.py, on a namespace host with its own Docker engine;
here only their first step does, the engine check, against a socket nothing serves.

Stand-ins: the artifacts directory's `kind` is a small file the test writes, only ever copied (never
executed); `kubectl` is this machine's real kubectl, and the verify step runs it on the host. The
binary cache holds two small files the test writes in lab's cache layout, only copied and compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support import kindconfig
from support.hosts import NsHost, namespace_hosts, task_results, unavailable_reason

from lab import versions
from lab.backing import node_ports

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "backing-cluster.yml"
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
#: What the tests install when missing: the versions they were written against (Python 3.11 gets
#: ansible-core 2.19, the last line that supports it on the controller).
_TOOLS = {
    "ansible-playbook": "ansible-core==2.19.14",
    "ansible-lint": "ansible-lint==26.10.1",
    "molecule": "molecule==26.10.0",
}
_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Lab:
    hosts: list[NsHost]
    inventory: Path
    env: dict[str, str]
    artifacts: Path
    wheel: Path
    bin_cache: Path
    binaries: list[str]
    kubeconfigs: Path


def _tool(name: str) -> str:
    """The tool installed beside this Python (where pip puts it), else the one on PATH."""
    path = _BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _require_tools() -> None:
    missing = [spec for tool, spec in _TOOLS.items() if not (_BIN / tool).exists() and not shutil.which(tool)]
    if missing:
        # The test setup installs them from PyPI, like every other Python dependency of the tests.
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *missing],
            check=True,
            timeout=900,
        )


def _build_wheels(work: Path) -> tuple[Path, Path]:
    """lab's wheel and, for the offline install, a wheelhouse of its dependencies (built from PyPI)."""
    src = work / "src"
    src.mkdir()
    # Build from a copy: an in-tree build would write build/ into the shared checkout.
    shutil.copy2(REPO / "pyproject.toml", src)
    shutil.copytree(REPO / "lab", src / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    wheelhouse = work / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            str(src),
            "-w",
            str(wheelhouse),
        ],
        check=True,
        timeout=600,
    )
    (wheel,) = wheelhouse.glob("metal3_scale_lab-*.whl")
    (work / "artifacts").mkdir()
    with tarfile.open(work / "artifacts" / "wheels.tar", "w") as tar:
        for whl in sorted(wheelhouse.glob("*.whl")):
            tar.add(whl, arcname=whl.name)
    return wheel, wheelhouse


def _binary_cache(work: Path) -> tuple[Path, list[str]]:
    cache = work / "bin-cache"
    etcd = versions.COMPONENTS["etcd"].default
    k8s = versions.COMPONENTS["kubernetes"].default
    binaries = [f"etcd/{etcd}/etcd", f"kubernetes/{k8s}/kube-apiserver"]
    for rel in binaries:
        path = cache / rel
        path.parent.mkdir(parents=True)
        path.write_text(f"#!/bin/sh\n# stand-in for {rel}: copied by the playbook, never run\nexit 1\n")
    return cache, binaries


def _inventory(hosts: list[NsHost], lab_vars: dict[str, object]) -> dict[str, object]:
    members: dict[str, object] = {}
    for h, runtime in zip(hosts, ("kind", "process"), strict=True):
        members[h.name] = {
            "ansible_host": h.address,
            "internal_ip": h.address,
            "backing_runtime": runtime,
            "backing_root": str(h.root),
            "ansible_ssh_private_key_file": str(h.client_key),
            "ansible_ssh_common_args": " ".join(h.ssh_args()[:-2]),
            # The host shares this machine's filesystem: keep Ansible's remote temp files in its dir.
            "ansible_remote_tmp": str(h.workdir / "ansible-tmp"),
        }
    return {"all": {"vars": lab_vars, "children": {"backing": {"hosts": members}}}}


def _ansible_env(work: Path) -> dict[str, str]:
    """Ansible's state (home, temp files, SSH control sockets) private to this run."""
    return {
        **os.environ,
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-local"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
        "ANSIBLE_PIPELINING": "true",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "MOLECULE_EPHEMERAL_DIRECTORY": str(work / "molecule"),
        "NO_COLOR": "1",
        "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PY_COLORS": "0",
    }


@pytest.fixture(scope="module")
def tool_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    _require_tools()
    return _ansible_env(tmp_path_factory.mktemp("ansible"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = unavailable_reason()
    if reason:
        print(f"skipping playbook tests: {reason}")
        pytest.skip(reason)
    _require_tools()
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl must be on PATH (the machine provides it; the playbook installs a copy)"
    work = tmp_path_factory.mktemp("pb")
    wheel, _ = _build_wheels(work)
    artifacts = work / "artifacts"
    (artifacts / "kubectl").symlink_to(Path(kubectl).resolve())
    (artifacts / "kind").write_text(
        "#!/bin/sh\n# stand-in for kind: copied by the playbook, never run\nexit 1\n"
    )
    bin_cache, binaries = _binary_cache(work)
    kubeconfigs = work / "kubeconfigs"

    with namespace_hosts(2, work / "hosts") as hosts:
        lab_vars: dict[str, object] = {
            "ansible_user": "root",
            "ansible_become": False,
            "ansible_python_interpreter": "/usr/bin/python3",
            "backing_offline": True,
            "backing_artifacts_dir": str(artifacts),
            "backing_kubeconfig_dir": str(kubeconfigs),
            # Package and container-runtime tasks would change this machine: --check only (below).
            "backing_host_install_packages": False,
            "backing_host_container_runtime": False,
            # The kernel is shared with this machine: write sysctl.d, do not apply it.
            "backing_host_apply_sysctl": False,
            "backing_process_wheel": str(wheel),
            "backing_process_bin_cache": str(bin_cache),
            "backing_process_binaries": binaries,
            "backing_kubernetes_version": versions.COMPONENTS["kubernetes"].default,
        }
        inventory = work / "inventory.yml"
        inventory.write_text(yaml.safe_dump(_inventory(hosts, lab_vars), sort_keys=False))
        cp_dir = work / "cp"
        env = {**_ansible_env(work), "LAB_MOLECULE_INVENTORY": str(inventory)}
        try:
            yield Lab(hosts, inventory, env, artifacts, wheel, bin_cache, binaries, kubeconfigs)
        finally:
            # Close Ansible's persistent SSH masters before the hosts go away.
            for sock in cp_dir.glob("*") if cp_dir.is_dir() else []:
                subprocess.run(
                    ["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "x"], capture_output=True, timeout=30
                )


def _run(
    on: Lab | dict[str, str], tool: str, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repo root with the lab's (or a plain) Ansible environment; output is printed."""
    env = on.env if isinstance(on, Lab) else on
    cmd = [_tool(tool), *args]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    print(f"$ {' '.join(cmd)}\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}")
    return res


def _recap(output: str) -> dict[str, dict[str, int]]:
    return {
        m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
        for m in _RECAP.finditer(output)
    }


@pytest.fixture(scope="module")
def converged(lab: Lab) -> dict[str, str]:
    """A --check run on the new hosts, then molecule converge, idempotence and verify; outputs by step."""
    out = {}
    res = _run(lab, "ansible-playbook", "-i", str(lab.inventory), "--check", str(PLAYBOOK))
    assert res.returncode == 0, "--check on new hosts failed"
    out["check"] = res.stdout
    out["check_wrote"] = "\n".join(str(p) for h in lab.hosts for p in h.root.rglob("*"))
    for step in ("converge", "idempotence", "verify"):
        res = _run(lab, "molecule", step)
        assert res.returncode == 0, f"molecule {step} failed"
        out[step] = res.stdout + res.stderr
    return out


def test_check_mode_on_new_hosts_predicts_changes_and_writes_nothing(converged: dict[str, str]) -> None:
    recap = _recap(converged["check"])
    assert set(recap) == {"labh1", "labh2"}
    assert all(r["failed"] == 0 and r["changed"] > 0 for r in recap.values())
    assert converged["check_wrote"] == ""


def test_syntax_check_with_example_inventory(tool_env: dict[str, str]) -> None:
    res = _run(tool_env, "ansible-playbook", "--syntax-check", "-i", "inventories/example", str(PLAYBOOK))
    assert res.returncode == 0
    assert "playbook: " in res.stdout


def test_ansible_lint_production_profile_is_clean(tool_env: dict[str, str]) -> None:
    res = _run(tool_env, "ansible-lint", "--nocolor")
    assert res.returncode == 0
    assert "Profile 'production' was required, and it passed" in res.stdout + res.stderr


def test_molecule_converges_and_second_run_changes_nothing(lab: Lab, converged: dict[str, str]) -> None:
    recap = _recap(converged["converge"])
    assert set(recap) == {"labh1", "labh2"}
    assert all(r["failed"] == 0 and r["unreachable"] == 0 and r["changed"] > 0 for r in recap.values())
    assert "idempotence] Executed: Successful" in converged["idempotence"]
    second = _recap(converged["idempotence"])
    assert {h: r["changed"] for h, r in second.items()} == {"labh1": 0, "labh2": 0}


@pytest.fixture(scope="module")
def kind_validate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kind's own config loader and validator, built from the pinned kind module."""
    return kindconfig.build(tmp_path_factory.mktemp("kind"))


def test_rendered_kind_config(lab: Lab, converged: dict[str, str], kind_validate: Path) -> None:
    kind_host, process_host = lab.hosts
    path = kind_host.root / "etc/metal3-scale-lab/kind-config.yaml"
    run = kindconfig.check(kind_validate, path, "role", "ports")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["control-plane", str(node_ports.DEFAULT_BLOCK.size + 1)]
    # the validator can fail: the same mapping twice is refused
    doubled = yaml.safe_load(path.read_text())
    doubled["nodes"][0]["extraPortMappings"].append(doubled["nodes"][0]["extraPortMappings"][0])
    (lab.kubeconfigs.parent / "doubled.yaml").write_text(yaml.safe_dump(doubled))
    run = kindconfig.check(kind_validate, lab.kubeconfigs.parent / "doubled.yaml", "role", "ports")
    assert run.returncode == 1 and "port mapping with same listen address, port and protocol" in run.stderr
    cfg = yaml.safe_load(path.read_text())
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert cfg["kind"] == "Cluster"
    assert cfg["name"] == "lab-backing"
    assert cfg["networking"] == {"apiServerAddress": kind_host.address, "apiServerPort": 6443}
    (node,) = cfg["nodes"]
    assert node["role"] == "control-plane"
    assert "image" not in node  # the kind release's default node image unless one is pinned
    (patch,) = node["kubeadmConfigPatches"]
    # failCgroupV1: false only where the host has no cgroup v2 hierarchy (this machine: v1)
    v1 = {"failCgroupV1": False} if not Path("/sys/fs/cgroup/cgroup.controllers").exists() else {}
    assert yaml.safe_load(patch) == {"kind": "KubeletConfiguration", "maxPods": 250, **v1}
    # kind's default CNI: no node image archive (lab's node image, without kindnetd, comes from one)
    assert "extraMounts" not in node and "disableDefaultCNI" not in cfg["networking"]
    # kind opens NodePorts on its node container only: the VM gets what is published, the block
    # lab hands apiserver ports out of (lab backing add's default) and etcd's port
    ports = node["extraPortMappings"]
    block = node_ports.DEFAULT_BLOCK
    assert [p["containerPort"] for p in ports] == [*block, node_ports.DEFAULT_ETCD_NODE_PORT]
    assert all(p["hostPort"] == p["containerPort"] and p["listenAddress"] == kind_host.address for p in ports)
    assert {p["protocol"] for p in ports} == {"TCP"}
    # docker publishes them by iptables DNAT, not one docker-proxy process each; merged, not replaced
    daemon = json.loads((kind_host.root / "etc/docker/daemon.json").read_text())
    assert daemon == {"userland-proxy": False}
    # runtime process renders no kind config and leaves docker alone
    assert not (process_host.root / "etc/metal3-scale-lab/kind-config.yaml").exists()
    assert not (process_host.root / "etc/docker").exists()


def test_host_files_land_under_each_host_root(lab: Lab, converged: dict[str, str]) -> None:
    kind_host, process_host = lab.hosts
    for h in lab.hosts:
        sysctl = (h.root / "etc/sysctl.d/90-metal3-scale-lab.conf").read_text()
        assert "fs.inotify.max_user_watches = 1048576" in sysctl
        assert "fs.inotify.max_user_instances = 8192" in sysctl
        limits = (h.root / "etc/security/limits.d/90-metal3-scale-lab.conf").read_text()
        assert "* hard nofile 1048576" in limits and "root soft nofile 1048576" in limits
        kubectl = h.root / "usr/local/bin/kubectl"
        assert kubectl.stat().st_mode & 0o777 == 0o755
        assert _sha256(kubectl) == _sha256(lab.artifacts / "kubectl")
    assert (kind_host.root / "usr/local/bin/kind").read_text() == (lab.artifacts / "kind").read_text()
    assert not (process_host.root / "usr/local/bin/kind").exists()

    home = process_host.root / "var/lib/metal3-scale-lab"
    assert home.stat().st_mode & 0o777 == 0o700
    for rel in lab.binaries:
        copied = home / "bin" / rel
        assert copied.stat().st_mode & 0o777 == 0o755
        assert _sha256(copied) == _sha256(lab.bin_cache / rel)
    env = (process_host.root / "etc/metal3-scale-lab/lab.env").read_text()
    assert f"LAB_HOME={home}\n" in env
    # lab really runs from the host's venv, installed without an index (offline wheelhouse)
    lab_bin = process_host.root / "opt/metal3-scale-lab/venv/bin/lab"
    res = process_host.ssh(f"LAB_HOME={home}", str(lab_bin), "--version")
    assert res.returncode == 0, res.stderr
    assert re.search(r"\d+\.\d+\.\d+", res.stdout)
    assert not (kind_host.root / "opt/metal3-scale-lab/venv").exists()


def test_plain_playbook_rerun_reports_no_change(lab: Lab, converged: dict[str, str]) -> None:
    res = _run(
        lab, "ansible-playbook", "-i", str(lab.inventory), "--skip-tags", "kind-cluster", str(PLAYBOOK)
    )
    assert res.returncode == 0
    recap = _recap(res.stdout)
    assert {h: (r["changed"], r["failed"], r["unreachable"]) for h, r in recap.items()} == {
        "labh1": (0, 0, 0),
        "labh2": (0, 0, 0),
    }
    assert all(r["ok"] > 10 for r in recap.values())


def test_container_runtime_and_kind_cluster_in_check_mode(lab: Lab, converged: dict[str, str]) -> None:
    res = _run(
        lab,
        "ansible-playbook",
        "-i",
        str(lab.inventory),
        "--check",
        "--diff",
        "--tags",
        "packages,container-runtime,kind-cluster",
        "-e",
        "backing_host_install_packages=true backing_host_container_runtime=true",
        str(PLAYBOOK),
    )
    assert res.returncode == 0
    out = res.stdout
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in _recap(out).values())
    # apt really evaluated both hosts against this machine's package state, installing nothing
    assert set(task_results(out, "backing_host : Install the packages a backing host needs")) == {
        "labh1",
        "labh2",
    }
    runtime = task_results(out, "backing_host : Install the container runtime")
    assert runtime["labh1"] in ("ok", "changed") and runtime["labh2"] == "skipping"
    if runtime["labh1"] == "changed":  # --diff names what apt would install
        assert "docker.io" in out
    assert (
        task_results(out, "backing_host : Start the container runtime at boot and now")["labh1"] == "skipping"
    )
    # docker's daemon.json was written by converge, the proxy is off: not rewritten, nothing restarted
    assert task_results(out, "backing_kind : Turn docker's userland proxy off")["labh1"] == "skipping"
    assert "RUNNING HANDLER [backing_kind : Restart docker]" not in out
    # kind is never executed in check mode; the create/kubeconfig tasks are gated, not failing
    assert task_results(out, "backing_kind : List the kind clusters on the host")["labh1"] == "skipping"
    assert task_results(out, "backing_kind : Create the kind cluster")["labh1"] == "skipping"
    assert not (lab.kubeconfigs / "labh1.yaml").exists()


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            '{"internal_ip": "not-an-ip"}',
            "labh1: internal_ip must be the host's IP address on the network the management cluster reaches, got not-an-ip",
        ),
        ('{"backing_runtime": "vm"}', "labh1: backing_runtime must be kind or process, got vm"),
        (
            '{"backing_kind_node_port_count": 2800}',
            "labh1: NodePorts 30000-32799 for apiservers and 32767 for etcd must lie in 30000-32767",
        ),
        (
            '{"backing_kind_node_port_count": 99}',
            "the block must hold backing_capacity (100) apiservers",
        ),
        (
            '{"backing_kind_etcd_node_port": 30050}',
            "labh1: NodePorts 30000-30099 for apiservers and 30050 for etcd must lie",
        ),
        (
            '{"backing_offline": false, "backing_kind_version": ""}',
            "online installs download kubectl and kind by version: set backing_kubernetes_version",
        ),
        (
            '{"backing_kind_node_image_archive": "node.tar"}',
            "labh1: backing_kind_node_image_archive needs backing_kind_node_image",
        ),
        (
            '{"backing_kind_image_archives": [{"image": "registry.k8s.io/etcd:3.6.5-0"}]}',
            "backing_kind_image_archives must be a list of {archive, image}",
        ),
    ],
)
def test_bad_input_fails_before_any_change(
    lab: Lab, converged: dict[str, str], extra_vars: str, message: str
) -> None:
    kind_host = lab.hosts[0]
    before = sorted(p.relative_to(kind_host.root) for p in kind_host.root.rglob("*"))
    res = _run(
        lab, "ansible-playbook", "-i", str(lab.inventory), "--limit", "labh1", "-e", extra_vars, str(PLAYBOOK)
    )
    assert res.returncode != 0
    assert message in res.stdout
    assert _recap(res.stdout)["labh1"]["changed"] == 0
    assert sorted(p.relative_to(kind_host.root) for p in kind_host.root.rglob("*")) == before


def test_kind_tasks_refuse_a_host_whose_engine_does_not_answer(lab: Lab, converged: dict[str, str]) -> None:
    """Not --check: the engine check runs for real (the docker CLI against a socket nothing serves) and
    stops the host before kind is run."""
    socket = f"unix://{lab.hosts[0].workdir}/no-engine/docker.sock"
    res = _run(
        lab,
        "ansible-playbook",
        "-i",
        str(lab.inventory),
        "--limit",
        "labh1",
        "--tags",
        "kind-cluster",
        "-e",
        json.dumps({"backing_kind_docker_host": socket}),
        str(PLAYBOOK),
    )
    assert res.returncode != 0
    assert f"labh1: no Docker engine answers at {socket} (" in res.stdout
    assert "TASK [backing_kind : List the kind clusters on the host]" not in res.stdout
    assert _recap(res.stdout)["labh1"]["changed"] == 0
    assert not (lab.kubeconfigs / "labh1.yaml").exists()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
