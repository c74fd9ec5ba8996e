"""The offline clusterctl repository, for real: rendered from the Go module cache with the real
kubectl (kustomize) and helm (built from its module), read by the real clusterctl of the pinned CAPI
release in a network namespace with no network at all, and every provider's components (as
clusterctl generates them, variables substituted) and cert-manager.yaml accepted by a real
kube-apiserver in a server-side dry-run after their CRDs and namespaces were created.

Builds: clusterctl and helm into the shared build cache once (helm v4.2.2 cold: see the
measurement in lab.kindmgmt.offline), nothing when cached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.apiserver import RunningApiserver, running_apiserver

from lab import build, config, images
from lab.errors import LabError
from lab.kindmgmt import clusterctl, offline

pytestmark = pytest.mark.slow

CLUSTERCTL = build.Target(
    "clusterctl", "capi", "sigs.k8s.io/cluster-api/cmd/clusterctl", stamp=build._capi_stamp, what="clusterctl"
)
#: cluster-scoped kinds created for real before the dry-run (the rest needs them to exist)
FIRST = ("CustomResourceDefinition", "Namespace")


@pytest.fixture(scope="module")
def shared() -> config.Settings:
    return config.Settings(home=config.default_home())


@pytest.fixture(scope="module")
def rendered(
    tmp_path_factory: pytest.TempPathFactory, shared: config.Settings
) -> tuple[config.Settings, Path]:
    build.build(shared, "helm", print)
    settings = config.Settings(home=tmp_path_factory.mktemp("offline-home"), bin_cache=shared.bin_dir)
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render (kustomize)"
    out = offline.render(settings, kubectl, print)
    print(f"rendered in {out.seconds:.1f}s")
    return settings, out.config


@pytest.fixture(scope="module")
def clusterctl_bin(shared: config.Settings) -> Path:
    return build.build(shared, CLUSTERCTL, print)


@pytest.fixture(scope="module")
def own_apiserver(
    tmp_path_factory: pytest.TempPathFactory, shared: config.Settings
) -> Iterator[RunningApiserver]:
    """A kube-apiserver of this module's own: the CRDs created here (CAPI's with clusterctl's
    conversion webhooks, cert-manager's) must not meet another test's CRDs in the session's."""
    bins = build.ensure(shared, ["etcd", "kube-apiserver"], log=print)
    with running_apiserver(tmp_path_factory.mktemp("api"), bins["etcd"], bins["kube-apiserver"]) as api:
        yield api


def _no_network(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run in a fresh network namespace: only a down loopback, so any fetch fails."""
    return subprocess.run(
        ["unshare", "--net", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **clusterctl.init_env({})},
    )


def _generate(clusterctl_bin: Path, cfg: Path, p: clusterctl.Provider, version: str) -> str:
    out = _no_network(
        [str(clusterctl_bin), "generate", "provider", p.flag, f"{p.name}:{version}", "--config", str(cfg)]
    )
    assert out.returncode == 0, f"{p.name} {p.type}: {out.stderr}"
    return out.stdout


def test_the_repository_has_clusterctls_layout(rendered: tuple[config.Settings, Path]) -> None:
    settings, cfg = rendered
    base = offline.repository_dir(settings)
    for src in offline.SOURCES:
        path = offline.components_path(base, src, offline.version_of(settings, src))
        assert path.is_file() and (path.parent / "metadata.yaml").is_file()
        text = path.read_text()
        assert images.resolve(settings, src.image).reference in text
        assert "${" in text  # clusterctl's variables kept for clusterctl
    written = yaml.safe_load(cfg.read_text())
    assert written == offline.config(settings, base)


@pytest.mark.parametrize("src", offline.SOURCES, ids=lambda s: offline.manifest_label(s.provider))
def test_clusterctl_generates_every_provider_with_no_network(
    rendered: tuple[config.Settings, Path], clusterctl_bin: Path, src: offline.Source
) -> None:
    settings, cfg = rendered
    text = _generate(clusterctl_bin, cfg, src.provider, offline.version_of(settings, src))
    deployments = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "Deployment"]
    assert len(deployments) == 1
    (manager,) = [
        c for c in deployments[0]["spec"]["template"]["spec"]["containers"] if c["name"] == "manager"
    ]
    assert manager["image"] == images.resolve(settings, src.image).reference
    assert manager["imagePullPolicy"] == "IfNotPresent"
    assert "${" not in text  # every variable had a default


def test_a_version_not_in_the_repository_is_refused_with_no_network(
    rendered: tuple[config.Settings, Path], clusterctl_bin: Path
) -> None:
    _, cfg = rendered
    out = _no_network(
        [str(clusterctl_bin), "generate", "provider", "--core", "cluster-api:v1.13.5", "--config", str(cfg)]
    )
    assert out.returncode != 0 and "cluster-api/v1.13.5/metadata.yaml" in out.stderr


def test_clusterctl_lists_exactly_the_images_lab_builds_and_cert_managers(
    rendered: tuple[config.Settings, Path], clusterctl_bin: Path, own_apiserver: RunningApiserver
) -> None:
    """`clusterctl init list-images` reads the whole offline repository (cert-manager.yaml too, while
    the cluster has no cert-manager namespace: this test runs before the dry-run creates it)."""
    settings, cfg = rendered
    argv = [str(clusterctl_bin), "init", "list-images", "--config", str(cfg)]
    argv += ["--kubeconfig", str(own_apiserver.kubeconfig_path)]
    for p in clusterctl.PROVIDERS:
        argv += [p.flag, f"{p.name}:{getattr(settings.versions, p.version_key)}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=clusterctl.init_env())
    assert out.returncode == 0, out.stderr
    version = settings.versions.cert_manager
    want = {images.resolve(settings, s.image).reference for s in offline.SOURCES}
    want |= {f"quay.io/jetstack/cert-manager-{n}:{version}" for n in ("controller", "cainjector", "webhook")}
    assert set(out.stdout.split()) == want


def _kubectl(api: RunningApiserver, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(api.kubeconfig_path), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _dry_run(api: RunningApiserver, text: str, what: str) -> int:
    """CRDs and namespaces created for real (and waited for), then every other object server-side
    dry-run applied; the number of objects dry-run."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    first = [d for d in docs if d["kind"] in FIRST]
    rest = [d for d in docs if d["kind"] not in FIRST]
    if first:
        out = _kubectl(api, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(first))
        assert out.returncode == 0, f"{what}: {out.stderr}"
        crds = [f"crd/{d['metadata']['name']}" for d in first if d["kind"] == "CustomResourceDefinition"]
        if crds:
            out = _kubectl(api, "wait", "--for=condition=Established", "--timeout=120s", *crds, stdin="")
            assert out.returncode == 0, f"{what}: {out.stderr}"
    out = _kubectl(
        api, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(rest)
    )
    assert out.returncode == 0, f"{what}: {out.stderr}"
    assert out.stdout.count("serverside-applied (server dry run)") == len(rest), out.stdout
    return len(rest)


def test_every_component_passes_a_server_side_dry_run(
    rendered: tuple[config.Settings, Path], clusterctl_bin: Path, own_apiserver: RunningApiserver
) -> None:
    settings, cfg = rendered
    apiserver = own_apiserver
    # cert-manager first: the providers' Certificates and Issuers are its CRDs' objects
    cm = offline.cert_manager_path(offline.repository_dir(settings), settings.versions.cert_manager)
    counts = {"cert-manager": _dry_run(apiserver, cm.read_text(), "cert-manager")}
    for src in offline.SOURCES:
        text = _generate(clusterctl_bin, cfg, src.provider, offline.version_of(settings, src))
        counts[offline.manifest_label(src.provider)] = _dry_run(apiserver, text, src.provider.name)
    print(counts)
    assert all(n > 0 for n in counts.values())


def test_cert_manager_yaml_is_the_releases_shape(rendered: tuple[config.Settings, Path]) -> None:
    settings, _ = rendered
    version = settings.versions.cert_manager
    path = offline.cert_manager_path(offline.repository_dir(settings), version)
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Namespace" and docs[0]["metadata"]["name"] == "cert-manager"
    n_crds = kinds.count("CustomResourceDefinition")
    assert n_crds == 6 and set(kinds[1 : 1 + n_crds]) == {"CustomResourceDefinition"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"cert-manager", "cert-manager-cainjector", "cert-manager-webhook"}
    got = {c["image"] for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]}
    assert got == {
        f"quay.io/jetstack/cert-manager-{n}:{version}" for n in ("controller", "cainjector", "webhook")
    }
    assert {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} <= set(kinds)
    assert not any(d["kind"] == "Job" for d in docs)  # startupapicheck disabled, as in the release


