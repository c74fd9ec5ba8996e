"""`lab up` / `lab down` / `lab tune`: converge the local management stack.

Order: build what is missing -> refuse ports held by strangers -> PKI -> supervisord -> etcd(s),
kube-apiserver, kube-controller-manager (wait healthy) -> namespaces, RBAC, CRDs, webhook
configurations (server-side apply, skipped when their digest is unchanged) -> managers (wait healthy)
-> the node simulator (it reads the management API and writes into workload apiservers; it has no
health endpoint, so RUNNING past supervisord's startsecs is what "up" means for it).
Every step is idempotent, so a second `lab up` on a healthy stack only reads: no build, no restart,
no apply.

`--shards K` (lab.shards) runs K KCP managers; K is stored beside the tuning profile in the stack's
state, so a plain `lab up` or `lab tune` keeps it. Another K is converged (shard programs added or
removed, kcp-manager restarted with its new filter) only while no workload cluster exists, and
refused with one line otherwise, before any manager changes: the clusters' objects carry the
labels of the shards they were given.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from lab import build, components, naming, shards, supervised, tuning
from lab.config import Settings
from lab.errors import LabError, UsageError
from lab.etcd import server as tenant_etcd
from lab.kube import Client, waits
from lab.runtime.ports import bindable, listener_pid
from lab.runtime.supervise import Program, Supervisor, ensure_running, remove_program_files
from lab.stack import health, managers, mgmt, ports, webhooks
from lab.supervised import down as down  # lab down: the same in both modes
from lab.supervised import state_path

Log = Callable[[str], None]

CORE_TIMEOUT = 180.0
MANAGER_TIMEOUT = 240.0
DIGEST_CONFIGMAP = "lab-stack"


def read_state(settings: Settings) -> dict[str, Any]:
    try:
        return dict(json.loads(state_path(settings).read_text()))
    except (OSError, ValueError):
        return {}


def write_state(settings: Settings, **changes: Any) -> None:
    state = read_state(settings) | changes
    state_path(settings).parent.mkdir(parents=True, exist_ok=True)
    state_path(settings).write_text(json.dumps(state, indent=2) + "\n")


def current_profile(settings: Settings) -> str:
    return str(read_state(settings).get("tuning", "default"))


def current_shards(settings: Settings) -> int:
    """The KCP shard count the last `lab up` stored (1 before any, or when the file is damaged)."""
    k = read_state(settings).get("shards", shards.DEFAULT)
    ok = isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= shards.MAX_SHARDS
    return k if ok else shards.DEFAULT


def core_programs(settings: Settings) -> list[Program]:
    argv = [
        *tenant_etcd.etcd_command(settings),
        f"--listen-metrics-urls=http://{ports.LOOPBACK}:{ports.tenant_etcd_metrics(settings)}",
    ]
    return [
        mgmt.etcd_program(settings),
        Program(name=components.TENANT_ETCD, argv=argv, priority=100),
        mgmt.apiserver_program(settings),
        mgmt.kcm_program(settings),
    ]


def manager_programs(settings: Settings, profile: str, k: int | None = None) -> list[Program]:
    """Every manager's program; KCP's once per shard (k: default the stored count)."""
    k = current_shards(settings) if k is None else k
    out = []
    for m in managers.MANAGERS:
        flags = tuning.flags(settings, m.name, profile) if m.name in tuning.COMPONENTS else []
        env = tuning.env(m.name, profile) if m.name in tuning.COMPONENTS else {}
        if m.name == shards.MANAGER:
            out += [managers.shard_program(settings, n, k, flags, env) for n in range(k)]
        else:
            out.append(managers.program(settings, m, flags, env))
    return out


def simulator_programs(settings: Settings) -> list[Program]:
    from lab import nodesim  # imports lab.kube and lab.pki: only when the stack starts

    return [nodesim.nodesim_program(settings)]


def build_targets(settings: Settings) -> list[str]:
    out = ["etcd", "kube-apiserver", "kube-controller-manager", *managers.NAMES]
    return out


# --- ports -----------------------------------------------------------------------------------


def port_owners(settings: Settings, k: int = shards.DEFAULT) -> dict[int, str]:
    """Every port the stack listens on -> the component that owns it, with k KCP shards."""
    p = settings.ports
    out = {
        p.mgmt_etcd: components.MGMT_ETCD,
        p.mgmt_etcd_peer: components.MGMT_ETCD,
        ports.mgmt_etcd_metrics(settings): components.MGMT_ETCD,
        p.mgmt_apiserver: components.KUBE_APISERVER,
        ports.kcm(settings): components.KUBE_CONTROLLER_MANAGER,
        p.tenant_etcd: components.TENANT_ETCD,
        p.tenant_etcd_peer: components.TENANT_ETCD,
        ports.tenant_etcd_metrics(settings): components.TENANT_ETCD,
    }
    for name in managers.NAMES:
        mp = ports.manager(settings, name)
        out |= {mp.webhook: name, mp.health: name, mp.metrics: name}
    for n in range(1, k):
        sp = ports.shard(settings, n)
        out |= dict.fromkeys((sp.webhook, sp.health, sp.metrics), shards.program(n))
    return out


def our_pids(sup: Supervisor | None) -> set[int]:
    if sup is None or not sup.alive():
        return set()
    pids: set[int] = set()
    for info in sup.processes():
        if info["pid"]:
            pids.add(int(info["pid"]))
            with contextlib.suppress(psutil.Error):
                pids |= {c.pid for c in psutil.Process(int(info["pid"])).children(recursive=True)}
    return pids


def check_ports(settings: Settings, sup: Supervisor | None, k: int = shards.DEFAULT) -> None:
    """One clear error, before anything starts, when a port of ours is held by someone else."""
    mine = our_pids(sup)
    for port, owner in sorted(port_owners(settings, k).items()):
        if bindable(port, ports.LOOPBACK, reuse=True):
            continue
        pid = listener_pid(port)
        if pid is not None and pid in mine:
            continue
        who = "another process"
        if pid is not None:
            try:
                who = f"pid {pid} ({psutil.Process(pid).name()})"
            except psutil.Error:
                who = f"pid {pid}"
        raise LabError(
            f"port {port} ({owner}) is in use by {who}; stop it or move the lab's ports (settings.ports)"
        )


# --- waiting ---------------------------------------------------------------------------------


def wait_healthy(settings: Settings, sup: Supervisor, names: list[str], timeout: float, log: Log) -> None:
    """lab.supervised's wait, with the stack's probes."""
    supervised.wait_healthy(settings, sup, names, timeout, log, health.probes(settings))


def bootstrap_tenant_etcd(settings: Settings, log: Log) -> None:
    """Root user and auth on in the multi-tenant etcd (lab.etcd's own, idempotent bootstrap)."""
    from lab.etcd import bootstrap, root_client

    with root_client(settings) as root:
        if bootstrap(root):
            log("tenant-etcd: root user created, auth enabled")


# --- CRDs, webhooks, RBAC ---------------------------------------------------------------------


def desired_objects(settings: Settings, p: mgmt.MgmtPKI) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(CRDs, everything else) the managers need before they start."""
    ca = p.webhook_ca.cert_pem
    return webhooks.all_crds(settings, ca), [*managers.rbac_objects(), *webhooks.all_webhooks(settings, ca)]


def applied_digest(client: Client) -> str | None:
    cm = client.get("v1", "ConfigMap", DIGEST_CONFIGMAP, "kube-system")
    return None if cm is None else (cm.get("data") or {}).get("digest")


def ensure_objects(settings: Settings, p: mgmt.MgmtPKI, log: Log) -> bool:
    """Apply CRDs, then RBAC and webhook configurations, unless the same set is already applied.
    The digest marker goes last, only once everything else is in."""
    crds, rest = desired_objects(settings, p)
    digest = webhooks.digest([*crds, *rest])
    with mgmt.client(settings) as client:
        if applied_digest(client) == digest:
            return False
        log(f"applying {len(crds)} CRDs and {len(rest)} namespaces, bindings and webhook configurations")
        client.apply(crds)
        waits.wait_established(client, [c["metadata"]["name"] for c in crds])
        client.apply(rest)
        marker = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": DIGEST_CONFIGMAP, "namespace": "kube-system"},
            "data": {"digest": digest},
        }
        client.apply([marker])
    return True


# --- shards ------------------------------------------------------------------------------------


def check_reshard(settings: Settings, old: int, new: int) -> None:
    """Another shard count only while no workload cluster exists (lab.shards says why); one line
    otherwise. Asks the management apiserver, which must answer."""
    if old == new:
        return
    try:
        with mgmt.client(settings, attempts=2, timeout=10.0, parallel=1) as client:
            found = client.list("v1", "Namespace", label_selector=naming.CLUSTER_LABEL)
    except LabError as e:
        raise LabError(f"cannot tell whether clusters exist before changing --shards: {e}") from None
    if found:
        first = found[0]["metadata"]["name"]
        raise LabError(
            f"{len(found)} cluster(s) ({first} first) exist with --shards {old}, labelled for those "
            f"shards: delete them first (lab delete-clusters --all) or keep --shards {old}"
        )


def drop_surplus_shards(sup: Supervisor, k: int) -> list[str]:
    """Remove the programs of shards >= k (a lower --shards); the names removed."""
    surplus = [n for n in shards.EXTRA_PROGRAMS[k - 1 :] if sup.process(n) is not None]
    if surplus:
        sup.remove(surplus)
    return surplus


# --- the verbs ---------------------------------------------------------------------------------


@dataclass
class UpResult:
    seconds: float
    built: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    applied: bool = False
    profile: str = "default"
    n_shards: int = shards.DEFAULT  # KCP managers (lab.shards)
    state = "healthy"  # every component answers its own health probe

    def done(self) -> list[str]:
        what = []
        if self.built:
            what.append(f"built {', '.join(self.built)}")
        if self.changed:
            what.append(f"started {', '.join(self.changed)}")
        if self.applied:
            what.append("applied CRDs and webhooks")
        return what


def check_profile(profile: str) -> str:
    if profile not in tuning.PROFILES:
        raise UsageError(f"unknown tuning profile {profile!r}; use one of {', '.join(tuning.PROFILES)}")
    return profile


def prepare(settings: Settings) -> mgmt.MgmtPKI:
    """Every certificate, key and kubeconfig (issued once, renewed when stale) and the data dirs."""
    p = mgmt.ensure_pki(settings)
    for m in managers.MANAGERS:
        managers.ensure_identity(settings, m, p)
    tenant_etcd.ensure_pki(settings)
    for d in (mgmt.etcd_data_dir(settings).parent, settings.run_dir / "kube-controller-manager"):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for m in managers.MANAGERS:
        managers.cert_dir(settings, m).mkdir(parents=True, exist_ok=True)
    return p


def converge(
    settings: Settings, sup: Supervisor, programs: list[Program], timeout: float, log: Log
) -> list[str]:
    """Programs written, started when dead, waited on until healthy; the names added, then changed."""
    changes = sup.converge(programs)
    wait_healthy(settings, sup, [p.name for p in programs], timeout, log)
    return [*changes["added"], *changes["changed"]]


def up(
    settings: Settings, profile: str | None = None, log: Log = lambda _m: None, k: int | None = None
) -> UpResult:
    """k: KCP shards (lab.shards); None keeps the stored count."""
    started = time.monotonic()
    profile = check_profile(profile or current_profile(settings))
    old_k = current_shards(settings)
    k = shards.check_count(old_k if k is None else k)
    existing = Supervisor(settings)
    fresh = not existing.alive()
    if not fresh:
        check_reshard(settings, old_k, k)
    check_ports(settings, None if fresh else existing, k)

    missing = [t for t in build_targets(settings) if not build.is_cached(settings, t)]
    build.ensure(settings, build_targets(settings), log)
    p = prepare(settings)

    if fresh:
        # supervisord starts every program file it finds; managers must wait for the apiserver.
        sim = [p.name for p in simulator_programs(settings)]
        remove_program_files(settings, [*managers.NAMES, *shards.EXTRA_PROGRAMS, *sim])
    sup = ensure_running(settings)
    core = core_programs(settings)
    changed = converge(settings, sup, core, CORE_TIMEOUT, log)
    if fresh and k != old_k:  # only now can the apiserver say whether clusters exist
        try:
            check_reshard(settings, old_k, k)
        except LabError:
            down(settings)  # as it was: stopped
            raise
    bootstrap_tenant_etcd(settings, log)
    applied = ensure_objects(settings, p, log)
    if dropped := drop_surplus_shards(sup, k):
        log(f"removed {', '.join(dropped)}")
    for n in range(1, k):  # the working directories of KCP's other shards
        (settings.run_dir / shards.program(n)).mkdir(parents=True, exist_ok=True)
    changed += converge(settings, sup, manager_programs(settings, profile, k), MANAGER_TIMEOUT, log)
    changed += converge(settings, sup, simulator_programs(settings), MANAGER_TIMEOUT, log)
    write_state(settings, tuning=profile, shards=k)
    if fresh:
        changed = [*dict.fromkeys([*(c.name for c in core), *changed])]
    return UpResult(time.monotonic() - started, missing, changed, applied, profile, k)


def tune(settings: Settings, profile: str, log: Log = lambda _m: None) -> list[str]:
    """Store the profile; when the stack runs, restart exactly the managers whose flags (or binary:
    patches/ changed) changed."""
    write_state(settings, tuning=check_profile(profile))
    sup = Supervisor(settings)
    if not sup.alive():
        return []
    # The patches may have changed since `lab up`: a manager restarted here runs its current build.
    build.ensure(settings, list(managers.NAMES), log)
    result = sup.apply(manager_programs(settings, profile))
    restarted = result["changed"] + result["added"]
    if restarted:
        wait_healthy(settings, sup, restarted, MANAGER_TIMEOUT, log)
    return restarted
