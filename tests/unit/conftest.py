"""Fixtures for unit tests.

`upstream_settings` and `schema_validator` validate objects the way the management kube-apiserver
would: custom resources against the openAPIV3Schema of the real upstream CRDs, core objects against
Kubernetes' own OpenAPI v3 document, both taken from the Go module cache at the configured versions
(lab.gomod downloads them when missing; nothing upstream is committed). The conversion and the rules
JSON Schema lacks live in tests/support/schema.py.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.schema import (
    FORMATS,
    OBJECT_META,
    Schema,
    Validate,
    extension_errors,
    meta_errors,
    to_jsonschema,
)

from lab import crds, gomod
from lab.config import Settings

_CORE_OPENAPI = "api/openapi-spec/v3/api__v1_openapi.json"
#: seconds per unit test (pyproject's default is sized for e2e); the slowest take ~20 s, most well under 1
UNIT_TIMEOUT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def upstream_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Default settings (the pinned versions) with a throwaway home; only the module cache is shared."""
    return Settings(home=tmp_path_factory.mktemp("labhome"))


@pytest.fixture(scope="session")
def schema_validator(upstream_settings: Settings) -> Validate:
    """validate(obj) -> list of errors, empty when the management apiserver would store obj as written."""
    k8s_dir = gomod.component_dir("kubernetes", upstream_settings.versions.kubernetes)
    core = json.loads((Path(k8s_dir) / _CORE_OPENAPI).read_text())["components"]["schemas"]

    def resolve(name: str) -> Schema:
        return core[name]

    @functools.cache
    def compiled(api_version: str, kind: str) -> tuple[jsonschema.Draft202012Validator, Schema]:
        if api_version == "v1":
            raw = core[f"io.k8s.api.core.v1.{kind}"]
        else:
            raw = dict(crds.schema_for(upstream_settings, api_version, kind))
            # A custom resource's metadata is a full ObjectMeta, whatever the CRD says about it.
            raw["properties"] = {**raw["properties"], "metadata": {"$ref": f"#/{OBJECT_META}"}}
        schema = to_jsonschema(raw, resolve)
        jsonschema.Draft202012Validator.check_schema(schema)
        return jsonschema.Draft202012Validator(schema, format_checker=FORMATS), raw

    def validate(obj: dict[str, Any]) -> list[str]:
        kind, name = obj.get("kind", "?"), (obj.get("metadata") or {}).get("name", "?")
        validator, raw = compiled(obj.get("apiVersion", ""), kind)
        errs = [
            f"{kind} {name}: {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
        errs += [f"{kind} {name}: {e}" for e in extension_errors(obj, raw, "", resolve)]
        return errs + meta_errors(obj)

    return validate
