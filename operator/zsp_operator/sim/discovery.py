"""Non-resource endpoints: /version, discovery documents, health checks, a minimal OpenAPI v3.

The OpenAPI v3 documents list each resource's PATCH operation with its
`fieldValidation` parameter and no schemas: enough for kubectl to leave validation to
the server (`kubectl create/apply -f`), not enough for `kubectl explain`. There is no
/openapi/v2 (kubectl asks for it as protobuf).
"""

from __future__ import annotations

import platform
from typing import Any

from zsp_operator.sim import errors as E
from zsp_operator.sim.resources import Registry

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-zsp-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": f"{platform.system().lower()}/{platform.machine().lower()}",
}

_HEALTH = ("/healthz", "/livez", "/readyz")


def serve_non_resource(registry: Registry, path: str, server_address: str) -> Any:
    """The document at `path`; raises a 404 Status for anything else."""
    path = path.rstrip("/") or "/"
    parts = [part for part in path.split("/") if part]
    if path in _HEALTH or path.startswith(tuple(f"{health}/" for health in _HEALTH)):
        return "ok"
    if path == "/version":
        return VERSION
    if path == "/api":
        return registry.api_versions(server_address)
    if path == "/apis":
        return registry.api_group_list()
    if path == "/openapi/v3":
        return openapi_v3_root(registry)
    found: Any = None
    if path.startswith("/openapi/v3/"):
        found = openapi_v3_group_version(registry, path.removeprefix("/openapi/v3/"))
    if len(parts) == 2 and parts[0] == "api":
        found = registry.api_resource_list("", parts[1])
    elif len(parts) == 2 and parts[0] == "apis":
        group = registry.api_group(parts[1])
        found = {"kind": "APIGroup", "apiVersion": "v1", **group} if group else None
    elif len(parts) == 3 and parts[0] == "apis":
        found = registry.api_resource_list(parts[1], parts[2])
    if found is None:
        raise E.path_not_found()
    return found


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_root(registry: Registry) -> dict[str, Any]:
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            gv_path = _gv_path(group, version)
            paths[gv_path] = {"serverRelativeURL": f"/openapi/v3/{gv_path}"}
    return {"paths": paths}


def openapi_v3_group_version(registry: Registry, gv_path: str) -> dict[str, Any] | None:
    parts = gv_path.split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    types = [t for t in registry.all() if (t.group, t.version) == (group, version)]
    if not types:
        return None
    paths: dict[str, Any] = {}
    for rtype in types:
        scope = "/namespaces/{namespace}" if rtype.namespaced and rtype.plural != "namespaces" else ""
        item = f"/{gv_path}{scope}/{rtype.plural}/{{name}}"
        paths[item] = {"patch": {
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": rtype.kind},
            "parameters": [
                {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                for name in ("dryRun", "fieldManager", "fieldValidation", "force")
            ],
            "responses": {"200": {"description": "OK"}},
        }}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": {}}}
