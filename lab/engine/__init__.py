"""A Docker engine for kind mode: the Docker API client lab uses, a dockerd lab can start with every path
in one directory, and the runc wrapper hosts without CAP_SYS_RESOURCE need.

Why lab starts an engine at all: kind mode needs one, and the hosts this lab runs on (CI runners,
containers, build VMs) often have Debian's docker.io installed but no init system to start it, and a
capability bounding set without CAP_SYS_RESOURCE, on which every `--privileged` container (every kind
node) fails with `unable to apply caps: operation not permitted`. `lab engine start` handles both.
"""

from lab.engine.api import Client, EngineError, EngineInfo, default_host, probe
from lab.engine.caps import missing_capabilities
from lab.engine.daemon import Layout, dockerd_argv, start, stop

__all__ = [
    "Client",
    "EngineError",
    "EngineInfo",
    "Layout",
    "default_host",
    "dockerd_argv",
    "missing_capabilities",
    "probe",
    "start",
    "stop",
]
