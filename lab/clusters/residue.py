"""What remains of workload clusters after a delete, looked for everywhere a cluster leaves traces:
the tenant etcd (keys under /<name>/, user and role <name>), the management API (the namespace),
the process table, the lab home, supervisord's running programs and the mux backing's lab-mux.

Empty means clean: the e2e tests assert `residue(...) == {}`. It is deliberately independent of
delete's own bookkeeping (it reads the world, not lab's notes), so it can catch delete's bugs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from lab import naming
from lab.config import Settings
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.etcd.client import EtcdClient

Found = dict[str, list[str]]


def _name_pattern(prefix: str, names: Sequence[str] | None) -> re.Pattern[str]:
    """A cluster name as a whole token: test-1 matches in wkl-test-1.log, never in test-10."""
    body = "|".join(re.escape(n) for n in names) if names is not None else rf"{re.escape(prefix)}-[1-9][0-9]*"
    return re.compile(rf"(?<![A-Za-z0-9])({body})(?![0-9])")


def _add(found: Found, name: str, what: str) -> None:
    found.setdefault(name, []).append(what)


def match_names(pattern: re.Pattern[str], text: str) -> set[str]:
    return {m.group(1) for m in pattern.finditer(text)}


# --- lab home ---------------------------------------------------------------------------------


def _walk(root: Path, skip: set[Path]) -> Iterator[Path]:
    """Every path under root (not following links), minus the skipped subtrees."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for n in (*dirnames, *filenames):
            yield here / n


def files(settings: Settings, names: Sequence[str] | None) -> Found:
    """Paths under lab home whose name (relative to the home) names a cluster: its directory under
    clusters_dir, its supervisor program file, its logs. Built binaries and sources are skipped."""
    pattern = _name_pattern(settings.prefix, names)
    found: Found = {}
    home = settings.home
    if not home.is_dir():
        return found
    for path in _walk(home, {settings.bin_dir, settings.src_dir}):
        for name in match_names(pattern, path.name):
            # a directory and everything in it is one finding: the directory
            parents = path.relative_to(home).parents
            if not any(name in match_names(pattern, p.name) for p in parents if p != Path(".")):
                _add(found, name, f"file {path}")
    return found


# --- processes --------------------------------------------------------------------------------


def process_markers(settings: Settings, name: str) -> list[str]:
    """Pieces of command-line arguments that only a process of this cluster carries (of a process
    that mentions this lab home)."""
    return [
        f"--etcd-prefix=/{name}",
        str(settings.clusters_dir / name) + os.sep,
        f"{naming.WORKLOAD_PROGRAM_PREFIX}{name}",
    ]


def processes(
    settings: Settings, names: Sequence[str] | None, procs: Iterable[tuple[int, list[str]]] | None = None
) -> Found:
    """Processes of this lab home whose command line mentions a cluster's PKI dir, etcd prefix or
    program name (its log file)."""
    if procs is None:
        procs = (
            (p.info["pid"], p.info["cmdline"] or [])
            for p in psutil.process_iter(["pid", "cmdline"])
            if p.info["pid"] != os.getpid()
        )
    home = str(settings.home) + os.sep
    any_name = _name_pattern(settings.prefix, names)
    found: Found = {}
    for pid, cmdline in procs:
        text = " ".join(cmdline)
        if home not in text:  # another lab home's cluster of the same name is not ours
            continue
        for name in match_names(any_name, text):
            markers = process_markers(settings, name)
            hit = next((arg for arg in cmdline for m in markers if m in arg), None)
            if hit is not None:
                exe = Path(cmdline[0]).name if cmdline else "?"
                _add(found, name, f"process {pid} ({exe} {hit})")
    return found


def programs(settings: Settings, names: Sequence[str] | None) -> Found:
    """Programs supervisord still runs for a cluster (its file may be gone, its process not)."""
    from lab.runtime.supervise import Supervisor

    sup = Supervisor(settings)
    if not sup.alive():
        return {}
    pattern = _name_pattern(settings.prefix, names)
    found: Found = {}
    for p in sup.processes():
        if p["name"].startswith(naming.WORKLOAD_PROGRAM_PREFIX):
            for name in match_names(pattern, p["name"].removeprefix(naming.WORKLOAD_PROGRAM_PREFIX)):
                _add(found, name, f"supervisord program {p['name']} ({p['statename']})")
    return found


