"""lab.stack's pure parts: supervisord files, ports, manager argv, webhook and CRD rewriting; and the
port-in-use error of `lab up`, which must come before anything starts."""

from __future__ import annotations

import base64
import configparser
import socket
import tempfile
from pathlib import Path

import pytest
from support.ports import free_block

from lab import config, tuning
from lab.errors import LabError
from lab.runtime import supervise
from lab.stack import managers, mgmt, ports, up, webhooks


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    return config.Settings(home=tmp_path / "home")


def test_program_file_round_trips_through_configparser_with_percent_and_spaces(
    settings: config.Settings,
) -> None:
    p = supervise.Program("x", ["/bin/echo", "50%", "two words"], env={"A": "1%", "B": "b c"})
    text = supervise.render_program(settings, p)
    cp = configparser.ConfigParser()  # supervisord's reader interpolates %(...)s like this
    cp.read_string(text)
    sec = cp["program:x"]
    assert sec["command"] == "/bin/echo 50% 'two words'"
    assert sec["environment"] == 'A="1%",B="b c"'
    assert sec["autorestart"] == "true"
    assert int(sec["startretries"]) >= 1000
    assert sec["stdout_logfile"] == str(settings.log_dir / "x.log")


def test_supervisord_conf_socket_is_private_and_includes_program_dir(settings: config.Settings) -> None:
    cp = configparser.ConfigParser()
    cp.read_string(supervise.render_supervisord_conf(settings, 4096))
    assert cp["unix_http_server"]["chmod"] == "0700"
    assert cp["include"]["files"] == f"{supervise.programs_dir(settings)}/*.conf"
    assert cp["supervisord"]["minfds"] == "4096"


def test_every_stack_port_is_distinct_and_inside_its_block(settings: config.Settings) -> None:
    owners = up.port_owners(settings)
    named = {settings.ports.mgmt_etcd, settings.ports.mgmt_etcd_peer, settings.ports.mgmt_apiserver}
    block = set(range(settings.ports.stack_base, settings.ports.stack_base + ports.BLOCK))
    assert named <= set(owners)
    for port in set(owners) - named - {settings.ports.tenant_etcd, settings.ports.tenant_etcd_peer}:
        assert port in block
    all_ports = [p for m in managers.NAMES for p in vars(ports.manager(settings, m)).values()]
    all_ports += [ports.kcm(settings), ports.mgmt_etcd_metrics(settings), ports.tenant_etcd_metrics(settings)]
    assert len(all_ports) == len(set(all_ports))


def test_capi_style_manager_binds_loopback_and_gets_tuning_flags(settings: config.Settings) -> None:
    m = managers.BY_NAME["capi-manager"]
    flags = tuning.flags(settings, "capi-manager", "seed")
    argv = managers.argv(settings, m, flags)
    pp = ports.manager(settings, "capi-manager")
    assert f"--health-addr=127.0.0.1:{pp.health}" in argv
    assert f"--diagnostics-address=127.0.0.1:{pp.metrics}" in argv
    assert f"--webhook-port={pp.webhook}" in argv
    assert "--leader-elect=false" in argv
    assert argv[-len(flags) :] == flags


def test_bmo_runs_in_test_mode_with_its_certs_where_controller_runtime_looks(
    settings: config.Settings,
) -> None:
    m = managers.BY_NAME["bmo-manager"]
    argv = managers.argv(settings, m, [])
    env = managers.env(settings, m, {})
    assert "-test-mode" in argv
    assert not any(a.startswith("--webhook-cert-dir") for a in argv)
    # controller-runtime: filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
    assert managers.cert_dir(settings, m) == Path(env["TMPDIR"]) / "k8s-webhook-server" / "serving-certs"
    assert env["KUBECONFIG"] == str(managers.kubeconfig(settings, m))


