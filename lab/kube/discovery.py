"""Discovery: which kinds a server serves, from the aggregated endpoint (apidiscovery.k8s.io/v2: all
groups in two requests) or, for servers that do not serve it, per group-version; pure parsing here,
the requests in Client.discover."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

#: Accept header asking for aggregated discovery, with the legacy document as the fallback.
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        return base + (f"/{quote(name, safe='')}" if name else "")


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def parse_aggregated(doc: Mapping[str, Any]) -> list[Resource]:
    """Resources of an APIGroupDiscoveryList (apidiscovery.k8s.io/v2), subresources left out."""
    out = []
    for group in doc.get("items") or []:
        gname = group.get("metadata", {}).get("name", "")
        for ver in group.get("versions") or []:
            for res in ver.get("resources") or []:
                kind = (res.get("responseKind") or {}).get("kind")
                if kind:
                    namespaced = res.get("scope") == "Namespaced"
                    out.append(Resource(gname, ver["version"], kind, res["resource"], namespaced))
    return out


def parse_resource_list(group_version: str, doc: Mapping[str, Any]) -> list[Resource]:
    """Resources of a legacy APIResourceList, subresources (`pods/status`) left out."""
    group, version = split_api_version(group_version)
    return [
        Resource(group, version, r["kind"], r["name"], bool(r.get("namespaced")))
        for r in doc.get("resources") or []
        if "/" not in r["name"]
    ]
