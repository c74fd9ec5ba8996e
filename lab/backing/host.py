"""The host side of the process backing: what `lab host ...` does on a backing host when the
controller calls it over SSH.

The host runs the same code as local mode (lab.backing.local, lab.etcd): a supervisord of its own
with the multi-tenant etcd on the host's loopback (only its own apiservers use it) and one
kube-apiserver per cluster on the host's address. The controller issues every certificate: it
sends the backing's etcd CA once (`lab host up`) and each cluster's PKI with the batch that starts it
(`lab host ensure`), as a tar on stdin, so one SSH connection carries a whole batch.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO

from lab import components, naming, pki, workload_apiserver
from lab.backing import local, mux
from lab.config import Settings
from lab.errors import LabError, UsageError
from lab.runtime import logs
from lab.runtime.files import write_private
from lab.runtime.supervise import Program, Supervisor, ensure_running, log_file, remove_program_files

TENANT_ETCD = components.TENANT_ETCD
#: What the controller may write into the host's lab home; anything else in its tar is refused.
WRITABLE = ("pki/etcd-ca", "src", "clusters", "mux/clusters")


def unpack(settings: Settings, stream: IO[bytes]) -> list[str]:
    """Extract the controller's tar into lab home; returns the member names. Refused as a whole,
    before anything is written, unless every member is a plain file or directory under WRITABLE.
    By hand rather than extractall(filter="data"): Debian 12's Python 3.11.2 predates the filter."""
    data = stream.read()
    if not data:
        return []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
        for m in members:
            if not _writable(m):
                raise UsageError(
                    f"refusing {m.name!r}: the controller may only send files and directories under "
                    f"{', '.join(WRITABLE)}"
                )
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        for m in members:
            dst = settings.home / m.name
            if m.isdir():
                dst.mkdir(parents=True, exist_ok=True, mode=0o700)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            src = tar.extractfile(m)
            assert src is not None
            # created with its final mode: a key is never readable by others, not even for a moment
            write_private(dst, src.read(), m.mode & 0o755)
    return [m.name for m in members]


def _writable(m: tarfile.TarInfo) -> bool:
    path = PurePosixPath(m.name)
    if not (m.isfile() or m.isdir()) or path.is_absolute() or ".." in path.parts:
        return False
    return any(path.parts[: len(PurePosixPath(w).parts)] == PurePosixPath(w).parts for w in WRITABLE)


def etcd_program(settings: Settings) -> Program:
    from lab.etcd import etcd_command

    return Program(name=TENANT_ETCD, argv=etcd_command(settings), priority=100)


def up(settings: Settings, timeout: float = 60.0) -> Supervisor:
    """supervisord and a bootstrapped tenant etcd (server and root certs issued here from the CA the
    controller sent); idempotent and cheap when all is running, so every host command starts with it
    and a rebooted host comes back on the controller's next call."""
    from lab import etcd
    from lab.etcd import server, tenants

    ca = server.etcd_ca_dir(settings)
    if not (ca / "ca.crt").is_file() or not (ca / "ca.key").is_file():
        raise LabError(f"no etcd CA under {ca}: register this host from the controller (lab backing add)")
    etcd.ensure_pki(settings)
    sup = ensure_running(settings)
    sup.converge([etcd_program(settings)])
    etcd.wait_ready(settings, None, log_file(settings, TENANT_ETCD), timeout)
    with etcd.root_client(settings) as root:
        tenants.bootstrap(root)
    return sup


def parse_cluster(spec: str) -> tuple[str, int]:
    """NAME:PORT as the controller passes it."""
    name, sep, port = spec.rpartition(":")
    # [0-9], not isdigit(): "²" is a digit to isdigit() and a ValueError to int()
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise UsageError(f"expected NAME:PORT, got {spec!r}")
    return pki.check_cluster_name(name), int(port)


def ensure(settings: Settings, address: str, clusters: Sequence[tuple[str, int]]) -> list[str]:
    """Tenant and a running supervised apiserver on address:port for each (name, port); the
    cluster's PKI must be in lab home already (sent with the same call). Returns the names."""
    from lab import build, etcd
    from lab.etcd import tenants

    if not clusters:
        return []
    exe = build.binary_path(settings, "kube-apiserver")
    if not exe.is_file():
        raise LabError(f"kube-apiserver is not installed at {exe}: run the backing playbook on this host")
    missing = [n for n, _p in clusters if not workload_apiserver.PkiPaths.of(settings, n).cert.is_file()]
    if missing:
        raise LabError(f"no PKI for {', '.join(missing)} under {settings.clusters_dir}")
    sup = up(settings)
    names = [n for n, _p in clusters]
    with etcd.root_client(settings) as root:
        tenants.create_many(root, names)
    programs = [
        local.program(settings, n, naming.parse_index(settings.prefix, n) or 0, endpoint=(address, p))
        for n, p in clusters
    ]
    sup.converge(programs)  # a program left FATAL by an earlier failure would not restart by itself
    return names


def remove(settings: Settings, names: Sequence[str]) -> None:
    """Program, tenant and files of each cluster (local mode's own removal); gone is fine."""
    if names:
        local.remove(settings, names, up(settings))


