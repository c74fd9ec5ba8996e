"""`lab create-clusters`: plan, then converge each cluster's backing and management objects.

Convergent by construction, so a re-run after Ctrl-C or `kill -9` finishes the job and leaks nothing:
- the Namespace (with its backing label) is applied before anything else exists anywhere, so every
  apiserver, tenant and file has a namespace that delete can find;
- every step is idempotent (PKI reused, tenant and program ensured, server-side apply);
- a cluster is complete once its namespace carries DIGEST_ANNOTATION equal to the digest of the
  objects just rendered. A re-run skips complete clusters without writing anything; a cluster
  without it (crashed half-way, or rendered differently by a newer lab) is converged again.

Work goes in batches of `parallel` clusters: PKI and namespaces, then the backing's apiservers
(started together, waited for together), then the remaining objects, `parallel` requests in flight
under the client's QPS limit with retries on 429/5xx/conflicts (lab.kube.Client).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lab import naming, render
from lab.backing import Backing, open_all, open_backing
from lab.backing.placement import Room, place
from lab.clusters.tracker import Tracker
from lab.config import Settings
from lab.errors import LabError
from lab.kube import ApiError, Client
from lab.manifests import controlplane, payload, workers
from lab.phases import Phase

DIGEST_ANNOTATION = "scale-lab.metal3.io/applied-digest"
#: Field manager of the digest annotation: not "lab", whose applies would otherwise remove it.
DIGEST_MANAGER = "lab-create"
APISERVER_READY_TIMEOUT = 300.0

Obj = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """What a create run will do, decided before anything changes."""

    indexes: list[int]
    names: dict[int, str]
    placement: dict[int, str]  # index -> backing name, for every index in the range
    complete: set[int] = field(default_factory=set)  # exists with the same objects: nothing to do
    partial: set[int] = field(default_factory=set)  # namespace exists, not complete: converge again
    new: set[int] = field(default_factory=set)

    @property
    def todo(self) -> list[int]:
        return [i for i in self.indexes if i not in self.complete]

    def summary(self) -> str:
        parts = [f"{len(self.new)} new"]
        if self.partial:
            parts.append(f"{len(self.partial)} to finish")
        if self.complete:
            parts.append(f"{len(self.complete)} already complete")
        return ", ".join(parts)


def digest(objects: Sequence[Obj]) -> str:
    """Of the rendered objects: same objects, same digest (they are rendered deterministically)."""
    data = json.dumps(list(objects), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:32]


def existing_namespaces(settings: Settings, mgmt: Client) -> dict[int, Obj]:
    """index -> Namespace of every lab cluster of this prefix: one LIST call."""
    out: dict[int, Obj] = {}
    for ns in mgmt.list("v1", "Namespace", label_selector=naming.CLUSTER_LABEL):
        index = naming.parse_index(settings.prefix, ns["metadata"]["name"])
        if index is not None:
            out[index] = ns
    return out


def make_plan(
    settings: Settings,
    mgmt: Client,
    indexes: Sequence[int],
    backing_names: Sequence[str],
    payload_kb: int = 0,
    n_workers: int = 0,
) -> tuple[Plan, dict[str, Backing]]:
    """Placement and what exists; raises (UsageError, LabError) before anything is created.

    Existing clusters created with another --payload-kb are refused: converging them would change
    the KCP's files, which KCP answers with a rollout to a second Machine that has no host to get.
    So are those with another --workers: an apply never deletes, so fewer workers would leave the
    surplus hosts behind; lab scale-clusters changes it (and deprovisions what goes)."""
    backings = open_all(settings, backing_names or [naming.LOCAL_BACKING])
    namespaces = existing_namespaces(settings, mgmt)
    other_w = [i for i in indexes if i in namespaces and workers.of_namespace(namespaces[i]) != n_workers]
    if other_w:
        first = namespaces[other_w[0]]
        raise LabError(
            f"{len(other_w)} existing cluster(s) ({naming.cluster_name(settings.prefix, other_w[0])} first) "
            f"have --workers {workers.of_namespace(first)}, not {n_workers}: change it with lab scale-clusters"
        )
    other = [i for i in indexes if i in namespaces and payload.of_namespace(namespaces[i]) != payload_kb]
    if other:
        first = namespaces[other[0]]
        raise LabError(
            f"{len(other)} existing cluster(s) ({naming.cluster_name(settings.prefix, other[0])} first) were "
            f"created with --payload-kb {payload.of_namespace(first)}, not {payload_kb}: changing it would "
            "roll their control plane out to a host they do not have; delete them first"
        )
    existing: dict[int, str] = {}
    for i in indexes:
        ns = namespaces.get(i)
        if ns is not None:
            existing[i] = (ns["metadata"].get("labels") or {}).get(naming.BACKING_LABEL, naming.LOCAL_BACKING)
            if existing[i] not in backings:  # an existing cluster stays where it lives
                backings[existing[i]] = open_backing(settings, existing[i])
    chosen = list(dict.fromkeys(backing_names or [naming.LOCAL_BACKING]))
    rooms = [Room(n, backings[n].capacity, backings[n].used()) for n in chosen]
    new = [i for i in indexes if i not in existing]
    placement = place(new, rooms, existing)
    for name, b in backings.items():  # e.g. the local backing's fixed loopback addresses
        mine = [(naming.cluster_name(settings.prefix, i), i) for i in new if placement[i] == name]
        if mine:
            b.preflight(mine)
    complete, partial = set(), set()
    for i in existing:
        annotations = namespaces[i]["metadata"].get("annotations") or {}
        if DIGEST_ANNOTATION in annotations:
            complete.add(i)  # confirmed against the rendered objects in converge()
        else:
            partial.add(i)
    plan = Plan(
        indexes=list(indexes),
        names={i: naming.cluster_name(settings.prefix, i) for i in indexes},
        placement={i: placement[i] for i in indexes},
        complete=complete,
        partial=partial,
        new=set(new),
    )
    return plan, backings


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[k : k + size]) for k in range(0, len(items), size)]


@dataclass
class Creator:
    settings: Settings
    mgmt: Client
    plan: Plan
    backings: dict[str, Backing]
    tracker: Tracker | None = None
    parallel: int = 10
    payload_kb: int = 0  # lab.manifests.payload
    n_workers: int = 0  # lab.manifests.workers
    #: what rest() marks once a cluster's objects are applied (a scale run: scale_applied)
    applied_phase: Phase = Phase.applied
    namespaces: dict[int, Obj] = field(default_factory=dict)
    #: the control plane to render per index (an upgrade's); else the one its namespace notes
    control_planes: dict[int, controlplane.ControlPlane] = field(default_factory=dict)
    _cas: dict[str, Any] = field(default_factory=dict)

    def control_plane(self, index: int) -> controlplane.ControlPlane:
        """What the cluster has (lab.manifests.controlplane): an existing cluster is never rendered
        back to the pinned version or its first host after an upgrade."""
        if index in self.control_planes:
            return self.control_planes[index]
        return controlplane.of_namespace(self.namespaces.get(index) or {})

    def render(self, index: int) -> list[Obj]:
        b = self.backings[self.plan.placement[index]]
        if b.name not in self._cas:
            self._cas[b.name] = b.etcd_ca()
        return render.backed_objects(
            self.settings,
            index,
            b,
            self._cas[b.name],
            self.payload_kb,
            self.n_workers,
            self.control_plane(index),
        )

    def confirm_complete(self) -> set[int]:
        """Complete clusters whose digest no longer matches what lab renders now move to `partial`."""
        stale = set()
        for i in sorted(self.plan.complete):
            ns = self.namespaces.get(i) or {}
            have = (ns.get("metadata", {}).get("annotations") or {}).get(DIGEST_ANNOTATION)
            if have != digest(self.render(i)):
                stale.add(i)
        self.plan.complete.difference_update(stale)
        self.plan.partial.update(stale)
        return stale

    def ensure_backings(self, indexes: Sequence[int]) -> None:
        """Apiservers and tenants of `indexes`, grouped per backing, started then waited for together."""
        by_backing: dict[str, list[int]] = {}
        for i in indexes:
            by_backing.setdefault(self.plan.placement[i], []).append(i)
        for name, idx in by_backing.items():
            b = self.backings[name]
            b.ensure([(self.plan.names[i], i) for i in idx])
        for name, idx in by_backing.items():
            self.backings[name].wait_ready([self.plan.names[i] for i in idx], APISERVER_READY_TIMEOUT)

    def converge_batch(self, batch: Sequence[int], pool: ThreadPoolExecutor) -> None:
        rendered = dict(zip(batch, pool.map(self.render, batch), strict=True))
        self.mgmt.apply([objs[0] for objs in rendered.values()])  # the namespaces first
        self.ensure_backings(batch)

        def rest(i: int) -> None:
            objs = rendered[i]
            self.mgmt.apply(objs[1:])
            if self.tracker is not None:
                self.tracker.mark(self.plan.names[i], self.applied_phase)
            self._set_digest(i, digest(objs))

        errors: list[tuple[int, LabError]] = []
        for i, fut in [(i, pool.submit(rest, i)) for i in batch]:
            try:
                fut.result()
            except LabError as e:
                errors.append((i, e))
        if errors:
            first, error = errors[0]
            raise LabError(
                f"{len(errors)} of {len(batch)} clusters failed to apply; first {self.plan.names[first]}: {error}"
            )

    def _set_digest(self, index: int, value: str) -> None:
        patch = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.plan.names[index], "annotations": {DIGEST_ANNOTATION: value}},
        }
        self.mgmt.apply_one(patch, field_manager=DIGEST_MANAGER)

    def run(self) -> None:
        todo = self.plan.todo
        with ThreadPoolExecutor(max_workers=max(1, self.parallel), thread_name_prefix="lab-create") as pool:
            for batch in _chunks(todo, max(1, self.parallel)):
                self.converge_batch(batch, pool)
        if self.plan.complete:  # nothing to apply; their apiservers must still be up
            self.ensure_backings(sorted(self.plan.complete))


def check_stack(mgmt: Client) -> None:
    """The management apiserver answers at once (no retries); otherwise one line saying what to run."""
    probe = Client(mgmt.config, attempts=1, timeout=5.0, parallel=1)
    try:
        probe.request("GET", "/version")
    except (ApiError, LabError, OSError) as e:
        raise LabError(f"the management cluster does not answer ({e}); start it with lab up") from None
    finally:
        probe.close()
