"""The supervised simulator (`python -m lab.clusters.simulate`, program `nodesim`): what the processes
of a real workload cluster and of its etcd's manager would write, and lab has no process for.

- lab.nodesim: each provisioned host's Node, mirror pods and kubeadm-config in its workload API;
- lab.clusters.etcd_health: KCP's EtcdClusterHealthy from each cluster's etcd tenant.

Both read the management cluster through the lab home's admin kubeconfig, each with its own client.
"""

from __future__ import annotations

import logging
import sys
import threading

from lab import config, nodesim
from lab.backing import hostmux
from lab.clusters import etcd_health
from lab.errors import LabError
from lab.kube import Client

log = logging.getLogger("lab.simulate")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    try:
        settings = config.load()
        with (
            Client.from_kubeconfig(settings.admin_kubeconfig) as sim_client,
            Client.from_kubeconfig(settings.admin_kubeconfig) as health_client,
        ):
            judge = etcd_health.backing_judge(settings)
            threading.Thread(
                target=etcd_health.loop, args=(health_client, judge, stop), name="etcd-health", daemon=True
            ).start()
            nodesim.run(settings, sim_client, stop=stop, host_mux_starts=lambda: hostmux.started(settings))
    except LabError as e:  # supervisord restarts it; one line in its log says why
        log.error("%s", e)
        sys.exit(e.exit_code or 1)
    finally:
        stop.set()


if __name__ == "__main__":
    main()