def multiplexed(settings: Settings, names: Sequence[str] | None) -> Found:
    """Clusters the mux backing's lab-mux still serves, and for named ones of it a listener still
    accepting on the cluster's mux port (unregister must close it)."""
    import socket

    from lab.backing import mux

    pattern = _name_pattern(settings.prefix, names)
    found: Found = {}
    for name in mux.registered(settings):
        if pattern.fullmatch(name):
            _add(found, name, f"registered in {mux.PROGRAM_NAME}")
    if mux.control(settings) is None:  # lab-mux never ran in this lab home: no port is ours
        return found
    for name in names or ():
        index = naming.parse_index(settings.prefix, name)
        if index is None or not 0 < index <= naming.MUX_MAX_PORT - naming.MUX_PORT_BASE:
            continue
        host, port = naming.mux_endpoint(index)
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                _add(found, name, f"a listener on {host}:{port}")
    return found


# --- etcd -------------------------------------------------------------------------------------


def etcd(settings: Settings, names: Sequence[str] | None) -> Found:
    """Keys under /<name>/, and the user and role <name>, in the local tenant etcd."""
    from lab import etcd as lab_etcd
    from lab.etcd.client import EtcdError

    pattern = _name_pattern(settings.prefix, names)
    found: Found = {}
    try:
        with lab_etcd.root_client(settings) as root:
            for user in root.users():
                if pattern.fullmatch(user):
                    _add(found, user, f"etcd user {user}")
            for role in root.roles():
                if pattern.fullmatch(role):
                    _add(found, role, f"etcd role {role}")
            for name, keys in _key_prefixes(root, settings.prefix, names):
                _add(found, name, f"etcd: {keys} key(s) under /{name}/")
    except EtcdError as e:
        raise LabError(f"cannot look for residue in the tenant etcd: {e}") from None
    return found


def _key_prefixes(root: EtcdClient, prefix: str, names: Sequence[str] | None) -> Iterator[tuple[str, int]]:
    """(name, key count) of every /<name>/ that holds keys: for given names, one count each; for
    all, one keys-only lookup per tenant found, jumping from one tenant's range to the next."""
    from lab.etcd.client import prefix_end

    if names is not None:
        for n in names:
            p = f"/{n}/".encode()
            count = root.count(p, prefix_end(p))
            if count:
                yield n, count
        return
    start, end = f"/{prefix}-".encode(), prefix_end(f"/{prefix}-".encode())
    pattern = re.compile(rf"^/({re.escape(prefix)}-[1-9][0-9]*)/")
    while True:
        req = root.api.rpc.RangeRequest(key=start, range_end=end, limit=1, keys_only=True)
        r = root.call(root.kv.Range, req, "residue scan")
        if not r.kvs:
            return
        key = bytes(r.kvs[0].key)
        m = pattern.match(key.decode(errors="replace"))
        if m is None:  # a key like /test-x... that is no tenant's: step past it
            start = key + b"\x00"
            continue
        p = f"/{m.group(1)}/".encode()
        yield m.group(1), root.count(p, prefix_end(p))
        start = prefix_end(p)


# --- management API ---------------------------------------------------------------------------


def namespaces(settings: Settings, names: Sequence[str] | None) -> Found:
    """Namespaces named like a cluster (labelled or not) in the management cluster."""
    from lab.kube import Client

    kubeconfig = settings.admin_kubeconfig
    if not kubeconfig.is_file():
        raise LabError(f"cannot look for residue in the management cluster: no {kubeconfig}")
    pattern = _name_pattern(settings.prefix, names)
    found: Found = {}
    with Client.from_kubeconfig(kubeconfig, attempts=3, parallel=1) as client:
        for ns in client.list("v1", "Namespace"):
            n = ns["metadata"]["name"]
            if pattern.fullmatch(n):
                phase = (ns.get("status") or {}).get("phase", "?")
                _add(found, n, f"namespace {n} ({phase})")
    return found


def residue(settings: Settings, names: Sequence[str] | None = None) -> Found:
    """Cluster name -> what remains of it, for the named clusters or every cluster of this lab's
    prefix (None). Needs the stack up (the management API and the tenant etcd answer)."""
    if names is not None and not names:
        return {}
    found: Found = {}
    for part in (
        etcd(settings, names),
        namespaces(settings, names),
        processes(settings, names),
        programs(settings, names),
        files(settings, names),
        multiplexed(settings, names),
    ):
        for name, what in part.items():
            found.setdefault(name, []).extend(what)
    return found
