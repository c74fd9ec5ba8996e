"""Validate objects the way a kube-apiserver would, with JSON Schema: a converter from Kubernetes'
OpenAPI v3 flavour to JSON Schema draft 2020-12, plus the structural-schema rules the apiserver applies
and JSON Schema lacks:
- an object schema with `properties` and no `x-kubernetes-preserve-unknown-fields` prunes unknown
  fields, so it becomes additionalProperties: false ("no field the apiserver would prune");
- `x-kubernetes-int-or-string`, `nullable`, formats int32/int64/byte/date-time;
- `x-kubernetes-list-type` map/set uniqueness;
- CEL `x-kubernetes-validations`: the rules lab's objects reach are implemented; any other rule on a
  field an object sets is reported as unhandled, so a new upstream rule is never skipped silently;
- ObjectMeta's name, label and annotation rules, which the apiserver enforces in code.

tests/unit/conftest.py builds the `schema_validator` fixture from these.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema

Schema = dict[str, Any]
Validate = Callable[[dict[str, Any]], list[str]]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
#: The one CEL rule shape lab's objects reach (kubeletExtraArgs/extraArgs): names are unique.
_UNIQUE_NAMES = "self.all(x, self.exists_one(y, x.name == y.name))"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# --- OpenAPI v3 (Kubernetes flavour) -> JSON Schema -------------------------------------------------

_COPY = (
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "format",
    "required",
)


def to_jsonschema(
    s: Schema, resolve: Callable[[str], Schema] | None = None, seen: frozenset[str] = frozenset()
) -> Schema:
    """Convert one Kubernetes OpenAPI schema node (and its children) to JSON Schema draft 2020-12."""
    if "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[-1]
        if resolve is None:
            raise ValueError(f"unresolvable $ref {s['$ref']}")
        # Recursive types (JSONSchemaProps) are not reached by lab's objects; stay permissive there.
        return {} if name in seen else to_jsonschema(resolve(name), resolve, seen | {name})
    out: Schema = {k: s[k] for k in _COPY if k in s}
    if s.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" in s:
        out["type"] = [s["type"], "null"] if s.get("nullable") else s["type"]
    if s.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if s.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s:
            out.setdefault("allOf", []).append({key: [to_jsonschema(x, resolve, seen) for x in s[key]]})
    if "not" in s:
        out["not"] = to_jsonschema(s["not"], resolve, seen)
    if "items" in s:
        out["items"] = to_jsonschema(s["items"], resolve, seen)
    props = dict(s.get("properties") or {})
    if s.get("x-kubernetes-embedded-resource"):
        props = {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            **props,
        }
    if props:
        out["properties"] = {k: to_jsonschema(v, resolve, seen) for k, v in props.items()}
    if isinstance(s.get("additionalProperties"), dict):
        out["additionalProperties"] = to_jsonschema(s["additionalProperties"], resolve, seen)
    elif "additionalProperties" in s:
        out["additionalProperties"] = s["additionalProperties"]
    elif props and not s.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False  # the apiserver would prune anything else
    return out


def _is_int(lo: int, hi: int) -> Callable[[object], bool]:
    def check(v: object) -> bool:
        return not isinstance(v, int) or isinstance(v, bool) or lo <= v <= hi

    return check


def _is_base64(v: object) -> bool:
    if not isinstance(v, str):
        return True
    try:
        base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_datetime(v: object) -> bool:
    if not isinstance(v, str):
        return True
    try:
        return dt.datetime.fromisoformat(v).tzinfo is not None and "T" in v
    except ValueError:
        return False


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("int32")(_is_int(-(2**31), 2**31 - 1))
FORMATS.checks("int64")(_is_int(-(2**63), 2**63 - 1))
FORMATS.checks("byte")(_is_base64)
FORMATS.checks("date-time")(_is_datetime)


# --- what JSON Schema cannot say ------------------------------------------------------------------


def extension_errors(
    value: Any, s: Schema, path: str, resolve: Callable[[str], Schema] | None = None
) -> list[str]:
    """List-type uniqueness and CEL rules, walking the value alongside its (unconverted) schema."""
    if "$ref" in s and resolve is not None:
        s = resolve(s["$ref"].rsplit("/", 1)[-1])
    errs: list[str] = []
    for sub in s.get("allOf") or []:  # Kubernetes' own document wraps $refs in allOf
        errs += extension_errors(value, sub, path, resolve)
    for rule in s.get("x-kubernetes-validations") or []:
        if rule["rule"] == _UNIQUE_NAMES:
            names = [x.get("name") for x in value]
            if len(names) != len(set(names)):
                errs.append(f"{path}: names must be unique ({rule.get('message', '')})")
        else:
            errs.append(
                f"{path}: unhandled CEL rule {rule['rule']!r}; check it by hand and teach tests/support/schema.py"
            )
    if isinstance(value, list):
        list_type = s.get("x-kubernetes-list-type")
        if list_type == "set" and len({json.dumps(x, sort_keys=True) for x in value}) != len(value):
            errs.append(f"{path}: items of a set must be unique")
        if list_type == "map":
            keys = [
                tuple(json.dumps(x.get(k)) for k in s.get("x-kubernetes-list-map-keys", [])) for x in value
            ]
            if len(keys) != len(set(keys)):
                errs.append(f"{path}: map-list keys must be unique")
        for i, item in enumerate(value):
            errs += extension_errors(item, s.get("items") or {}, f"{path}[{i}]", resolve)
    elif isinstance(value, dict):
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        for k, v in value.items():
            child = props.get(k, extra if isinstance(extra, dict) else None)
            if child is not None:
                errs += extension_errors(v, child, f"{path}.{k}", resolve)
    return errs


def _qualified_key_errors(key: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    errs = []
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        errs.append(f"key prefix {prefix!r} is not a DNS subdomain")
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        errs.append(f"key name {name!r} is not a qualified name")
    return errs


def meta_errors(obj: dict[str, Any]) -> list[str]:
    """ObjectMeta rules the apiserver enforces in code rather than in the OpenAPI document."""
    meta = obj.get("metadata") or {}
    kind, name = obj.get("kind"), meta.get("name", "")
    errs = []
    if kind == "Namespace":
        if len(name) > 63 or not _DNS_LABEL.match(name):
            errs.append(f"name {name!r} is not a DNS label")
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        errs.append(f"name {name!r} is not a DNS subdomain")
    if kind != "Namespace" and not _DNS_LABEL.match(meta.get("namespace", "")):
        errs.append(f"namespace {meta.get('namespace')!r} is missing or not a DNS label")
    for key, value in (meta.get("labels") or {}).items():
        errs += [f"label {key!r}: {e}" for e in _qualified_key_errors(key)]
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errs.append(f"label {key!r}: value {value!r} is not a valid label value")
    for key in meta.get("annotations") or {}:
        errs += [f"annotation {key!r}: {e}" for e in _qualified_key_errors(key)]
    out = [f"{kind} {name}: metadata: {e}" for e in errs]
    if "status" in obj:
        out.append(f"{kind} {name}: status is set; the apiserver drops it on create (status subresource)")
    return out