RENDER = """
import sys
from pathlib import Path
from lab import config
from lab.kindmgmt import offline
s = config.Settings(home=Path(sys.argv[1]), bin_cache=Path(sys.argv[2]))
print(offline.render(s, "kubectl").config)
"""


def test_rendering_itself_needs_no_network(
    rendered: tuple[config.Settings, Path], shared: config.Settings, tmp_path: Path
) -> None:
    """The whole render (module cache look-ups, kustomize, helm) in a network namespace with no network."""
    home = tmp_path / "home"
    out = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", RENDER, str(home), str(shared.bin_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert out.returncode == 0, out.stderr
    settings, _ = rendered
    fresh = config.Settings(home=home)
    for src in offline.SOURCES:
        version = offline.version_of(settings, src)
        a = offline.components_path(offline.repository_dir(settings), src, version).read_text()
        b = offline.components_path(offline.repository_dir(fresh), src, version).read_text()
        assert a == b, f"{src.provider.name}: rendering is not deterministic"
    cm = offline.cert_manager_path(offline.repository_dir(fresh), settings.versions.cert_manager)
    assert (
        cm.read_text()
        == offline.cert_manager_path(
            offline.repository_dir(settings), settings.versions.cert_manager
        ).read_text()
    )


def test_a_module_missing_offline_is_one_line_before_anything_is_rendered(
    tmp_path: Path, shared: config.Settings
) -> None:
    settings = config.Settings(
        home=tmp_path / "home",
        bin_cache=shared.bin_dir,
        versions=config.Versions(ipam="v1.13.99"),
    )
    with pytest.raises(LabError) as e:
        offline.render(settings, "kubectl")
    msg = str(e.value)
    assert "\n" not in msg
    assert "github.com/metal3-io/ip-address-manager@v1.13.99 is not in the Go module cache" in msg
    assert "lab's table pins v1.13.2" in msg and "go mod download" in msg
    assert not offline.repository_dir(settings).exists()


BMO = """
import sys
from pathlib import Path
from lab import config
from lab.kindmgmt import bmo, offline
s = config.Settings(home=Path(sys.argv[1]))
objs = bmo.build("kubectl", bmo.render_dir(s, offline.bmo_module(s)))
print(bmo.manager(objs)["spec"]["template"]["spec"]["containers"][0]["image"])
"""


def test_bmo_overlay_builds_from_its_module_with_no_network(tmp_path: Path, shared: config.Settings) -> None:
    """Offline, `lab up --mode kind` builds BMO's test-mode overlay over BMO's module, not GitHub."""
    out = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", BMO, str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == images.resolve(shared, "bmo").reference
