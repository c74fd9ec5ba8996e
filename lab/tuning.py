"""Concurrency and client rate-limit flags of the managers, from one version-aware table.

Why version-aware: the managers parse flags with pflag/flag, and an unknown flag makes them exit at
start-up. CAPI renamed `--clustercachetracker-*` to `--clustercache-*` in v1.9 and removed CABPK's
`--cluster-concurrency` in v1.13 (reference/research/anchors.md §1.1). So every row below names the
minor-version range of the component in which the flag exists, and the upstream default in that
range, read from the component's main.go (`fs.IntVar(..., "<flag>", <default>, ...)`) at the tags
in the research notes and at the pinned versions in the module cache.

Profiles:
- `default`: no flags at all, i.e. upstream defaults. Passing the defaults explicitly would only
  freeze today's numbers into older/newer versions whose defaults differ (CAPI v1.13 raised them).
- `seed`: the Metal3 1000-cluster runs, translated to the configured version. The Nordix patch
  (seed-scripts.md §6) set concurrency 100 on core cluster/machine/machineset/machinedeployment, KCP
  and CABPK, and rest-config QPS 200 / burst 300 in all three CAPI managers (by editing main.go:
  these are `--kube-api-qps/--kube-api-burst` since v1.5). Blog part 3 (anchors.md §1.1 gotcha 3)
  used the same concurrency with QPS 100/200 and also sent CABPK `--cluster-concurrency=100`, which
  has been a no-op since v1.6 and crashes v1.13+, so it is left out. CAPM3 and BMO were not tuned in
  those runs (CAPM3 had no such flags then), so `seed` leaves them at upstream defaults.
- `high`: for runs of 1000+ clusters on a management host with spare CPU; each number is justified
  in the comment on its row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.config import Settings
from lab.errors import LabError

PROFILES = ("default", "seed", "high")

#: Tunable manager -> the lab.versions key whose version selects its flags.
COMPONENTS: dict[str, str] = {
    "capi-manager": "capi",
    "kcp-manager": "capi",
    "cabpk-manager": "capi",
    "capm3-manager": "capm3",
    "bmo-manager": "bmo",
}

Minor = tuple[int, int]


@dataclass(frozen=True)
class Knob:
    """One flag of one manager over a half-open minor-version range [since, until)."""

    component: str
    flag: str
    since: Minor
    until: Minor | None
    default: str
    values: dict[str, str] = field(default_factory=dict)  # profile -> value; absent: not set

    def applies(self, minor: Minor) -> bool:
        return self.since <= minor and (self.until is None or minor < self.until)


def _capi(flag: str, since: Minor, until: Minor | None, default: str, **values: str) -> list[Knob]:
    return [
        Knob(c, flag, since, until, default, values) for c in ("capi-manager", "kcp-manager", "cabpk-manager")
    ]


#: Oldest minor per component the table knows; older ones have no QPS flags to set.
FLOOR: dict[str, Minor] = {"capi": (1, 5), "capm3": (1, 5), "bmo": (0, 5)}

V1_9, V1_13 = (1, 9), (1, 13)

TABLE: tuple[Knob, ...] = (
    # --- CAPI core (main.go) ----------------------------------------------------------------------
    # v1.13 raised cluster to 50 and machine to 100 (PR #13496). seed: the Nordix 100.
    # high: 200, so a 1000-cluster wave is worked on in 5 rounds instead of 10-20.
    Knob("capi-manager", "cluster-concurrency", (1, 5), V1_13, "10", {"seed": "100", "high": "200"}),
    Knob("capi-manager", "cluster-concurrency", V1_13, None, "50", {"seed": "100", "high": "200"}),
    Knob("capi-manager", "machine-concurrency", (1, 5), V1_13, "10", {"seed": "100", "high": "200"}),
    Knob("capi-manager", "machine-concurrency", V1_13, None, "100", {"seed": "100", "high": "200"}),
    # One MachineSet/MachineDeployment per cluster at most here (control-plane-only clusters): 100 is plenty.
    Knob("capi-manager", "machineset-concurrency", (1, 5), V1_13, "10", {"seed": "100", "high": "100"}),
    Knob("capi-manager", "machineset-concurrency", V1_13, None, "50", {"seed": "100", "high": "100"}),
    Knob(
        "capi-manager", "machinedeployment-concurrency", (1, 5), V1_13, "10", {"seed": "100", "high": "100"}
    ),
    Knob("capi-manager", "machinedeployment-concurrency", V1_13, None, "50", {"seed": "100", "high": "100"}),
    # --- KCP (controlplane/kubeadm/main.go) ---------------------------------------------------------
    # KCP reconciles talk to each workload API; the Nordix runs found 100 the useful ceiling at 300
    # clusters (500 gave no gain), high doubles it only for 1000+.
    Knob(
        "kcp-manager", "kubeadmcontrolplane-concurrency", (1, 5), V1_13, "10", {"seed": "100", "high": "200"}
    ),
    Knob(
        "kcp-manager", "kubeadmcontrolplane-concurrency", V1_13, None, "100", {"seed": "100", "high": "200"}
    ),
    # --- CABPK (bootstrap/kubeadm/main.go) ----------------------------------------------------------
    # --cluster-concurrency is deliberately absent: a no-op since v1.6, removed (fatal) in v1.13.
    Knob("cabpk-manager", "kubeadmconfig-concurrency", (1, 5), V1_13, "10", {"seed": "100", "high": "200"}),
    Knob("cabpk-manager", "kubeadmconfig-concurrency", V1_13, None, "100", {"seed": "100", "high": "200"}),
    # --- all three CAPI managers --------------------------------------------------------------------
    # Management-API client. seed: Nordix restConfig.QPS=200/Burst=300. high: 300/500, 1.5x seed
    # for runs past the 1000 clusters seed was made for; raise further only when the manager logs
    # still show "client-side throttling" (the signal the CAPI tuning guide names).
    *_capi("kube-api-qps", (1, 5), V1_13, "20", seed="200", high="300"),
    *_capi("kube-api-qps", V1_13, None, "100", seed="200", high="300"),
    *_capi("kube-api-burst", (1, 5), V1_13, "30", seed="300", high="500"),
    *_capi("kube-api-burst", V1_13, None, "200", seed="300", high="500"),
    # Workload-cluster clients, one limiter per workload cluster. v1.8 called them
    # clustercachetracker-client-*; the seed runs predate both, so seed leaves them alone.
    # high: 50/100, since KCP's health checks plus CAPI's node watches hit each fake API in bursts.
    *_capi("clustercachetracker-client-qps", (1, 8), V1_9, "20", high="50"),
    *_capi("clustercachetracker-client-burst", (1, 8), V1_9, "30", high="100"),
    *_capi("clustercache-client-qps", V1_9, None, "20", high="50"),
    *_capi("clustercache-client-burst", V1_9, None, "30", high="100"),
    # Connections to create in parallel (v1.6-v1.8 clustercachetracker-concurrency, default 10).
    # high: 200 so a restart reconnects 1000 clusters in 5 rounds.
    *_capi("clustercachetracker-concurrency", (1, 6), V1_9, "10", high="200"),
    *_capi("clustercache-concurrency", V1_9, None, "100", high="200"),
    # --- CAPM3 (main.go; defaultConcurrency 10, defaultKubeAPIQPS 20, burst 30, unchanged to v1.13) --
    # high: CAPI v1.13's level (100 concurrency, 100/200 QPS): CAPM3 reconciles one Metal3Machine,
    # Metal3Data and Metal3Cluster per cluster, as many objects as CAPI's Machines, and did not follow
    # CAPI's v1.13 bump. Templates and remediation see few objects and stay at 10.
    Knob("capm3-manager", "metal3machine-concurrency", (1, 5), None, "10", {"high": "100"}),
    Knob("capm3-manager", "metal3cluster-concurrency", (1, 5), None, "10", {"high": "100"}),
    Knob("capm3-manager", "metal3data-concurrency", (1, 5), None, "10", {"high": "100"}),
    Knob("capm3-manager", "metal3datatemplate-concurrency", (1, 5), None, "10", {"high": "50"}),
    Knob("capm3-manager", "metal3labelsync-concurrency", (1, 5), None, "10", {"high": "50"}),
    Knob("capm3-manager", "kube-api-qps", (1, 5), None, "20", {"high": "100"}),
    Knob("capm3-manager", "kube-api-burst", (1, 5), None, "30", {"high": "200"}),
    Knob("capm3-manager", "clustercache-client-qps", V1_9, None, "20", {"high": "50"}),
    Knob("capm3-manager", "clustercache-client-burst", V1_9, None, "30", {"high": "100"}),
    # --- BMO (main.go; Go flag package; concurrency 0 = $BMO_CONCURRENCY, else NumCPU in [2, 8]) ---
    # high: 50 hosts at once; in test mode a reconcile is a few API calls and a requeue, so the
    # limit is the API client, raised to CAPI v1.13's 100/200.
    Knob("bmo-manager", "controller-concurrency", (0, 5), None, "0 (NumCPU, 2..8)", {"high": "50"}),
    Knob("bmo-manager", "kube-api-qps", (0, 5), None, "20", {"high": "100"}),
    Knob("bmo-manager", "kube-api-burst", (0, 5), None, "30", {"high": "200"}),
)


def _check(component: str, profile: str) -> None:
    if component not in COMPONENTS:
        raise LabError(f"unknown component {component!r}; tunable: {', '.join(COMPONENTS)}", exit_code=2)
    if profile not in PROFILES:
        raise LabError(f"unknown tuning profile {profile!r}; use one of {', '.join(PROFILES)}", exit_code=2)


def knobs(settings: Settings, component: str, profile: str) -> list[Knob]:
    """The table rows in force for this component at its configured version and this profile."""
    _check(component, profile)
    key = COMPONENTS[component]
    minor = settings.versions.minor(key)
    if profile != "default" and minor < FLOOR[key]:
        floor = ".".join(map(str, FLOOR[key]))
        have = getattr(settings.versions, key)
        raise LabError(f"tuning profile {profile!r} needs {key} v{floor}+ (configured {have})", exit_code=2)
    return [k for k in TABLE if k.component == component and k.applies(minor) and profile in k.values]


def flags(settings: Settings, component: str, profile: str) -> list[str]:
    """Command-line flags for one manager, `--name=value`, valid for its configured version."""
    return [f"--{k.flag}={k.values[profile]}" for k in knobs(settings, component, profile)]


def env(component: str, profile: str) -> dict[str, str]:
    """Environment for one manager. Empty today: BMO v0.5+ takes --controller-concurrency, which wins
    over BMO_CONCURRENCY, so the flag is the one knob."""
    _check(component, profile)
    return {}


def describe(settings: Settings, profile: str) -> list[tuple[str, str, str, str]]:
    """(component, flag, upstream default, value) for every flag the profile sets."""
    if profile not in PROFILES:
        _check("capi-manager", profile)
    return [
        (c, f"--{k.flag}", k.default, k.values[profile])
        for c in COMPONENTS
        for k in knobs(settings, c, profile)
    ]


def merge_args(args: list[str], new: list[str]) -> list[str]:
    """args with every `--flag=` in new replacing an existing `--flag=`/`-flag=`, so re-tuning is
    idempotent (appending again would leave duplicates that pflag resolves to the last)."""
    names = {f.split("=", 1)[0].lstrip("-") for f in new}
    kept = [a for a in args if not (a.startswith("-") and a.split("=", 1)[0].lstrip("-") in names)]
    return kept + new


def apply_profile(args: list[str], settings: Settings, component: str, profile: str) -> list[str]:
    """A manager's args switched to a profile: every flag the table manages for this component and
    version is dropped first, so going back to `default` really restores upstream defaults."""
    _check(component, profile)
    minor = settings.versions.minor(COMPONENTS[component])
    managed = {k.flag for k in TABLE if k.component == component and k.applies(minor)}
    kept = [a for a in args if not (a.startswith("-") and a.split("=", 1)[0].lstrip("-") in managed)]
    return kept + flags(settings, component, profile)


#: kind mode: (namespace, Deployment) of each manager as clusterctl and BMO's kustomize config
#: install them (namePrefix + "controller-manager"); the manager is container 0 in each.
DEPLOYMENTS: dict[str, tuple[str, str]] = {
    "capi-manager": ("capi-system", "capi-controller-manager"),
    "kcp-manager": ("capi-kubeadm-control-plane-system", "capi-kubeadm-control-plane-controller-manager"),
    "cabpk-manager": ("capi-kubeadm-bootstrap-system", "capi-kubeadm-bootstrap-controller-manager"),
    "capm3-manager": ("capm3-system", "capm3-controller-manager"),
    "bmo-manager": ("baremetal-operator-system", "baremetal-operator-controller-manager"),
}

#: the manager is container 0 of each Deployment (lab.kindmgmt.patches checks it by name)
CONTAINER_PATH = "/spec/template/spec/containers/0"
ARGS_PATH = f"{CONTAINER_PATH}/args"


def deployment_patch(args: list[str], new: list[str]) -> list[dict[str, object]]:
    """RFC 6902 patch for `kubectl patch deployment --type=json`: test that args are still what was
    read, then replace them with new, so a concurrent edit fails instead of being overwritten."""
    return [
        {"op": "test", "path": ARGS_PATH, "value": list(args)},
        {"op": "replace", "path": ARGS_PATH, "value": list(new)},
    ]
