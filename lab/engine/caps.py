"""Linux capabilities by number, and which ones this host's bounding set lacks.

A capability missing from the bounding set can never be raised again by any child, so a container
runtime asked for it (Docker asks for all of them for `--privileged`) fails. The names are the OCI
runtime spec's; the numbers are the kernel's (include/uapi/linux/capability.h).
"""

from __future__ import annotations

from pathlib import Path

NAMES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)


def missing_from(mask: int, last_cap: int) -> list[str]:
    """Pure: the names of capabilities 0..last_cap whose bit is clear in `mask`."""
    return [NAMES[n] for n in range(min(last_cap, len(NAMES) - 1) + 1) if not mask >> n & 1]


def bounding_set(status: Path = Path("/proc/self/status")) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise ValueError(f"no CapBnd line in {status}")


def last_cap(path: Path = Path("/proc/sys/kernel/cap_last_cap")) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return len(NAMES) - 1


def missing_capabilities() -> list[str]:
    """Capabilities this kernel knows that lab's own bounding set lacks (e.g. ['CAP_SYS_RESOURCE']):
    a container started from here can hold none of them."""
    return missing_from(bounding_set(), last_cap())
