"""The two forms `lab render` prints, both accepted by `kubectl apply -f -`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

#: libyaml's emitter: the pure-Python one costs ~30 ms of CPU per cluster (benchmarks/render_bench.py).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    """A multi-document YAML stream, keys in the order written (apiVersion, kind, metadata, ...)."""
    return yaml.dump_all(
        list(objects), Dumper=_DUMPER, sort_keys=False, default_flow_style=False, explicit_start=True
    )


def to_list(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A v1 List, the JSON form kubectl applies item by item."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": list(objects)}


def to_json(objects: Iterable[dict[str, Any]]) -> str:
    return json.dumps(to_list(objects), indent=2) + "\n"
