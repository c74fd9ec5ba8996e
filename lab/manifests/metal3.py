"""Metal3 objects of one workload cluster: Metal3Cluster, machine and data templates, BareMetalHost.

Where the image goes. The image is set on the Metal3MachineTemplates, not on the BareMetalHost. A host
with `spec.image` and `online: true` is provisioned by BMO on its own as soon as it is available (BMO
v1alpha1 BareMetalHost.NeedsProvisioning), ends `provisioned` with no consumer, and CAPM3 only ever
claims hosts that are `available` or `ready` (CAPM3 baremetal/metal3machine_manager.go chooseHost):
the cluster would never get its machine. CAPM3 writes the template's image onto the host when it
claims it (setHostSpec), which is when BMO in test mode "provisions" it.
"""

from __future__ import annotations

from typing import Any

from lab import naming
from lab.manifests import names, workers
from lab.manifests.common import cluster_labels, obj

#: What CAPM3 asks BMO to write to the disk. BMO in test mode never downloads it, so the host is
#: reserved (.invalid never resolves) and the checksum is the SHA-256 of the empty file; both still
#: pass BMO's webhook (a parseable URL, a checksum with a known type).
IMAGE: dict[str, str] = {
    "url": "http://images.scale-lab.invalid/node.raw",
    "checksum": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "checksumType": "sha256",
    "diskFormat": "raw",
}

#: IMAGE as a BareMetalHost's spec.image spells it (BMO's Image: `format`, where CAPM3's template
#: says `diskFormat`).
HOST_IMAGE: dict[str, str] = {
    "url": IMAGE["url"],
    "checksum": IMAGE["checksum"],
    "checksumType": IMAGE["checksumType"],
    "format": IMAGE["diskFormat"],
}


def metal3_cluster(cluster: str, index: int, endpoint: tuple[str, int]) -> dict[str, Any]:
    host, port = endpoint
    return obj(
        "Metal3Cluster",
        cluster,
        names.namespace(cluster),
        cluster_labels(cluster, index),
        spec={
            "controlPlaneEndpoint": {"host": host, "port": port},
            # false: CAPM3 sets the Node's providerID itself, finding the Node by its metal3.io/uuid
            # label (there is no cloud provider in a fake cluster to do it).
            "cloudProviderEnabled": False,
        },
    )


def data_template(cluster: str, index: int, name: str) -> dict[str, Any]:
    """No metaData/networkData: nothing boots, so no IP pools are needed."""
    return obj(
        "Metal3DataTemplate",
        name,
        names.namespace(cluster),
        cluster_labels(cluster, index),
        spec={"clusterName": cluster},
    )


def machine_template(
    cluster: str, index: int, name: str, data_template_name: str, role: str
) -> dict[str, Any]:
    """Its Machines claim only hosts of `role` (lab.manifests.workers: why)."""
    return obj(
        "Metal3MachineTemplate",
        name,
        names.namespace(cluster),
        cluster_labels(cluster, index),
        spec={
            "nodeReuse": False,
            "template": {
                "spec": {
                    "automatedCleaningMode": "metadata",
                    "dataTemplate": {"name": data_template_name},
                    "hostSelector": workers.selector(role),
                    "image": dict(IMAGE),
                }
            },
        },
    )


def baremetal_host(cluster: str, index: int, slot: int = 0) -> dict[str, Any]:
    """Control-plane host `slot` (0, or 1: an upgrade's spare, lab.manifests.controlplane), with a BMC
    address and boot MAC unique to the index and slot (see lab.naming)."""
    return host(
        names.control_plane_host(cluster, slot),
        names.namespace(cluster),
        {**cluster_labels(cluster, index), workers.ROLE_LABEL: workers.CONTROL_PLANE},
        naming.control_plane_mac(index, slot),
        naming.control_plane_bmc_address(index, slot),
        names.control_plane_bmc_secret(cluster, slot),
    )


def worker_host(cluster: str, index: int, slot: int) -> dict[str, Any]:
    """Worker host `slot` (1..W), with its own MAC and BMC address (lab.naming.worker_mac)."""
    return host(
        names.worker_host(cluster, slot),
        names.namespace(cluster),
        {**cluster_labels(cluster, index), workers.ROLE_LABEL: workers.WORKER},
        naming.worker_mac(index, slot),
        naming.worker_bmc_address(index, slot),
        names.worker_bmc_secret(cluster, slot),
    )


def host(
    name: str,
    namespace: str,
    labels: dict[str, str],
    mac: str,
    bmc_address: str,
    credentials: str,
    image: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A BareMetalHost that BMO in test mode registers, inspects and makes available; with `image`
    it goes on to provision it (module docstring: why the clusters' hosts get none)."""
    spec: dict[str, Any] = {
        "online": True,
        "bootMACAddress": mac,
        "bmc": {"address": bmc_address, "credentialsName": credentials},
    }
    if image is not None:
        spec["image"] = dict(image)
    return obj("BareMetalHost", name, namespace, labels, spec=spec)