def test_manager_identity_is_a_service_account_not_system_masters() -> None:
    m = managers.BY_NAME["capm3-manager"]
    assert m.user == "lab:capm3-manager"
    assert m.groups == ["system:serviceaccounts", "system:serviceaccounts:capm3-system"]
    binding = next(o for o in managers.rbac_objects() if o["metadata"]["name"] == "lab:capm3-manager")
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": m.user}]


def test_webhook_configuration_service_becomes_loopback_url() -> None:
    doc = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "validating-webhook-configuration"},
        "webhooks": [
            {
                "name": "validation.cluster.cluster.x-k8s.io",
                "clientConfig": {
                    "service": {"name": "webhook-service", "namespace": "system", "path": "/validate-x"}
                },
            }
        ],
    }
    out = webhooks.localize_webhook_configuration(doc, "capi-manager", 17410, b"CA")
    assert out["metadata"]["name"] == "capi-manager-validating-webhook-configuration"
    cc = out["webhooks"][0]["clientConfig"]
    assert cc == {"url": "https://127.0.0.1:17410/validate-x", "caBundle": base64.b64encode(b"CA").decode()}
    assert doc["webhooks"][0]["clientConfig"]["service"]["path"] == "/validate-x"  # input untouched


def test_upstream_conversion_patches_decide_which_crds_convert(settings: config.Settings) -> None:
    crds = {c["metadata"]["name"]: c for c in webhooks.all_crds(settings, b"CA")}
    capi_port = ports.manager(settings, "capi-manager").webhook
    conv = crds["clusters.cluster.x-k8s.io"]["spec"]["conversion"]
    assert conv["webhook"]["clientConfig"]["url"] == f"https://127.0.0.1:{capi_port}/convert"
    kcp = crds["kubeadmcontrolplanes.controlplane.cluster.x-k8s.io"]["spec"]["conversion"]
    assert kcp["webhook"]["clientConfig"]["url"].endswith(
        f":{ports.manager(settings, 'kcp-manager').webhook}/convert"
    )
    # BMO ships its conversion patches commented out: its CRDs keep the default (None) strategy.
    bmh = crds["baremetalhosts.metal3.io"]["spec"].get("conversion", {"strategy": "None"})
    assert bmh["strategy"] == "None"


def test_webhook_configurations_are_unique_per_manager(settings: config.Settings) -> None:
    names = [w["metadata"]["name"] for w in webhooks.all_webhooks(settings, b"CA")]
    assert len(names) == len(set(names))
    assert "bmo-manager-validating-webhook-configuration" in names
    for w in webhooks.all_webhooks(settings, b"CA"):
        for hook in w["webhooks"]:
            assert "service" not in hook["clientConfig"]


def test_apiserver_argv_is_loopback_tls_rbac(settings: config.Settings) -> None:
    argv = mgmt.apiserver_program(settings).argv
    assert "--bind-address=127.0.0.1" in argv
    assert f"--secure-port={settings.ports.mgmt_apiserver}" in argv
    assert "--authorization-mode=RBAC" in argv
    assert f"--etcd-servers=https://127.0.0.1:{settings.ports.mgmt_etcd}" in argv
    admission = next(a for a in argv if a.startswith("--enable-admission-plugins="))
    assert "MutatingAdmissionWebhook" in admission and "ValidatingAdmissionWebhook" in admission


def test_mgmt_pki_is_private_and_stable(settings: config.Settings) -> None:
    mgmt.ensure_pki(settings)
    kubeconfig = mgmt.admin_kubeconfig_path(settings)
    first = kubeconfig.read_bytes()
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    assert (mgmt.pki_dir(settings) / "apiserver.key").stat().st_mode & 0o777 == 0o600
    mgmt.ensure_pki(settings)
    assert kubeconfig.read_bytes() == first  # nothing re-issued on a second run


