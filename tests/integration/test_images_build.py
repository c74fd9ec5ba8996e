"""`lab images build` into the session's real engine: one controller image from the cached binary,
tagged as the upstream manifest names it, runnable, saved as an archive that makes a second build
free, and loaded from that archive into an engine that lost the image."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import yaml
from support.docker import Engine, run_container

from lab import gomod
from lab.config import Settings, default_home

IMAGE = "ipam"  # the smallest controller (54 MB)


def _manifest_image(version: str) -> str:
    """The image IPAM's own config/default names, read here without lab.images."""
    root = gomod.module_dir("github.com/metal3-io/ip-address-manager", version)
    patch = yaml.safe_load((root / "config/default/manager_image_patch.yaml").read_text())
    return str(patch["spec"]["template"]["spec"]["containers"][0]["image"])


def test_a_controller_image_builds_runs_and_is_free_the_second_time(
    run_lab, lab_env, docker_engine: Engine, base_image: str
) -> None:
    shared = Settings(home=default_home())
    env = {**docker_engine.env(), "LAB_BIN_CACHE": str(shared.bin_dir)}
    version = Settings().versions.ipam

    def build() -> dict[str, object]:
        r = run_lab("images", "build", IMAGE, "-o", "json", env=env, timeout=1200)
        assert r.returncode == 0, r.stderr
        [row] = json.loads(r.stdout)
        print(f"lab images build {IMAGE}: {row['action']} in {row['seconds']:.1f}s")
        return dict(row)

    cold = build()
    ref = str(cold["reference"])
    assert cold["action"] == "built"  # a new lab home has no archive
    assert ref == f"quay.io/metal3-io/ip-address-manager:{version}"
    assert _manifest_image(version).rsplit(":", 1)[0] == ref.rsplit(":", 1)[0]
    archive = Path(str(cold["archive"]))
    assert (
        archive == Path(lab_env["LAB_HOME"]) / "images" / "ipam" / version / "ipam.tar"
        and archive.stat().st_size > 50e6
    )

    warm = build()
    assert warm["action"] == "present" and float(str(warm["seconds"])) < float(str(cold["seconds"]))

    client = docker_engine.client
    inspect = client.json("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")
    assert inspect["Config"]["Entrypoint"] == ["/manager"] and inspect["Config"]["User"] == "65532:65532"
    ran = run_container(client, ref, ["--help"])
    assert ran.exit_code == 0, ran
    assert "--webhook-port" in ran.stdout + ran.stderr  # IPAM's own flags, so its binary ran

    # an engine without the image (a fresh one, a pruned one) gets it from the archive, not a build
    client.json("DELETE", f"/images/{urllib.parse.quote(ref, safe='')}")
    reloaded = build()
    assert reloaded["action"] == "loaded"
    assert client.image_id(ref) == inspect["Id"]
