"""The operator's only Kubernetes API caller: JSON dicts in and out, errors mapped to ours.

One generic client over kubernetes_asyncio's ApiClient serves every kind (built-in or
custom), so the rest of the code speaks in manifests, not generated model classes.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from zsp_operator.kube.errors import KubeError, NotFound, from_response
from zsp_operator.kube.resources import Resource
from zsp_operator.kube.retry import pause

Body = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
_OBJECT = dict.fromkeys((200, 201, 202), "object")
# Throttled calls are sent again this many times, after the server's Retry-After or, when
# it gives none, the retry policy's backoff; both bounded, since callers retry too.
_THROTTLED_RETRIES = 10
_MIN_RETRY_AFTER = 0.1
_MAX_RETRY_AFTER = 5.0


@dataclass(frozen=True)
class Connection:
    """How the client reaches its API server (for kopf's login and delivered kubeconfigs)."""

    server: str
    token: str | None
    ca_path: str | None
    cert_path: str | None
    key_path: str | None
    insecure: bool

    def ca_data(self) -> str | None:
        return Path(self.ca_path).read_text() if self.ca_path else None


def _retry_after(err: ApiException) -> float | None:
    """The server's Retry-After in seconds (bounded), or None when it did not say."""
    headers: Mapping[str, str] = err.headers or {}
    try:
        seconds = float(headers["Retry-After"])
    except (KeyError, TypeError, ValueError):
        return None
    return min(max(seconds, _MIN_RETRY_AFTER), _MAX_RETRY_AFTER)


def _strip_bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:]
    return value


_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NETRC")


