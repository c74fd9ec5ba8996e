"""`lab create-clusters --payload-kb K`: K kB of files in each KubeadmControlPlane's
kubeadmConfigSpec.files, so they reach every bootstrap data secret (the seed's "larger cloud-init"
experiment: a 30 kB file, to see how etcd copes).

One file cannot carry it at the pinned versions: CAPI v1beta2 caps File.content at 10240 characters
and rejects two files with the same path (KubeadmConfigSpec.validateFiles), so the payload is
ceil(K / 10) files `/etc/lab/payload-<K>kb.<n>` of at most 10 KiB each, whose concatenation is
the K KiB. The content is deterministic (same K, same bytes: create stays convergent) and plain
ASCII in lines of 1 KiB: no JSON escaping but the line breaks, no YAML quoting, and the 6-space
indent cloud-init's `content: |` adds is 0.6 %.

The bound (MAX_KB): every byte of the payload is stored once in each of three objects in the
management etcd (the KCP, the KubeadmConfig KCP makes from it, the bootstrap data secret CABPK
renders), and a write of any of them is one etcd request, which etcd refuses above its
--max-request-bytes, 1.5 MiB by default (lab does not change it). The apiserver's own body limit
(3 MiB) and v1beta2's 200 files x 10 KiB (2000 KiB) are looser. HEADROOM is left for the rest of
the largest object, JSON escapes and the cloud-init indent: 1472 KiB. Measured with 30 KiB: the
KCP is 35.8 kB as JSON and the bootstrap secret's cloud-init 37.9 kB (7 kB of certificates, keys
and kubeadm config beyond the payload), so 64 KiB leaves room to spare.
"""

from __future__ import annotations

import math
from typing import Any

from lab.errors import UsageError

#: CAPI v1beta2 File.content maxLength.
FILE_MAX = 10240
LINE = 1024
#: etcd's default --max-request-bytes.
ETCD_MAX_REQUEST = 1536 * 1024
HEADROOM = 64 * 1024
MAX_KB = (ETCD_MAX_REQUEST - HEADROOM) // 1024
OWNER, PERMISSIONS = "root:root", "0644"
#: On a cluster's namespace: the payload it was created with (absent: none).
ANNOTATION = "scale-lab.metal3.io/payload-kb"


def check_kb(kb: int) -> int:
    """`kb` when it is a payload lab can store (0: none); else one UsageError saying why."""
    if kb < 0:
        raise UsageError(f"--payload-kb must be 0 (none) or more, got {kb}")
    if kb > MAX_KB:
        raise UsageError(
            f"--payload-kb {kb} would not fit: each KubeadmControlPlane, KubeadmConfig and bootstrap "
            f"secret carries it, and etcd refuses a request above {ETCD_MAX_REQUEST // 1024} KiB "
            f"(its default --max-request-bytes): at most {MAX_KB}"
        )
    return kb


def of_namespace(ns: dict[str, Any]) -> int:
    """The payload an existing cluster was created with, from its namespace (0: none or unreadable)."""
    value = ((ns.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION, "0")
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def path(kb: int, part: int) -> str:
    return f"/etc/lab/payload-{kb}kb.{part}"


def content(kb: int) -> str:
    """K KiB of lines `lab payload <K>kb line <n> ` padded with letters to 1023 chars, then a newline."""
    fill = "abcdefghijklmnopqrstuvwxyz" * (LINE // 26 + 1)
    lines = []
    for n in range(kb * 1024 // LINE):
        head = f"lab payload {kb}kb line {n:06d} "
        lines.append((head + fill)[: LINE - 1] + "\n")
    return "".join(lines)


def files(kb: int) -> list[dict[str, Any]]:
    """kubeadmConfigSpec.files entries carrying K KiB; none for 0."""
    data = content(check_kb(kb))
    parts = math.ceil(len(data) / FILE_MAX)
    return [
        {
            "path": path(kb, n + 1),
            "owner": OWNER,
            "permissions": PERMISSIONS,
            "content": data[n * FILE_MAX : (n + 1) * FILE_MAX],
        }
        for n in range(parts)
    ]
