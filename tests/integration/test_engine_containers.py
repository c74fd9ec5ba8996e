"""lab.engine.Client's container calls (what building kind's node image and configuring its nodes use)
against the session's real engine: exec with its exit code and output, put_archive, commit with
changes, and one save of several images."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.parse
from pathlib import Path

from support.docker import Engine


def test_exec_put_archive_commit_and_save_all(docker_engine: Engine, base_image: str, tmp_path: Path) -> None:
    client = docker_engine.client
    body = {"Image": base_image, "Entrypoint": ["sleep"], "Cmd": ["infinity"]}
    cid = client.json("POST", "/containers/create", body=body)["Id"]
    try:
        client.json("POST", f"/containers/{cid}/start")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = b"hello from put_archive\n"
            info = tarfile.TarInfo("greeting")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        client.put_archive(cid, "/tmp", buf.getvalue())
        code, out = client.exec(cid, ["sh", "-c", "cat /tmp/greeting; echo to-stderr >&2; exit 3"])
        assert code == 3
        # stdout and stderr are two pipes the engine copies onto one stream: their order is not kept
        # (seen in CI: "to-stderr" came first)
        assert sorted(out.splitlines()) == ["hello from put_archive", "to-stderr"]
        assert client.exec(cid, ["true"]) == (0, "")

        ref = "lab.local/committed:test"
        client.commit(cid, ref, ['ENTRYPOINT ["/bin/cat"]', "CMD []", "ENV X=1"])
        config = client.json("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")["Config"]
        assert config["Entrypoint"] == ["/bin/cat"] and not config.get("Cmd") and "X=1" in config["Env"]
    finally:
        client.json("DELETE", f"/containers/{cid}", {"force": "1"})

    archive = tmp_path / "two.tar"
    client.save_all([base_image, ref], archive)
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert sorted(tag for m in manifest for tag in m["RepoTags"]) == sorted([base_image, ref])
    client.json("DELETE", f"/images/{urllib.parse.quote(ref, safe='')}")