def present(settings: Settings) -> list[str]:
    """Clusters of the controller's prefix of which anything is on this host."""
    # present() holds only names of the prefix, so every name has an index
    return sorted(
        local.LocalBacking(settings).present(), key=lambda n: naming.parse_index(settings.prefix, n) or 0
    )


def tenant_health(settings: Settings, names: Sequence[str]) -> dict[str, str | None]:
    """Each named tenant read on this host's etcd with the cluster's own client pair (local mode's)."""
    return local.LocalBacking(settings).tenant_health(names)


def down(settings: Settings) -> bool:
    """Stop supervisord and everything it runs (the host's data stays); False if it was not running."""
    sup = Supervisor(settings)
    if not sup.alive():
        return False
    sup.shutdown()
    return True


def last_log_line(settings: Settings, name: str) -> str:
    """Last line of a cluster apiserver's log: what the controller shows when it is not ready."""
    return logs.last_line(log_file(settings, local.program_name(name)))


def tar_files(files: Sequence[tuple[Path, str]]) -> bytes:
    """A tar of (local path, name in the host's lab home), modes kept (keys stay 0600)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        for path, arcname in files:
            tar.add(path, arcname=arcname, recursive=True)
    return buf.getvalue()


# --- the mux on this host (a `mux` backing registered with --host, lab.backing.hostmux) ----------
#
# lab-mux, installed by the playbook beside the host's other binaries, runs under this host's
# supervisord like its etcd: its control API on the host's loopback (settings.ports.mux_control,
# the token in <home>/mux/token, 0600), reached only by this lab, which the controller runs over
# ssh; each cluster's listener on the host's address. Its clusters' files live under mux/clusters/,
# apart from clusters/ (the process backing's, whose present() counts every directory there), so
# a host may carry both runtimes.


def mux_pki_dir(settings: Settings, name: str) -> Path:
    """Where a mux cluster's CA lives on the host (sent by the controller with its ensure)."""
    return settings.home / "mux" / "clusters" / pki.check_cluster_name(name) / "pki"


def mux_up(settings: Settings, address: str) -> dict[str, object]:
    """lab-mux running on this host with its clusters' listeners on `address`; its health."""
    return mux.start(settings, host=address).health()


def mux_ensure(settings: Settings, address: str, clusters: Sequence[tuple[str, int]]) -> list[str]:
    """Each (name, port) registered with this host's lab-mux on address:port, with the CA sent."""
    if not clusters:
        return []
    missing = [n for n, _p in clusters if not (mux_pki_dir(settings, n) / "ca.key").is_file()]
    if missing:
        raise LabError(f"no CA for {', '.join(missing)} under {settings.home / 'mux' / 'clusters'}")
    ctl = mux.start(settings, host=address)
    for name, port in clusters:
        d = mux_pki_dir(settings, name)
        ctl.register(name, naming.parse_index(settings.prefix, name) or 0, port, d / "ca.crt", d / "ca.key")
    return [n for n, _p in clusters]


def mux_remove(settings: Settings, names: Sequence[str]) -> None:
    """Unregister each (listener and objects gone) and remove its files; gone is fine."""
    names = [pki.check_cluster_name(n) for n in names]
    ctl = mux.control(settings)
    if ctl is not None and ctl.alive():
        for n in names:
            ctl.unregister(n)
    elif any(n in _mux_state_names(settings) for n in names):
        raise LabError(f"{mux.PROGRAM_NAME} is not answering: its clusters cannot be unregistered")
    for n in names:
        d = mux_pki_dir(settings, n).parent
        if d.is_dir():
            shutil.rmtree(d)


def _mux_state_names(settings: Settings) -> set[str]:
    """Names in lab-mux's state file: what it serves again when it next starts."""
    try:
        data = json.loads(mux.state_path(settings).read_text())
    except (OSError, ValueError):
        return set()
    items = data.get("clusters", data) if isinstance(data, dict) else data
    return {str(c.get("name")) for c in items if isinstance(c, dict)} if isinstance(items, list) else set()


def mux_list(settings: Settings) -> dict[str, object]:
    """What the controller reads in one call: the names lab-mux serves now (None when it is not
    answering), those its state file keeps, those with files here, and when it last started."""
    ctl = mux.control(settings, timeout=10.0)
    health = None
    if ctl is not None and ctl.alive():
        health = ctl.health()
    d = settings.home / "mux" / "clusters"
    files = sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
    return {
        "served": None if health is None or ctl is None else sorted(c["name"] for c in ctl.clusters()),
        "state": sorted(_mux_state_names(settings)),
        "files": files,
        "started": None if health is None else health.get("started"),
    }


def mux_down(settings: Settings) -> bool:
    """lab-mux stopped and forgotten by this host's supervisord (its state file goes too, so a later
    start serves nothing); False when it was not there."""
    sup = Supervisor(settings)
    had = False
    if sup.alive():
        had = sup.process(mux.PROGRAM_NAME) is not None
        sup.remove([mux.PROGRAM_NAME])
    else:
        remove_program_files(settings, [mux.PROGRAM_NAME])
    mux.state_path(settings).unlink(missing_ok=True)
    return had