class Kube:
    """An async client for one cluster. Use as `async with await Kube.connect(...) as kube`."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        if not any(os.environ.get(name) for name in _PROXY_ENV):
            # aiohttp honours proxy variables and ~/.netrc by looking them up again on every
            # request, in a thread: a tenth of the operator's CPU under load. Without any
            # set, there is nothing to look up (a kubeconfig's proxy-url is used regardless).
            api.rest_client.pool_manager._trust_env = False

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> Self:
        """Find the cluster like kubectl: --kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster."""
        configuration = k8s.Configuration()
        path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
        default = Path.home() / ".kube" / "config"
        if path is None and default.exists():
            path = str(default)
        if path is not None:
            await k8s_config.load_kube_config(
                config_file=path, context=context, client_configuration=configuration
            )
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(k8s.ApiClient(configuration))

    @classmethod
    async def from_dict(cls, kubeconfig: Mapping[str, Any]) -> Self:
        configuration = k8s.Configuration()
        await k8s_config.load_kube_config_from_dict(dict(kubeconfig), client_configuration=configuration)
        return cls(k8s.ApiClient(configuration))

    async def close(self) -> None:
        await self.api.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def connection(self) -> Connection:
        cfg = self.api.configuration
        return Connection(
            server=cfg.host or "",
            token=_strip_bearer(cfg.api_key.get("BearerToken") or cfg.api_key.get("authorization")),
            ca_path=cfg.ssl_ca_cert,
            cert_path=cfg.cert_file,
            key_path=cfg.key_file,
            insecure=not cfg.verify_ssl,
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        for attempt in range(_THROTTLED_RETRIES + 1):
            try:
                return await self.api.call_api(
                    path,
                    method,
                    query_params=params,
                    header_params={"Content-Type": content_type, "Accept": "application/json"},
                    body=body,
                    response_types_map=_OBJECT,
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                )
            except ApiException as err:
                # A 429 (API Priority and Fairness, or a resource's storage still initializing)
                # means the request was not processed, so any verb may be sent again, as
                # client-go does.
                if err.status != 429 or attempt == _THROTTLED_RETRIES:
                    raise from_response(err.status or 0, err.body) from None
                await pause(attempt, cap=_MAX_RETRY_AFTER, retry_after=_retry_after(err))
            except (OSError, TimeoutError) as err:
                # Connection trouble is worth retrying, like a 5xx.
                raise KubeError(0, "Unreachable", str(err)) from err
        raise AssertionError("unreachable")  # the loop returns or raises

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> Body | None:
        """The object, or None when it does not exist."""
        try:
            result: Body = await self._call("GET", res.path(namespace, name))
        except NotFound:
            return None
        return result

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[Body]:
        query = {"labelSelector": label_selector, "fieldSelector": field_selector}
        result = await self._call("GET", res.path(namespace), query=query)
        items: builtins.list[Body] = result.get("items") or []
        for item in items:
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        return items

    async def list_pages(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        limit: int = 500,
        label_selector: str | None = None,
    ) -> AsyncGenerator[tuple[builtins.list[Body], str], None]:
        """The objects `limit` at a time, each page with the list's resourceVersion.

        Every page shows the objects as of the first one, so the resourceVersion is where a
        watch picks up. A continue token that expired raises Gone: start a new list then.
        """
        token: str | None = None
        while True:
            query = {"limit": limit, "continue": token, "labelSelector": label_selector}
            result = await self._call("GET", res.path(namespace), query=query)
            items: builtins.list[Body] = result.get("items") or []
            for item in items:
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
            meta = result.get("metadata") or {}
            yield items, str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or None
            if token is None:
                return

    async def create(
        self, res: Resource, body: Body, namespace: str | None = None, *, dry_run: bool = False
    ) -> Body:
        """Create; `dry_run` runs validation and admission without storing anything."""
        ns = namespace or body.get("metadata", {}).get("namespace")
        query = {"dryRun": "All"} if dry_run else None
        result: Body = await self._call("POST", res.path(ns), body=body, query=query)
        return result

    async def post(self, res: Resource, name: str, sub: str, body: Body, namespace: str | None) -> Body:
        """POST to a subresource (TokenRequest, eviction...)."""
        result: Body = await self._call("POST", res.path(namespace, name, sub), body=body)
        return result

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Body | builtins.list[Body],
        namespace: str | None = None,
        *,
        status: bool = False,
    ) -> Body:
        """Merge-patch a dict, JSON-patch a list; `status=True` targets the status subresource."""
        content_type = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        path = res.path(namespace, name, "status" if status else None)
        result: Body = await self._call("PATCH", path, body=patch, content_type=content_type)
        return result

    async def replace(self, res: Resource, body: Body, *, status: bool = False) -> Body:
        meta = body["metadata"]
        path = res.path(meta.get("namespace"), meta["name"], "status" if status else None)
        result: Body = await self._call("PUT", path, body=body)
        return result

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        """Delete; True if this call deleted it (or marked it for deletion), False if it was gone.

        A `uid` precondition makes sure we never delete a same-named replacement; a
        `resource_version` one that the object is still as the caller judged it (a changed
        object raises Conflict, to be judged again).
        """
        return (
            await self.delete_returning(
                res, name, namespace, uid=uid, resource_version=resource_version, propagation=propagation
            )
            is not None
        )

    async def delete_returning(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation: str = "Background",
    ) -> Body | None:
        """Delete and return the API server's answer (the object itself while finalizers hold it)."""
        options: Body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        preconditions = {"uid": uid, "resourceVersion": resource_version}
        if uid or resource_version:
            options["preconditions"] = {k: v for k, v in preconditions.items() if v}
        try:
            result: Body = await self._call("DELETE", res.path(namespace, name), body=options)
        except NotFound:
            return None
        except KubeError as err:
            # A uid precondition that no longer holds means the object we meant is gone.
            if (
                uid
                and err.status == 409
                and "uid" in err.message.lower()
                and "precondition" in err.message.lower()
            ):
                return None
            raise
        return result or {}

    async def whoami(self) -> dict[str, Any]:
        """Our own authenticated userInfo, as the API server sees it (SelfSubjectReview)."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        result = await self._call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=body)
        info: dict[str, Any] = (result.get("status") or {}).get("userInfo") or {}
        return info

    async def resource_of(self, api_version: str, kind: str) -> Resource:
        """Discover the plural and scope of any kind (for taskRef objects of any type)."""
        group, _, version = api_version.rpartition("/")
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        listing = await self._call("GET", path)
        for item in listing.get("resources") or []:
            if item.get("kind") == kind and "/" not in item.get("name", ""):
                return Resource(group, version, item["name"], kind, bool(item.get("namespaced")))
        raise NotFound(404, "NotFound", f"the server does not serve {kind} in {api_version}")

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[tuple[str, Body]]:
        """Yield (type, object) watch events until the server closes the stream."""
        query = {
            "watch": "true",
            "fieldSelector": field_selector,
            "labelSelector": label_selector,
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": "true",
        }
        params = [(k, v) for k, v in query.items() if v is not None]
        try:
            response = await self.api.call_api(
                res.path(namespace),
                "GET",
                query_params=params,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=timeout_seconds + 30,
            )
        except ApiException as err:
            raise from_response(err.status or 0, err.body) from None
        async with response:
            if response.status >= 300:
                raise from_response(response.status, await response.read())
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise from_response(int(status.get("code") or 500), json.dumps(status))
                yield event["type"], event["object"]
