"""Chaos under load at CI size: benchmarks/chaos.py's driver on the session stack, with its CI plan.

A create of six clusters (test-950..955, clear of the other modules) runs in the background with
--parallel 1 (one cluster per batch: the apply lasts long enough for every kill) while the management
kube-apiserver, lab itself, the management etcd, CAPI, KCP, the node simulator and a workload
apiserver are killed with SIGKILL, one after the other; then a delete --all runs while the tenant
etcd, CAPM3, BMO, CABPK, IPAM and lab are. Each supervised component must be
back by itself, each killed command converge when run again, no cluster stay stuck, and the residue
check find nothing. The table is printed (pytest -s) for the record.
"""

from __future__ import annotations

import sys
from pathlib import Path

from support.stack import Stack

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import chaos

INDEXES = list(range(950, 956))
#: R6 says 30 s on an idle stack. Under load on the shared 2-core machine the management
#: kube-apiserver is the slow one: 5-27.5 s back at this size, 25-67 s with 30 clusters at load
#: 13-18 (benchmarks/chaos.py); every other component took under 30 s.
BACK_LIMIT = 90.0


def test_killed_components_come_back_and_nothing_is_left(stack: Stack, tmp_path: Path) -> None:
    res = chaos.run_chaos(
        stack,
        INDEXES,
        plan=chaos.CI_PLAN,
        parallel=1,
        settle=1.0,
        back_timeout=120.0,
        cluster_timeout=180.0,
        op_timeout=480.0,
        workdir=tmp_path,
        say=lambda m: print(m, flush=True),
    )
    print("\n" + chaos.table(res))
    names = res["clusters"]
    kills = res["kills"]
    planned = [(p, c) for p in ("create", "delete") for c in chaos.CI_PLAN[p]]
    assert [(k["phase"], k["component"]) for k in kills] == planned
    for k in kills:
        assert k["pid"] and k["during"], k  # each kill hit a running process while the command ran
        assert k["stuck"] == {}, k
        if k["component"] != chaos.LAB and chaos.REMOVED not in k["note"]:
            assert k["back_s"] is not None and k["back_s"] <= BACK_LIMIT, k
        if k["phase"] == "create":  # every cluster there at the kill became (or stayed) Available
            assert k["all_available_s"] is not None, k
            if k["available"]:
                assert k["available_again_s"] is not None, k
        else:  # and every one there at a delete's kill went
            assert k["all_gone_s"] is not None, k

    create = res["create"]["final"]
    assert create["exit"] == 0, create
    assert create["result"]["available"] == names and create["result"]["stuck"] == {}
    assert [r.get("killed", False) for r in res["create"]["runs"]] == [True, False]

    delete = res["delete"]["final"]
    assert delete["exit"] == 0, delete
    assert delete["result"]["pending"] == {}
    assert [r.get("killed", False) for r in res["delete"]["runs"]] == [True, False]
    assert res["residue"] == {} and res["residue_any"] == {}

    for name, c in res["components"].items():
        assert c["state"] == "RUNNING" and c["healthy"] in (True, None), (name, c)
