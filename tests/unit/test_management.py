"""lab.management: the provider is chosen once from the mode, both providers carry the whole Protocol,
and no other module of lab looks at the mode."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import lab
from lab import config, management
from lab.errors import UsageError
from lab.kindmgmt import kind_dir
from lab.kindmgmt.provider import KindStack
from lab.kindmgmt.up import state_path
from lab.stack import mgmt
from lab.stack.provider import LocalStack

PROTOCOL = ("mode", "local_backing", "up", "down", "tune", "status", "kubeconfig")


def test_the_mode_picks_the_provider(lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = config.load()
    local = management.for_settings(settings)
    assert isinstance(local, LocalStack) and (local.mode, local.local_backing) == ("local", True)
    kind = management.for_settings(settings, "kind", bmo_source=Path("/src/bmo"))
    assert isinstance(kind, KindStack) and (kind.mode, kind.local_backing) == ("kind", False)
    assert kind.bmo_source == Path("/src/bmo")
    monkeypatch.setenv("LAB_MODE", "kind")
    assert isinstance(management.for_settings(config.load()), KindStack)
    with pytest.raises(UsageError, match="mode must be one of local, kind"):
        management.for_settings(settings, "vm")
    # one management cluster per lab home: both read and write the same admin kubeconfig
    assert local.kubeconfig() == kind.kubeconfig() == mgmt.admin_kubeconfig_path(settings)


@pytest.mark.parametrize("provider", [LocalStack, KindStack])
def test_each_provider_carries_the_whole_protocol(provider: type) -> None:
    for member in PROTOCOL:
        assert hasattr(provider, member), f"{provider.__name__} lacks {member}"


def test_only_the_factory_reads_the_mode() -> None:
    """`settings.mode` is read in lab.management (the choice), lab.records (what a run recorded) and
    cli/doctor (which tools to check), and compared nowhere."""
    root = Path(lab.__file__).parent
    readers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "mode"
                and getattr(node.value, "id", "") == "settings"
            ):
                readers.add(str(path.relative_to(root)))
    assert readers == {"management.py", "records.py", "cli/doctor.py"}


def test_kind_tune_before_any_cluster_only_stores_the_profile(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, run_lab
) -> None:
    r = run_lab("tune", "--profile", "seed", "-o", "json", env={"LAB_MODE": "kind"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["restarted"] == []
    settings = config.load()
    assert json.loads(state_path(settings).read_text())["profile"] == "seed"
    assert kind_dir(settings).stat().st_mode & 0o777 == 0o700
    assert not (settings.home / "stack.json").exists()  # the local stack's state is not touched


def test_tuning_profile_is_what_lab_tune_stored_in_either_mode(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs record it (lab.records.settings_snapshot), so a report knows each manager's client QPS."""
    settings = config.load()
    assert management.tuning_profile(settings) is None
    management.for_settings(settings).tune("high", lambda _m: None)  # no stack running: stored only
    assert management.tuning_profile(settings) == "high"
    monkeypatch.setenv("LAB_MODE", "kind")
    kind = config.load()
    assert management.tuning_profile(kind) is None
    management.for_settings(kind).tune("seed", lambda _m: None)  # no kind cluster yet: stored only
    assert management.tuning_profile(kind) == "seed"


def test_a_home_whose_kind_cluster_is_up_stays_in_kind_mode(
    lab_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, run_lab
) -> None:
    """After `lab up --mode kind`, commands without LAB_MODE act on the kind cluster (lab tune once
    started local managers instead); asking for local there is one error line, nothing changed."""
    from lab.kindmgmt import cluster

    settings = config.load()
    assert "mode" not in settings.model_fields_set and management.current_mode(settings) == "local"
    path = cluster.config_path(settings)
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_text("kind: Cluster\n")  # what lab up --mode kind leaves until lab down
    assert management.current_mode(settings) == "kind"
    assert isinstance(management.for_settings(settings), KindStack)
    assert management.shards(settings) == 1
    state_path(settings).write_text(json.dumps({"profile": "high"}))
    assert management.tuning_profile(settings) == "high"
    assert management.current_mode(settings, "kind") == "kind"
    for asked in ({"mode": "local"}, {}):
        explicit = config.load(**asked) if asked else settings
        with pytest.raises(UsageError, match=r"runs in kind .* lab down first"):
            management.current_mode(explicit, None if asked else "local")
    monkeypatch.setenv("LAB_MODE", "local")
    with pytest.raises(UsageError):
        management.for_settings(config.load())
    before = sorted(p.name for p in settings.home.rglob("*"))
    for argv in (["up", "--mode", "local"], ["tune", "--profile", "seed"]):
        r = run_lab(*argv, env={"LAB_MODE": "local"} if argv[0] == "tune" else None)
        assert r.returncode == 2, r.stdout + r.stderr
        [line] = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert line.startswith("error: the management cluster of lab home") and "runs in kind" in line
    assert sorted(p.name for p in settings.home.rglob("*")) == before
    path.unlink()  # lab down: the home is free for any mode again
    assert management.current_mode(config.load()) == "local"
