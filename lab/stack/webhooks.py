"""CRDs and admission webhooks of the managers, rewritten to reach them on 127.0.0.1 (as
controller-runtime's envtest does), from the upstream files in the Go module cache.

- CRDs: each kustomization under the manager's CRD dirs lists `patches/webhook_in_<plural>.yaml`
  for the CRDs upstream serves with a conversion webhook; exactly those get
  `spec.conversion.strategy: Webhook` with `url: https://127.0.0.1:<manager webhook port>/convert`
  and the lab webhook CA. A commented-out patch (BMO's) stays off, as upstream ships it.
- Webhook configurations: `config/webhook/manifests.yaml` of each manager, renamed
  `<manager>-<upstream name>` (kustomize's namePrefix does the same job upstream), with every
  `clientConfig.service` replaced by `url: https://127.0.0.1:<port><path>` + caBundle.
Everything here is a pure function of (settings, module cache): the result is applied with SSA.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from lab import crds, gomod
from lab.config import Settings
from lab.errors import LabError
from lab.stack import managers, ports
from lab.stack.managers import Manager

Obj = dict[str, Any]


def _read_yaml_docs(path: Path) -> list[Obj]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as e:
        raise LabError(f"cannot read {path}: {e}") from e


def conversion_patched_crds(crd_dir: Path) -> set[str]:
    """Names of the CRDs whose conversion-webhook patch the kustomization enables."""
    kustomization = yaml.safe_load((crd_dir / "kustomization.yaml").read_text()) or {}
    names: set[str] = set()
    for entry in kustomization.get("patches") or kustomization.get("patchesStrategicMerge") or []:
        rel = entry.get("path") if isinstance(entry, dict) else entry
        if not rel or "webhook_in_" not in rel:
            continue
        for doc in _read_yaml_docs(crd_dir / rel):
            if doc.get("spec", {}).get("conversion", {}).get("strategy") == "Webhook":
                names.add(doc["metadata"]["name"])
    return names


def local_url(port: int, path: str) -> str:
    return f"https://{ports.LOOPBACK}:{port}{path}"


def with_conversion(crd: Obj, url: str, ca_bundle: bytes) -> Obj:
    out = copy.deepcopy(crd)
    out["spec"]["conversion"] = {
        "strategy": "Webhook",
        "webhook": {
            "conversionReviewVersions": ["v1"],
            "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_bundle).decode()},
        },
    }
    return out


def localize_webhook_configuration(doc: Obj, manager: str, port: int, ca_bundle: bytes) -> Obj:
    out = copy.deepcopy(doc)
    out["metadata"] = {
        "name": f"{manager}-{doc['metadata']['name']}",
        "labels": {"app.kubernetes.io/managed-by": "lab"},
    }
    for hook in out.get("webhooks") or []:
        service = hook["clientConfig"].get("service") or {}
        hook["clientConfig"] = {
            "url": local_url(port, service.get("path", "/")),
            "caBundle": base64.b64encode(ca_bundle).decode(),
        }
    return out


def manager_crds(settings: Settings, m: Manager, ca_bundle: bytes) -> list[Obj]:
    root = gomod.component_dir(m.component, getattr(settings.versions, m.component))
    port = ports.manager(settings, m.name).webhook
    out = []
    for sub in m.crd_dirs:
        convert = conversion_patched_crds(root / sub)
        for crd in crds.load_dir(root / sub):
            if crd["metadata"]["name"] in convert:
                crd = with_conversion(crd, local_url(port, "/convert"), ca_bundle)
            out.append(crd)
    return out


def manager_webhooks(settings: Settings, m: Manager, ca_bundle: bytes) -> list[Obj]:
    root = gomod.component_dir(m.component, getattr(settings.versions, m.component))
    port = ports.manager(settings, m.name).webhook
    return [
        localize_webhook_configuration(doc, m.name, port, ca_bundle)
        for rel in m.webhook_manifests
        for doc in _read_yaml_docs(root / rel)
        if doc.get("kind") in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    ]


def all_crds(
    settings: Settings, ca_bundle: bytes, selected: tuple[Manager, ...] = managers.MANAGERS
) -> list[Obj]:
    return [crd for m in selected for crd in manager_crds(settings, m, ca_bundle)]


def all_webhooks(
    settings: Settings, ca_bundle: bytes, selected: tuple[Manager, ...] = managers.MANAGERS
) -> list[Obj]:
    return [w for m in selected for w in manager_webhooks(settings, m, ca_bundle)]


def digest(objects: list[Obj]) -> str:
    """A stable hash of what would be applied, so an unchanged stack skips the apply."""
    return hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()[:16]
