"""lab.kindmgmt.podnet's masquerade script against the real iptables, in a network namespace of its own
(what a kind node's iptables does with it; the node image has the same Debian iptables): run twice,
the nat table holds the chain with one RETURN per podCIDR and MASQUERADE last, and one jump to it.

A kind cluster runs it for real in test_kindmgmt_up_offline and test_kind_backing; this checks the
script alone, in a second, where a failure names the rule.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from lab.kindmgmt import podnet


def _run(*cmd: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, f"{' '.join(cmd)}: {res.stderr}"
    return res.stdout


def test_the_masquerade_script_on_real_iptables() -> None:
    missing = [t for t in ("ip", "iptables") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        reason = "needs root" if os.geteuid() != 0 else f"missing {', '.join(missing)}"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI must run this test, but: {reason}")
        pytest.skip(reason)
    nodes = [
        podnet.Node("lab-mgmt-control-plane", "198.19.8.3", "10.244.0.0/24"),
        podnet.Node("lab-mgmt-control-plane2", "198.19.8.4", "10.244.1.0/24"),
    ]
    script = podnet.masquerade_script(nodes)
    netns = f"labmasq-{uuid.uuid4().hex[:8]}"
    _run("ip", "netns", "add", netns)
    try:
        for _ in range(2):  # lab up runs it on every converge
            _run("ip", "netns", "exec", netns, "sh", "-c", script)
        rules = _run("ip", "netns", "exec", netns, "iptables", "-t", "nat", "-S").splitlines()
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=60, check=False)
    chain = podnet.MASQ_CHAIN
    assert [ln for ln in rules if chain in ln] == [
        f"-N {chain}",
        f"-A POSTROUTING -m addrtype ! --dst-type LOCAL -j {chain}",
        f"-A {chain} -d 10.244.0.0/24 -j RETURN",
        f"-A {chain} -d 10.244.1.0/24 -j RETURN",
        f"-A {chain} -j MASQUERADE",
    ], rules
