"""Bad input against the running stack: the mutating commands (create, delete, tune, up, down,
backing add/remove) and the settings they load, malformed, must each be one `error:` line, exit 2,
and change nothing: neither the management API's objects (every namespace, and every object in a
namespace labelled as a lab cluster, by resourceVersion) nor lab's state in the lab home.

Read-only commands' bad input is swept without a stack (tests/integration/test_bad_input_home.py);
this module keeps to what could change the stack: ~2.4 s a case at load 5-8, so ~2 min with the
stack already up; 6 min measured at load 18-34.

A sentinel namespace labelled as cluster test-9950 (nothing reconciles a bare namespace, so its
resourceVersion holds still) is what the cases aim at: a create or delete of 9950 that wrongly went
on would add objects to it or delete it. Indexes 9950+ keep clear of the other e2e modules.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.badinput import (
    SAFETY_ENV,
    Case,
    bad_name_args,
    bad_range_args,
    refusal_problems,
    tree,
    tree_diff,
)
from support.stack import Stack

from lab import naming

SENTINEL = 9950
NS = f"test-{SENTINEL}"

#: Parts of a running stack's home that change by themselves: logs, etcd data, supervisord's
#: socket and pid, the apiserver's and managers' own files under run/.
_CHURN = ("logs", "etcd", "run")


def _churns(rel: str) -> bool:
    return rel.split("/", 1)[0] in _CHURN


def c(line: str, expect: int | None = 2, **env: str) -> Case:
    return Case(tuple(shlex.split(line)), env, expect)


CASES = [
    c(f"create-clusters 1 --start {SENTINEL} --timeout nan"),
    c(f"create-clusters 1 --start {SENTINEL} --timeout inf"),
    c(f"create-clusters 1 --start {SENTINEL} --parallel 0"),
    c(f"create-clusters 1 --start {SENTINEL} --backing BAD_NAME"),
    c(f"create-clusters 1 --start {SENTINEL} -o xml"),
    c(f"create-clusters 1 --start {SENTINEL} --backing nosuch", expect=None),
    c(f"create-clusters 0 --start {SENTINEL}"),
    c("create-clusters 2 --start 9999"),
    c(f"delete-clusters --start {SENTINEL} --count 1 --timeout nan"),
    c(f"delete-clusters --start {SENTINEL} --count 1 --timeout 0"),
    c(f"delete-clusters --all --start {SENTINEL}"),
    c("delete-clusters --all --timeout nan"),
    c(f"delete-clusters --start {SENTINEL}"),
    c(f"delete-clusters --start {SENTINEL} --count 0"),
    c(f"upgrade-clusters --start {SENTINEL} --count 1 --to v1.37.0"),
    c(f"upgrade-clusters --start {SENTINEL} --count 1 --to v1.36.0 --timeout nan"),
    c(f"create-hosts 0 --start {SENTINEL}"),
    c("create-hosts 2 --start 9999"),
    c(f"create-hosts 1 --start {SENTINEL} --state ready"),
    c(f"create-hosts 1 --start {SENTINEL} --timeout nan"),
    c(f"delete-hosts --all --start {SENTINEL}"),
    c(f"delete-hosts --start {SENTINEL}"),
    c(f"create-hosts 1 --start {SENTINEL}", LAB_PREFIX="Bad"),
    c("tune --profile turbo"),
    c("tune --profile ''"),
    c("up --mode vm"),
    c("up --mode ''"),
    c("up --tuning turbo"),
    c("up --tuning ''"),
    c("down extra"),
    c("backing add BAD --host 127.0.0.1 --ssh-port 9"),
    c("backing add x --host ''"),
    c("backing add x --host 127.0.0.1 --ssh-port 0"),
    c("backing add x --host 127.0.0.1 --ssh-port 9 --timeout nan"),
    c("backing remove BAD"),
    c("backing remove local"),
    c("backing remove nosuch", expect=None),
    c(f"render {SENTINEL} --count 0"),
    c("etcd tenants -o xml"),
    c(f"create-clusters 1 --start {SENTINEL}", LAB_PREFIX="Bad"),
    c(f"delete-clusters --start {SENTINEL} --count 1", LAB_PORTS__MGMT_APISERVER="0"),
    c("delete-clusters --all", LAB_MAX_INDEX="0"),
    c("tune --profile seed", LAB_PORTS__TENANT_ETCD="65536"),
    c("up", LAB_VERSIONS__CAPI="latest"),
    c("up", LAB_CONFIG="/proc/self/mem"),
    c("down", LAB_HOME=""),
    c("down", LAB_PORTS="1", LAB_PORTS__MGMT_ETCD="2"),
]


def _kubectl_json(stack: Stack, *args: str) -> Any:
    return json.loads(stack.kubectl(*args, "-o", "json").stdout)


class Api:
    """What a bad input must not change in the management API."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        names = stack.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout.split()
        self.kinds = ",".join(n for n in names if not n.startswith("events"))

    def snapshot(self) -> dict[str, str]:
        """Every namespace, and every object in a namespace labelled as a lab cluster: one list call
        (objects elsewhere, leases and the like, change by themselves and are dropped)."""
        items = _kubectl_json(self.stack, "get", f"namespaces,{self.kinds}", "-A")["items"]
        lab_namespaces = {
            o["metadata"]["name"]
            for o in items
            if o["kind"] == "Namespace" and naming.CLUSTER_LABEL in (o["metadata"].get("labels") or {})
        }
        out: dict[str, str] = {}
        for o in items:
            meta = o["metadata"]
            if o["kind"] == "Namespace":
                out[f"Namespace/{meta['name']}"] = meta["resourceVersion"]
            elif meta.get("namespace") in lab_namespaces:
                out[f"{o['kind']}/{meta['namespace']}/{meta['name']}"] = meta["resourceVersion"]
        return out


