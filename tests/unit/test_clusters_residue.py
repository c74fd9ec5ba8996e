"""Residue detection of what a cluster leaves in lab home and the process table (etcd and the
management API are covered against the real stack in tests/e2e/test_delete_clusters.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import config
from lab.clusters import residue as r


@pytest.fixture
def settings(lab_env: dict[str, str]) -> config.Settings:
    return config.load()


def test_a_name_is_a_whole_token() -> None:
    p = r._name_pattern("test", ["test-1"])
    assert r.match_names(p, "wkl-test-1.log") == {"test-1"}
    assert r.match_names(p, "wkl-test-10.log") == set()
    assert r.match_names(p, "mytest-1") == set()
    every = r._name_pattern("test", None)
    assert r.match_names(every, "wkl-test-12.log.1 test-3/pki test-04") == {"test-12", "test-3"}


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")


def test_files_finds_cluster_dirs_program_files_and_logs(settings: config.Settings) -> None:
    home = settings.home
    _touch(settings.clusters_dir / "test-1" / "pki" / "ca.crt")
    _touch(settings.log_dir / "wkl-test-1.log.1")
    _touch(settings.run_dir / "supervisor" / "programs" / "wkl-test-1.conf")
    _touch(settings.log_dir / "wkl-test-10.log")
    _touch(settings.src_dir / "test-1" / "ignored.go")  # sources and binaries are never residue
    _touch(home / "records.sqlite")
    found = r.files(settings, ["test-1"])
    assert sorted(found) == ["test-1"]
    assert sorted(found["test-1"]) == sorted(
        f"file {p}"
        for p in (
            settings.clusters_dir / "test-1",  # the directory once, not every file in it
            settings.log_dir / "wkl-test-1.log.1",
            settings.run_dir / "supervisor" / "programs" / "wkl-test-1.conf",
        )
    )
    assert sorted(r.files(settings, None)) == ["test-1", "test-10"]
    assert r.files(settings, ["test-2"]) == {}


def test_processes_of_this_home_only(settings: config.Settings) -> None:
    pki = settings.clusters_dir / "test-1" / "pki"
    procs = [
        (10, ["kube-apiserver", f"--tls-cert-file={pki}/apiserver.crt", "--etcd-prefix=/test-1"]),
        (
            11,
            [
                "kube-apiserver",
                "--tls-cert-file=/elsewhere/clusters/test-1/pki/a.crt",
                "--etcd-prefix=/test-1",
            ],
        ),
        (
            12,
            [
                "kube-apiserver",
                f"--tls-cert-file={settings.clusters_dir}/test-10/pki/a.crt",
                "--etcd-prefix=/test-10",
            ],
        ),
        (13, ["tail", "-f", str(settings.log_dir / "wkl-test-1.log")]),
        (14, ["python", "-m", "pytest", str(settings.home)]),
    ]
    found = r.processes(settings, ["test-1"], procs)
    assert sorted(found) == ["test-1"]
    assert [w.split(" (")[0] for w in found["test-1"]] == ["process 10", "process 13"]
    assert found["test-1"][0] == f"process 10 (kube-apiserver --tls-cert-file={pki}/apiserver.crt)"
    assert sorted(r.processes(settings, None, procs)) == ["test-1", "test-10"]


def test_no_names_means_nothing_to_look_for(settings: config.Settings) -> None:
    assert r.residue(settings, []) == {}
