"""API versions lab writes, one place.

CAPI v1.13 and CAPM3 v1.13 serve v1beta2 as their storage version (v1beta1 is served but deprecated);
BMO v0.13 serves only metal3.io/v1alpha1. tests/unit/test_manifests.py checks each entry against the
served and storage versions of the CRDs in the module cache at the configured component versions.
"""

from __future__ import annotations

CAPI_GROUP = "cluster.x-k8s.io"
CONTROLPLANE_GROUP = "controlplane.cluster.x-k8s.io"
BOOTSTRAP_GROUP = "bootstrap.cluster.x-k8s.io"
INFRA_GROUP = "infrastructure.cluster.x-k8s.io"
BMO_GROUP = "metal3.io"

#: kind -> apiVersion of every object lab renders.
API_VERSIONS: dict[str, str] = {
    "Namespace": "v1",
    "Secret": "v1",
    "Cluster": f"{CAPI_GROUP}/v1beta2",
    "MachineDeployment": f"{CAPI_GROUP}/v1beta2",
    "KubeadmControlPlane": f"{CONTROLPLANE_GROUP}/v1beta2",
    "KubeadmConfigTemplate": f"{BOOTSTRAP_GROUP}/v1beta2",
    "Metal3Cluster": f"{INFRA_GROUP}/v1beta2",
    "Metal3MachineTemplate": f"{INFRA_GROUP}/v1beta2",
    "Metal3DataTemplate": f"{INFRA_GROUP}/v1beta2",
    "BareMetalHost": f"{BMO_GROUP}/v1alpha1",
}


def group_of(kind: str) -> str:
    """The API group of a kind lab renders ('' for the core group)."""
    return API_VERSIONS[kind].rpartition("/")[0]