def _diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [
        f"{'+' if k not in before else '-' if k not in after else '~'}{k}"
        for k in sorted(set(before) | set(after))
        if before.get(k) != after.get(k)
    ]


@pytest.fixture(scope="module")
def sentinel(stack: Stack) -> Iterator[Api]:
    labels = {naming.CLUSTER_LABEL: NS, naming.INDEX_LABEL: str(SENTINEL), naming.BACKING_LABEL: "local"}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": labels}}
    stack.kubectl("apply", "-f", "-", input_text=json.dumps(ns))
    api = Api(stack)
    try:
        # kube-controller-manager adds the default ServiceAccount and the root CA ConfigMap: wait, so
        # the snapshots compare a namespace that has settled
        deadline = time.monotonic() + 60
        while not (
            stack.kubectl("get", "serviceaccount", "default", "-n", NS, check=False).returncode == 0
            and stack.kubectl("get", "configmap", "kube-root-ca.crt", "-n", NS, check=False).returncode == 0
        ):
            assert time.monotonic() < deadline, f"namespace {NS} never got its default ServiceAccount"
            time.sleep(0.5)
        yield api
    finally:
        stack.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=120s", check=False)


class Baseline:
    def __init__(self, stack: Stack, api: Api) -> None:
        self.stack, self.api = stack, api
        self.objects = api.snapshot()
        self.files = tree(stack.home, _churns)
        assert f"Namespace/{NS}" in self.objects and len(self.objects) > 3, self.objects

    def check(self, case: Case) -> None:
        r = subprocess.run(
            [sys.executable, "-m", "lab", *case.args],
            capture_output=True,
            text=True,
            env={**self.stack.env, **SAFETY_ENV, **case.env},
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        problems = refusal_problems(r.returncode, r.stdout, r.stderr, case.expect)
        objects = _diff(self.objects, self.api.snapshot())
        files = tree_diff(self.files, tree(self.stack.home, _churns))
        if objects:
            problems.append(f"management API changed: {', '.join(objects[:10])}")
        if files:
            problems.append(f"lab home changed: {', '.join(files[:10])}")
        assert not problems, f"{case.id}: " + "; ".join(problems)


@pytest.fixture(scope="module")
def baseline(stack: Stack, sentinel: Api) -> Baseline:
    return Baseline(stack, sentinel)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_changes_nothing_on_a_running_stack(baseline: Baseline, case: Case) -> None:
    baseline.check(case)


@settings(max_examples=5, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.one_of(bad_range_args(), bad_name_args()))
def test_generated_bad_input_changes_nothing_on_a_running_stack(baseline: Baseline, args: list[str]) -> None:
    baseline.check(Case(tuple(args)))


def test_the_sentinel_is_what_a_good_command_would_change(baseline: Baseline) -> None:
    """The comparison can fail: a valid command aimed at the sentinel is seen by it (labels edited
    by kubectl here, undone after, so the baseline stays true for any test after this one)."""
    stack = baseline.stack
    stack.kubectl("label", "namespace", NS, "scale-lab.metal3.io/probe=1")
    try:
        assert _diff(baseline.objects, baseline.api.snapshot()) == [f"~Namespace/{NS}"]
    finally:
        stack.kubectl("label", "namespace", NS, "scale-lab.metal3.io/probe-")
    baseline.objects = baseline.api.snapshot()