def test_up_refuses_a_port_held_by_another_process_before_starting_anything(
    run_lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {
            "LAB_PORTS__MGMT_APISERVER": str(port),
            "LAB_PORTS__STACK_BASE": str(free_block(ports.BLOCK)),
        }
        out = run_lab("up", env=env)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: port {port} (kube-apiserver) is in use by pid "), out.stderr
    assert not (Path(lab_env["LAB_HOME"]) / "run").exists()


def test_purge_keeps_binaries_sources_build_logs_and_records(settings: config.Settings) -> None:
    keep = [
        settings.bin_dir / "x",
        settings.src_dir / "y",
        settings.log_dir / "build" / "z.log",
        settings.db_path,
    ]
    gone = [settings.log_dir / "kube-apiserver.log", settings.pki_dir / "mgmt" / "ca" / "ca.key"]
    gone += [settings.run_dir / "supervisor" / "supervisord.conf", mgmt.admin_kubeconfig_path(settings)]
    gone += [settings.home / "etcd" / "mgmt" / "member", settings.clusters_dir / "test-1" / "pki" / "ca.key"]
    for f in keep + gone:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    assert up.down(settings, purge=True) is False
    assert all(f.exists() for f in keep)
    assert not any(f.exists() for f in gone)


def test_node_simulator_is_a_stack_program_started_after_the_managers(settings: config.Settings) -> None:
    from lab import nodesim
    from lab.stack import health, status

    [sim] = up.simulator_programs(settings)
    assert sim.name == nodesim.PROGRAM_NAME
    assert sim.argv[-2:] == ["-m", "lab.clusters.simulate"] and sim.env["LAB_HOME"] == str(settings.home)
    # listed by `lab status` after the managers; no probe, so status says "-" rather than "no"
    assert status.ORDER.index(sim.name) > max(status.ORDER.index(n) for n in managers.NAMES)
    assert sim.name not in health.probes(settings)
    # when supervisord itself starts everything, the simulator comes after the managers too
    assert sim.priority > max(p.priority for p in up.manager_programs(settings, "default"))


def test_a_manager_with_patches_runs_its_patched_build(tmp_path: Path) -> None:
    """The program's argv is what supervisord compares: a patched binary is another path, so `lab up`
    and `lab tune` restart the manager when its patches change, as for a version change."""
    from lab import build

    (tmp_path / "p" / "kcp-manager").mkdir(parents=True)
    (tmp_path / "p" / "kcp-manager" / "a.patch").write_text("a\n")
    s = config.Settings(home=tmp_path / "home", patches=tmp_path / "p")
    kcp = managers.argv(s, managers.BY_NAME["kcp-manager"], [])[0]
    assert kcp == str(build.binary_path(s, "kcp-manager")) and "-patched-" in kcp
    capi = managers.argv(s, managers.BY_NAME["capi-manager"], [])[0]
    assert capi == str(s.bin_dir / "capi" / s.versions.capi / "capi-manager")
    upstream = config.Settings(home=tmp_path / "home", patches=tmp_path / "empty")
    assert managers.argv(upstream, managers.BY_NAME["kcp-manager"], [])[0] != kcp


def test_a_home_whose_socket_path_leaves_no_room_for_supervisords_pid_suffix_is_refused() -> None:
    """supervisord binds "<socket>.<pid>" first: a 100-byte socket path fits sun_path but not that,
    and supervisord then failed with only "For help, use ... -h" (seen under pytest-xdist). The home
    is under a short tmp dir: pytest's own tmp_path can be longer than 100 bytes with xdist."""
    with tempfile.TemporaryDirectory(prefix="ld") as tmp:
        name_len = 100 - len(f"{tmp}/") - len("/run/supervisor/supervisor.sock")
        home = Path(tmp) / ("h" * name_len)
        s = config.Settings(home=home)
        assert len(str(supervise.socket_path(s))) == 100
        with pytest.raises(LabError, match=r"too deep: the supervisor socket path .* is over 99 bytes"):
            supervise.ensure_running(s)
        assert not home.exists()  # refused before anything was made
