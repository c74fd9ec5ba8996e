"""Every backing under every management mode: reached, or refused with one line before anything
changes (lab.backing.reach, lab.backing.check_reachable, `lab create-clusters --backing`).

What each "reached" cell means for real is run elsewhere: local and mux under the local stack in
tests/e2e (test_clusters, test_mux), process under it in test_two_hosts, kind under both modes in
tests/integration/test_kind_backing.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import config
from lab.backing import address, check_reachable, reach, store
from lab.backing.store import Entry
from lab.errors import UsageError

#: (backing, runtime, the address it serves apiservers on) -> reached under (local, kind)
MATRIX = [
    ("local", "local", "127.1.0.0/16", (True, False)),
    ("mux", "mux", "127.2.0.1", (True, False)),
    ("h1", "process", "198.18.0.2", (True, True)),
    ("h1-mux", "mux", "198.18.0.2", (True, True)),
    ("h2", "process", "127.0.0.1", (True, False)),
    ("kb", "kind", "198.19.8.2", (True, True)),
    ("kb-lo", "kind", "127.0.0.1", (True, False)),
    ("kb-dns", "kind", "backing-1.lab.example", (True, True)),
    ("kb-local", "kind", "localhost", (True, False)),
    ("kb-v6", "kind", "::1", (True, False)),
]


@pytest.mark.parametrize(("name", "runtime", "host", "reached"), MATRIX)
def test_the_matrix(name: str, runtime: str, host: str, reached: tuple[bool, bool]) -> None:
    for mode, ok in zip(("local", "kind"), reached, strict=True):
        why = reach.unreachable(mode, name, runtime, host)
        assert (why is None) == ok, (mode, name, why)
        if why:
            assert why.startswith(f"backing {name} ({runtime}) serves its apiservers on {host}, a loopback")
            assert "\n" not in why and "kind backing" in why and "lab up --mode local" in why


def _register(settings: config.Settings) -> None:
    store.save(settings, Entry("kb", "kind", 3, {"node_address": "198.19.8.2", "kubeconfig": "kubeconfig"}))
    store.save(settings, Entry("kb-lo", "kind", 3, {"node_address": "127.0.0.1", "kubeconfig": "kubeconfig"}))
    store.save(settings, Entry("h1", "process", 3, {"host": "198.18.0.2"}))
    store.save(settings, Entry("h2", "process", 3, {"host": "h2.example", "address": "127.0.0.1"}))
    store.save(settings, Entry("h1-mux", "mux", 3, {"host": "198.18.0.2"}))


def test_addresses_come_from_the_registrations(lab_env: dict[str, str]) -> None:
    settings = config.load()
    _register(settings)
    assert address(settings, "local") == ("local", "127.1.0.0/16")
    assert address(settings, "mux") == ("mux", "127.2.0.1")
    assert address(settings, "kb") == ("kind", "198.19.8.2")
    assert address(settings, "h1") == ("process", "198.18.0.2")
    assert address(settings, "h2") == ("process", "127.0.0.1")  # the listen address, not the ssh host
    assert address(settings, "h1-mux") == ("mux", "198.18.0.2")
    assert address(settings, "nosuch") is None  # the plan names it as unknown
    check_reachable(settings, ["local", "mux", "kb", "kb-lo", "h1", "h2", "h1-mux", "nosuch"], "local")
    check_reachable(settings, ["kb", "h1", "h1-mux", "nosuch"], "kind")
    for name in ("local", "mux", "kb-lo", "h2"):
        with pytest.raises(UsageError, match=f"^backing {name} "):
            check_reachable(settings, ["kb", name], "kind")


def _files(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["local", "mux", "kb-lo", "h2"])
def test_create_refuses_an_unreachable_backing_with_one_line(
    run_lab, lab_env: dict[str, str], name: str
) -> None:  # type: ignore[no-untyped-def]
    settings = config.load()
    _register(settings)
    home = Path(lab_env["LAB_HOME"])
    before = _files(home)
    r = run_lab(
        "create-clusters", "1", "--start", "1", "--backing", "kb", "--backing", name, env={"LAB_MODE": "kind"}
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: backing {name} ("), r.stderr
    assert "loopback" in lines[0] and "kind" in lines[0]
    assert _files(home) == before  # nothing written: no run record, no certificate, no lock left


def test_a_reachable_backing_passes_to_the_next_check(run_lab, lab_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Under kind mode a kind backing at a routed address is not refused for reach (here the next
    step fails instead: no management cluster runs)."""
    _register(config.load())
    r = run_lab(
        "create-clusters", "1", "--start", "1", "--backing", "kb", env={"LAB_MODE": "kind"}, timeout=120
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "loopback" not in r.stderr, r.stderr
