"""The version table's upgrade rule (`lab upgrade-clusters --to`): what KCP and CAPI support from
a version, everything else one UsageError (exit 2) naming why."""

from __future__ import annotations

import pytest

from lab import versions
from lab.errors import UsageError

CAPI = versions.COMPONENTS["capi"].default
PINNED = versions.COMPONENTS["kubernetes"].default


@pytest.mark.parametrize(
    ("current", "target"),
    [("v1.35.4", "v1.35.5"), ("v1.35.4", "v1.35.10"), ("v1.35.4", "v1.36.0"), ("v1.35.4", "v1.36.3")],
)
def test_a_patch_or_the_next_minor_is_supported(current: str, target: str) -> None:
    got = versions.check_upgrade(current, target, CAPI)
    assert got == versions.parse_release(target)


def test_the_pinned_kubernetes_has_a_supported_upgrade() -> None:
    """The e2e test upgrades to the next minor's first release: the table must allow it."""
    major, minor, _ = versions.parse_release(PINNED) or (0, 0, 0)
    assert versions.check_upgrade(PINNED, f"v{major}.{minor + 1}.0", CAPI)


@pytest.mark.parametrize(
    ("current", "target", "says"),
    [
        ("v1.35.4", "1.35.5", "must be a Kubernetes release vX.Y.Z"),
        ("v1.35.4", "v1.35", "must be a Kubernetes release vX.Y.Z"),
        ("v1.35.4", "v1.36.0-rc.1", "must be a Kubernetes release vX.Y.Z"),
        ("v1.35.4", "v1.36.01", "must be a Kubernetes release vX.Y.Z"),
        ("v1.35.4", "", "must be a Kubernetes release vX.Y.Z"),
        ("v1.35.4", "v1.35.4", "is not newer than v1.35.4"),
        ("v1.35.4", "v1.35.3", "is not newer than v1.35.4"),
        ("v1.35.4", "v1.34.9", "is not newer"),
        ("v1.35.4", "v2.0.0", "changes the major version"),
        (
            "v1.35.4",
            "v1.37.0",
            "skips a minor from v1.35.4: KCP upgrades one minor at a time (v1.36.x first)",
        ),
        ("v1.36.2", "v1.37.0", f"CAPI {CAPI} supports workload clusters up to Kubernetes v1.36"),
    ],
)
def test_everything_else_is_one_usage_error(current: str, target: str, says: str) -> None:
    with pytest.raises(UsageError) as e:
        versions.check_upgrade(current, target, CAPI)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == 2


def test_a_capi_without_a_row_refuses_rather_than_guesses() -> None:
    with pytest.raises(UsageError, match=r"no upgrade table for CAPI v1\.99\.0"):
        versions.check_upgrade("v1.35.4", "v1.35.5", "v1.99.0")
