"""The offline clusterctl repository, for real: rendered from the Go module cache with the real
kubectl (kustomize) and helm (built from its module), read by the real clusterctl of the pinned CAPI
release in a network namespace with no network at all, and every provider's components (as
clusterctl generates them, variables substituted) and cert-manager.yaml accepted by a real
kube-apiserver in a server-side dry-run after their CRDs and namespaces were created.

Builds: clusterctl and helm into the shared build cache once (helm v4.2.2 cold: see the
measurement in lab.kindmgmt.offline), nothing when cached.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from support.apiserver import RunningApiserver, running_apiserver

from lab import build, config, images, pki, tuning
from lab.errors import LabError
from lab.kindmgmt import bmo, certs, clusterctl, offline
from lab.kube import Client

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


# --- lab in cert-manager's place (lab.kindmgmt.certs) ----------------------------------------------

#: where each manager's webhook Certificate lives: the five providers' namespaces and BMO's
MANAGER_NAMESPACES = {ns for ns, _ in tuning.DEPLOYMENTS.values()} | {"metal3-ipam-system"}
#: what of BMO's overlay is applied here (no Deployment: nothing runs pods on this apiserver)
BMO_KINDS = (
    "Namespace",
    "CustomResourceDefinition",
    "Issuer",
    "Certificate",
    "ValidatingWebhookConfiguration",
)


def _resource_versions(client: Client, refs: list[tuple[str, str, str, str | None]]) -> dict[str, str]:
    out = {}
    for api, kind, name, ns in refs:
        obj = client.get(api, kind, name, ns)
        assert obj is not None, f"{kind} {ns}/{name} is gone"
        out[f"{kind} {ns}/{name}"] = obj["metadata"]["resourceVersion"]
    return out


def test_clusterctl_init_skips_cert_manager_and_lab_issues_its_certificates(
    rendered: tuple[config.Settings, Path], clusterctl_bin: Path, own_apiserver: RunningApiserver
) -> None:
    """The real clusterctl init, offline repository, on a kube-apiserver that has cert-manager's CRDs
    and no cert-manager: clusterctl says it skips cert-manager and installs the five providers (a
    true inventory); lab then issues every Certificate of the providers and of BMO's overlay from its
    CA and injects the CA bundle wherever cainjector would; a second pass changes nothing."""
    settings, cfg = rendered
    cm_yaml = offline.cert_manager_path(offline.repository_dir(settings), settings.versions.cert_manager)
    with Client.from_kubeconfig(own_apiserver.kubeconfig) as client:
        assert len(certs.install_crds(client, cm_yaml, print)) == 6
        argv = clusterctl.init_argv(
            settings, str(clusterctl_bin), own_apiserver.kubeconfig_path, cfg, wait=False
        )
        started = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=clusterctl.init_env())
        print(f"clusterctl init in {time.monotonic() - started:.1f}s\n{out.stderr}{out.stdout}")
        assert out.returncode == 0, out.stderr
        assert "Skipping installing cert-manager as it is already installed" in out.stdout + out.stderr
        inventory = client.list("clusterctl.cluster.x-k8s.io/v1alpha3", "Provider")
        assert clusterctl.installed({"items": inventory}) == clusterctl.wanted(settings)
        assert client.get("apps/v1", "Deployment", "cert-manager", "cert-manager") is None
        assert not certs.cert_manager_runs(client)

        objects = bmo.build("kubectl", bmo.render_dir(settings, offline.bmo_module(settings)))
        client.apply([o for o in objects if o["kind"] in BMO_KINDS])

        started = time.monotonic()
        first = certs.ensure(settings, client, print)
        print(f"lab issued in {time.monotonic() - started:.1f}s")
        cert_objs = [
            c
            for c in client.list(certs.CERT_API, "Certificate")
            if c["metadata"]["namespace"] in MANAGER_NAMESPACES
        ]
        assert {c["metadata"]["namespace"] for c in cert_objs} == MANAGER_NAMESPACES
        secrets = {f"{c['metadata']['namespace']}/{c['spec']['secretName']}" for c in cert_objs}
        assert set(first.issued) == secrets and first.kept == [] and first.skipped == []

        ca_pem = (certs.pki_dir(settings) / "ca" / "ca.crt").read_bytes()
        for c in cert_objs:
            ns, name = c["metadata"]["namespace"], c["metadata"]["name"]
            secret = client.get("v1", "Secret", c["spec"]["secretName"], ns)
            assert secret is not None and secret["type"] == "kubernetes.io/tls"
            data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
            assert data["ca.crt"] == ca_pem
            kp = pki.KeyPair(data["tls.crt"], data["tls.key"])
            assert kp.matches() and pki.signed_by(kp, ca_pem)
            san = kp.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert set(san.get_values_for_type(x509.DNSName)) == set(c["spec"]["dnsNames"])
            key_file = certs.pki_dir(settings) / "certs" / ns / f"{name}.key"
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            status = client.get(certs.CERT_API, "Certificate", name, ns)["status"]  # type: ignore[index]
            assert [(x["type"], x["status"]) for x in status["conditions"]] == [("Ready", "True")]
        assert stat.S_IMODE((certs.pki_dir(settings) / "ca" / "ca.key").stat().st_mode) == 0o600

        # cainjector's part: every annotated webhook and conversion webhook carries the CA
        bundle = base64.b64encode(ca_pem).decode()
        refs: list[tuple[str, str, str, str | None]] = [
            ("v1", "Secret", s.split("/")[1], s.split("/")[0]) for s in sorted(secrets)
        ]
        hooks = 0
        for api, kind in (
            (certs.ADMISSION_API, "ValidatingWebhookConfiguration"),
            (certs.ADMISSION_API, "MutatingWebhookConfiguration"),
            (certs.CRD_API, "CustomResourceDefinition"),
        ):
            for obj in client.list(api, kind):
                if certs.inject_target(obj) is None:
                    continue
                if kind == "CustomResourceDefinition":
                    if obj["spec"].get("conversion", {}).get("strategy") != "Webhook":
                        continue
                    bundles = [obj["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"]]
                else:
                    bundles = [w["clientConfig"]["caBundle"] for w in obj["webhooks"]]
                assert bundles and set(bundles) == {bundle}, f"{kind} {obj['metadata']['name']}"
                hooks += len(bundles)
                refs.append((api, kind, obj["metadata"]["name"], None))
        assert "CustomResourceDefinition/clusters.cluster.x-k8s.io" in first.injected
        assert (
            "ValidatingWebhookConfiguration/baremetal-operator-validating-webhook-configuration"
            in first.injected
        )
        print(f"{len(first.injected)} objects injected, {hooks} caBundles")

        before = _resource_versions(client, refs)
        again = certs.ensure(settings, client, print)
        assert again.issued == [] and again.injected == [] and set(again.kept) == secrets
        assert _resource_versions(client, refs) == before

        # a Secret lost in the cluster comes back with the same pair (kept on the host)
        lost = sorted(secrets)[0]
        ns, name = lost.split("/")
        old = client.get("v1", "Secret", name, ns)
        assert client.delete("v1", "Secret", name, ns)
        assert certs.ensure(settings, client).issued == [lost]
        assert client.get("v1", "Secret", name, ns)["data"] == old["data"]  # type: ignore[index]
