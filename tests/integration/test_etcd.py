"""The multi-tenant etcd against a real etcd v3.6 with TLS client-cert auth and RBAC on (fixture
tenant_etcd). Each test uses its own tenant names, so the order of tests does not matter.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import certs
from support.etcd import RunningEtcd, free_port

from lab import etcd, pki, pki_store
from lab.errors import LabError
from lab.etcd import EtcdClient, EtcdError, tenants
from lab.etcd.client import PERMISSION_DENIED, prefix_end


def tenant_cert(running: RunningEtcd, name: str) -> pki.KeyPair:
    return pki.issue_client_cert(running.certs.ca, name)


def as_tenant(running: RunningEtcd, kp: pki.KeyPair) -> EtcdClient:
    return etcd.connect(running.settings, running.certs.ca.cert_pem, kp)


@pytest.fixture
def root(tenant_etcd: RunningEtcd) -> Iterator[EtcdClient]:
    with tenant_etcd.root() as client:
        yield client


def denied(fn: object, *args: object) -> bool:
    try:
        fn(*args)  # type: ignore[operator]
    except EtcdError as e:
        return e.detail == PERMISSION_DENIED
    return False


def test_bootstrap_is_idempotent_and_enables_auth(root: EtcdClient) -> None:
    assert root.auth_enabled()
    assert etcd.bootstrap(root) is False  # the fixture already did it
    assert root.user_roles("root") == ["root"]


def test_tenant_reads_and_writes_only_its_prefix(tenant_etcd: RunningEtcd, root: EtcdClient) -> None:
    for name in ("iso-a", "iso-b"):
        etcd.create(root, name)
    root.put(b"/iso-b/secret", b"b's data")
    root.put(b"/toplevel", b"root's data")
    with as_tenant(tenant_etcd, tenant_cert(tenant_etcd, "iso-a")) as a:
        a.put(b"/iso-a/registry/pods/x", b"mine")
        assert a.get(b"/iso-a/registry/pods/x") == b"mine"
        assert a.count(b"/iso-a/", prefix_end(b"/iso-a/")) == 1
        assert a.delete_range(b"/iso-a/", prefix_end(b"/iso-a/")) == 1
        # another tenant: no get, no list, no write, no delete
        assert denied(a.get, b"/iso-b/secret")
        assert denied(a.count, b"/iso-b/", prefix_end(b"/iso-b/"))
        assert denied(a.put, b"/iso-b/secret", b"overwritten")
        assert denied(a.delete_range, b"/iso-b/", prefix_end(b"/iso-b/"))
        # the keyspace root: no get, no list of everything, no write
        assert denied(a.get, b"/toplevel")
        assert denied(a.count, b"/", b"0")
        assert denied(a.count, b"\x00", b"\x00")  # the whole keyspace
        assert denied(a.put, b"/iso-a", b"no trailing slash")  # just outside the prefix
        assert denied(a.put, b"/iso-a0/x", b"the next prefix")
        assert denied(a.get, b"compact_rev_key")  # kube-apiserver's compactor key: root's business
    assert root.get(b"/iso-b/secret") == b"b's data"


def test_etcdctl_sees_the_same_isolation(tenant_etcd: RunningEtcd, root: EtcdClient, tmp_path: Path) -> None:
    """etcd's own client, with the tenant's certificate files, as a kube-apiserver would use them."""
    etcd.create(root, "ctl-a")
    etcd.create(root, "ctl-b")
    pki_store.write_keypair(tmp_path, "ctl-a", tenant_cert(tenant_etcd, "ctl-a"))
    cert, key = tmp_path / "ctl-a.crt", tmp_path / "ctl-a.key"
    assert oct((tmp_path / "ctl-a.key").stat().st_mode & 0o777) == "0o600"

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        argv = tenant_etcd.etcdctl_argv(cert, key, *args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    assert ctl("put", "/ctl-a/k", "v").returncode == 0
    got = ctl("get", "/ctl-a/", "--prefix", "--print-value-only")
    assert got.returncode == 0 and got.stdout.strip() == "v"
    for args in (("get", "/ctl-b/", "--prefix"), ("put", "/ctl-b/k", "v"), ("get", "", "--from-key")):
        r = ctl(*args)
        assert r.returncode != 0 and "permission denied" in r.stderr, (args, r.stderr)


def test_delete_test_1_leaves_test_10_and_test_100(root: EtcdClient) -> None:
    names = ["test-1", "test-10", "test-100", "test-11"]
    for name in names:
        etcd.create(root, name)
        for i in range(5):
            root.put(f"/{name}/registry/configmaps/default/cm-{i}".encode(), name.encode())
    before = {n: dict(root.scan(etcd.key_prefix(n), prefix_end(etcd.key_prefix(n)))) for n in names}

    assert etcd.delete(root, "test-1") == 5

    assert root.count(b"/test-1/", b"/test-10") == 0
    for name in names[1:]:
        assert dict(root.scan(etcd.key_prefix(name), prefix_end(etcd.key_prefix(name)))) == before[name]
        assert tenants.exists(root, name)
    for name in names[1:]:
        etcd.delete(root, name)


def test_teardown_leaves_no_user_role_or_key(tenant_etcd: RunningEtcd, root: EtcdClient) -> None:
    etcd.create(root, "gone-1")
    with as_tenant(tenant_etcd, tenant_cert(tenant_etcd, "gone-1")) as t:
        t.put(b"/gone-1/a", b"1")
        t.put(b"/gone-1/b/c", b"2")

    assert etcd.delete(root, "gone-1") == 2

    assert "gone-1" not in root.users()
    assert "gone-1" not in root.roles()
    assert root.count(b"/gone-1/", prefix_end(b"/gone-1/")) == 0
    assert not tenants.exists(root, "gone-1")
    assert etcd.delete(root, "gone-1") == 0  # deleting a missing tenant is not an error
    # and its certificate opens nothing any more
    with as_tenant(tenant_etcd, tenant_cert(tenant_etcd, "gone-1")) as t:
        assert denied(t.get, b"/gone-1/a")


def test_create_is_idempotent_and_completes_a_half_created_tenant(root: EtcdClient) -> None:
    root.user_add("half-1")  # as if a crash hit right after the first step
    assert next(t for t in etcd.list_tenants(root) if t.name == "half-1").complete is False
    etcd.create(root, "half-1")
    etcd.create(root, "half-1")
    [t] = [t for t in etcd.list_tenants(root) if t.name == "half-1"]
    assert t.complete and t.prefix == "/half-1/"
    assert root.user_roles("half-1") == ["half-1"]
    perms = root.role_permissions("half-1") or []
    assert sorted((p.kind, p.key, p.range_end) for p in perms) == sorted(tenants.tenant_permissions("half-1"))
    etcd.delete(root, "half-1")


def test_list_tenants_counts_keys_and_bytes(root: EtcdClient) -> None:
    etcd.create(root, "use-1")
    etcd.create(root, "use-2")
    data = {b"/use-1/a": b"x" * 100, b"/use-1/b": b"", b"/use-1/c/d": b"yz"}
    for k, v in data.items():
        root.put(k, v)
    root.put(b"/use-10/not-mine", b"zzz")  # a neighbour's prefix must not be counted
    by_name = {t.name: t for t in etcd.list_tenants(root)}
    assert "root" not in by_name
    assert (by_name["use-1"].keys, by_name["use-1"].bytes) == (
        3,
        sum(len(k) + len(v) for k, v in data.items()),
    )
    assert (by_name["use-2"].keys, by_name["use-2"].bytes) == (0, 0)
    root.delete_range(b"/use-10/", prefix_end(b"/use-10/"))
    etcd.delete(root, "use-1")
    etcd.delete(root, "use-2")


def test_root_cannot_be_a_tenant(root: EtcdClient) -> None:
    with pytest.raises(LabError, match="administrator"):
        etcd.create(root, "root")


# --- refused certificates ------------------------------------------------------------------------


def test_expired_certificate_is_refused_and_named(
    tenant_etcd: RunningEtcd, root: EtcdClient, tmp_path: Path
) -> None:
    etcd.create(root, "exp-7")
    now = dt.datetime.now(dt.UTC)
    expired = certs.client_cert(
        tenant_etcd.certs.ca, "exp-7", now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    )
    with as_tenant(tenant_etcd, expired) as t, pytest.raises(LabError) as err:
        etcd.check_access(t, "exp-7", expired.cert_pem, tenant_etcd.certs.ca.cert_pem)
    assert str(err.value).startswith("etcd refused tenant exp-7's certificate: certificate has expired")
    # the refusal is etcd's, not a local check: etcd's own client is turned away too
    pki_store.write_keypair(tmp_path, "exp", expired)
    r = subprocess.run(
        tenant_etcd.etcdctl_argv(tmp_path / "exp.crt", tmp_path / "exp.key", "get", "/exp-7/x"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    etcd.delete(root, "exp-7")


def test_certificate_of_a_foreign_ca_is_refused(tenant_etcd: RunningEtcd, root: EtcdClient) -> None:
    etcd.create(root, "foreign-1")
    other_ca = pki.new_ca("not-the-etcd-ca")
    wrong = pki.issue_client_cert(other_ca, "foreign-1")
    with as_tenant(tenant_etcd, wrong) as t, pytest.raises(LabError) as err:
        etcd.check_access(t, "foreign-1", wrong.cert_pem, tenant_etcd.certs.ca.cert_pem)
    assert "tenant foreign-1" in str(err.value)
    assert "not signed by the etcd CA" in str(err.value)
    etcd.delete(root, "foreign-1")


def test_another_tenants_certificate_gets_permission_denied(
    tenant_etcd: RunningEtcd, root: EtcdClient
) -> None:
    etcd.create(root, "own-1")
    etcd.create(root, "own-2")
    theirs = tenant_cert(tenant_etcd, "own-2")
    with as_tenant(tenant_etcd, theirs) as t, pytest.raises(LabError) as err:
        etcd.check_access(t, "own-1", theirs.cert_pem, tenant_etcd.certs.ca.cert_pem)
    assert str(err.value) == (
        "etcd refused tenant own-1: permission denied on /own-1/ "
        "(certificate CN is 'own-2', not the tenant's user 'own-1')"
    )
    for n in ("own-1", "own-2"):
        etcd.delete(root, n)


def test_a_good_certificate_passes_the_check(tenant_etcd: RunningEtcd, root: EtcdClient) -> None:
    etcd.create(root, "ok-1")
    mine = tenant_cert(tenant_etcd, "ok-1")
    with as_tenant(tenant_etcd, mine) as t:
        etcd.check_access(t, "ok-1", mine.cert_pem, tenant_etcd.certs.ca.cert_pem)
    etcd.delete(root, "ok-1")


# --- the CLI ---------------------------------------------------------------------------------------


def _lab(home: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env.update(LAB_HOME=str(home), LAB_PORTS__TENANT_ETCD=str(port), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env, timeout=120, cwd=home
    )


def test_cli_lists_tenants_with_usage(tenant_etcd: RunningEtcd, root: EtcdClient) -> None:
    etcd.create(root, "cli-3")
    root.put(b"/cli-3/k", b"12345")
    port = tenant_etcd.settings.ports.tenant_etcd
    r = _lab(tenant_etcd.settings.home, port, "etcd", "tenants", "--output", "json")
    assert r.returncode == 0, r.stderr
    [row] = [t for t in json.loads(r.stdout) if t["name"] == "cli-3"]
    assert row == {
        "name": "cli-3",
        "prefix": "/cli-3/",
        "keys": 1,
        "bytes": len(b"/cli-3/k") + 5,
        "complete": True,
    }
    table = _lab(tenant_etcd.settings.home, port, "etcd", "tenants")
    assert table.returncode == 0 and "cli-3" in table.stdout and "/cli-3/" in table.stdout
    etcd.delete(root, "cli-3")


def test_cli_says_so_when_etcd_is_not_running(tenant_etcd: RunningEtcd) -> None:
    r = _lab(tenant_etcd.settings.home, free_port(), "etcd", "tenants")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: cannot reach etcd at https://127.0.0.1:") and "lab up" in lines[0]


def test_many_tenants_at_once_while_a_tenant_writes(tenant_etcd: RunningEtcd, root: EtcdClient) -> None:
    """Bulk create/delete, 8 in flight, while another tenant keeps writing: auth changes race its
    requests ("revision of auth store is old") and the client resends them."""
    import threading

    names = [f"bulk-{i}" for i in range(1, 41)]
    etcd.create(root, "busy-1")
    stop, writes, errors = threading.Event(), [0], []

    def writer() -> None:
        with as_tenant(tenant_etcd, tenant_cert(tenant_etcd, "busy-1")) as t:
            while not stop.is_set():
                try:
                    t.put(f"/busy-1/k{writes[0]}".encode(), b"v")
                    writes[0] += 1
                except EtcdError as e:
                    errors.append(e)
                    return

    th = threading.Thread(target=writer)
    th.start()
    try:
        for n in names:
            root.put(f"/{n}/x".encode(), b"1")
        tenants.create_many(root, names, parallel=8)
        assert {t.name for t in etcd.list_tenants(root) if t.complete} >= set(names)
        assert tenants.delete_many(root, names, parallel=8) == len(names)
    finally:
        stop.set()
        th.join(timeout=30)
    assert errors == [] and writes[0] > 0
    assert not set(names) & set(root.users()) and not set(names) & set(root.roles())
    assert root.count(b"/bulk-", b"/bulk.") == 0
    assert root.count(b"/busy-1/", prefix_end(b"/busy-1/")) == writes[0]
    etcd.delete(root, "busy-1")


# --- a real kube-apiserver as a tenant --------------------------------------------------------------


def test_kube_apiserver_runs_as_a_tenant_with_lab_flags(
    tenant_etcd: RunningEtcd, root: EtcdClient, tmp_path: Path
) -> None:
    """kube-apiserver with apiserver_etcd_flags: ready, stores under /<tenant>/ only, and never hits a
    permission error but the admin-only Maintenance/Status."""
    from lab import build
    from lab.config import Settings, default_home

    apiserver = build.ensure(Settings(home=default_home()), ["kube-apiserver"], log=print)["kube-apiserver"]
    name = "kas-1"
    etcd.create(root, name)
    outside_before = _keys_outside_tenants(root)
    ca = pki.new_ca("kubernetes")
    d = tmp_path
    pki_store.write_keypair(d, "etcd-client", tenant_cert(tenant_etcd, name))
    pki_store.write_keypair(
        d, "apiserver", pki.issue_server_cert(ca, "kube-apiserver", *pki.apiserver_sans("127.0.0.1"))
    )
    pki_store.write_keypair(d, "ca", ca)
    sa = pki.new_sa_keypair()
    (d / "sa.pub").write_bytes(sa.cert_pem)
    (d / "sa.key").write_bytes(sa.key_pem)
    (d / "sa.key").chmod(0o600)
    port = free_port()
    flags = etcd.apiserver_etcd_flags(
        name, tenant_etcd.endpoint, etcd.server.etcd_ca_dir(tenant_etcd.settings) / "ca.crt",
        d / "etcd-client.crt", d / "etcd-client.key",
    )  # fmt: skip
    argv = [
        str(apiserver), *flags, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={port}", f"--tls-cert-file={d / 'apiserver.crt'}",
        f"--tls-private-key-file={d / 'apiserver.key'}", f"--client-ca-file={d / 'ca.crt'}",
        "--service-account-issuer=https://kubernetes.default.svc", f"--service-account-key-file={d / 'sa.pub'}",
        f"--service-account-signing-key-file={d / 'sa.key'}", f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
        "--authorization-mode=RBAC", "--endpoint-reconciler-type=none", "--profiling=false",
    ]  # fmt: skip
    admin = pki.issue_client_cert(ca, pki.ADMIN_CN, [pki.ADMIN_ORG])
    kubeconfig = d / "admin.kubeconfig"
    kubeconfig.write_bytes(pki.render_kubeconfig(name, f"https://127.0.0.1:{port}", ca.cert_pem, admin))
    kubeconfig.chmod(0o600)

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["kubectl", f"--kubeconfig={kubeconfig}", "--request-timeout=10s", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    log = d / "kube-apiserver.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while kubectl("get", "--raw", "/readyz").returncode != 0:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "kube-apiserver not ready in 180s\n" + log.read_text()[-3000:]
            time.sleep(1)
        made = kubectl("create", "configmap", "lab-probe", "-n", "default", "--from-literal=k=v")
        assert made.returncode == 0, made.stderr
        time.sleep(3)  # its periodic etcd calls (health, feature checks) get a few rounds
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # Maintenance/Status is admin-only in etcd 3.6: no tenant can have it, and kube-apiserver's
    # RequestWatchProgress check and db-size metric are refused (documented in lab.etcd.tenants).
    # Any other refusal means a missing grant.
    denied_lines = [ln for ln in log.read_text(errors="replace").splitlines() if "permission denied" in ln]
    assert [ln for ln in denied_lines if "Maintenance/Status" not in ln] == []
    keys = [k for k, _ in root.scan(b"/kas-1/", prefix_end(b"/kas-1/"))]
    assert b"/kas-1/configmaps/default/lab-probe" in keys
    assert _keys_outside_tenants(root) == outside_before  # nothing written outside its prefix
    etcd.delete(root, name)


def _keys_outside_tenants(root: EtcdClient) -> set[bytes]:
    tenant_prefixes = tuple(etcd.key_prefix(t.name) for t in etcd.list_tenants(root))
    return {k for k, _ in root.scan(b"\x00", b"\x00") if not k.startswith(tenant_prefixes)}


def test_access_check_when_etcd_is_down_blames_etcd_not_the_certificate(tenant_etcd: RunningEtcd) -> None:
    good = tenant_cert(tenant_etcd, "down-1")
    nowhere = f"https://127.0.0.1:{free_port()}"
    client = etcd.connect(tenant_etcd.settings, tenant_etcd.certs.ca.cert_pem, good, nowhere)
    with client as t, pytest.raises(LabError) as err:
        etcd.check_access(t, "down-1", good.cert_pem, tenant_etcd.certs.ca.cert_pem)
    assert str(err.value).startswith(f"tenant down-1: cannot reach etcd at {nowhere}")
    assert "certificate" not in str(err.value)


def test_remove_clears_whole_half_deleted_and_keys_only_tenants(
    tenant_etcd: RunningEtcd, root: EtcdClient
) -> None:
    """tenants.remove: a whole tenant, one whose user a crash already deleted (role left), and one
    with keys only; every user, role and key of the three goes, and a second call finds nothing."""
    for n in ("rm-1", "rm-2"):
        etcd.create(root, n)
    with as_tenant(tenant_etcd, tenant_cert(tenant_etcd, "rm-1")) as t:
        t.put(b"/rm-1/a", b"1")
    root.together([root.user_delete_call("rm-2")])
    root.put(b"/rm-3/b", b"2")
    assert tenants.remove(root, ["rm-1", "rm-2", "rm-3"]) == 2
    for n in ("rm-1", "rm-2", "rm-3"):
        assert not tenants.exists(root, n)
        assert root.count(f"/{n}/".encode(), prefix_end(f"/{n}/".encode())) == 0
    assert tenants.remove(root, ["rm-1", "rm-2", "rm-3"]) == 0


# --- health, as each tenant's kube-apiserver sees it -------------------------------------------------


def test_tenant_health_reads_each_tenant_with_its_clusters_own_pair(
    tenant_etcd: RunningEtcd, root: EtcdClient
) -> None:
    """What KCP's EtcdClusterHealthy is written from (lab.clusters.etcd_health): the pair in the
    cluster's PKI under the lab home, against the backing's etcd. A revoked tenant is named, a
    cluster without PKI here is left out, and the local backing says the same."""
    from lab.backing.local import LocalBacking

    settings, ca = tenant_etcd.settings, tenant_etcd.certs.ca
    names = ["hl-1", "hl-2"]
    for n in names:
        etcd.create(root, n)
        pki_store.cluster_pki(settings, n, "127.0.0.1", 6443, ca)
    try:
        tenants.revoke(root, "hl-2")  # the role goes: its apiserver would get permission denied
        got = tenants.health(settings, tenant_etcd.endpoint, ca.cert_pem, [*names, "hl-3"])
        assert set(got) == {"hl-1", "hl-2"}  # hl-3 has no PKI here: nothing to judge it by
        assert got["hl-1"] is None
        assert got["hl-2"] == "etcd refused tenant hl-2: permission denied on /hl-2/"
        assert LocalBacking(settings).tenant_health(names) == got
    finally:
        for n in names:
            etcd.delete(root, n)
            pki_store.remove_cluster_pki(settings, n)
