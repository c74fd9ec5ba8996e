from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from lab import naming
from lab.backing.local import LocalBacking
from lab.config import Settings
from lab.errors import LabError


def test_an_address_held_by_another_process_is_refused_naming_it(tmp_path: Path) -> None:
    index = 40000 + os.getpid() % 20000  # a loopback address no other test uses
    host, port = naming.local_endpoint(index)
    backing = LocalBacking(Settings(home=tmp_path / "home"))
    name = naming.cluster_name("test", index)
    with socket.socket() as s:
        s.bind((host, port))
        s.listen()
        with pytest.raises(LabError, match=rf"{host}:{port} for {name} is in use by pid {os.getpid()}"):
            backing.preflight([(name, index)])
    backing.preflight([(name, index)])  # free again: no error
