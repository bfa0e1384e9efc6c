"""Dynamic admission: calls Mutating- then ValidatingWebhookConfigurations before a write.

Matching honours rules (operations, apiGroups, apiVersions, resources with `*`,
`*/*`, `r/*`, `*/sub` and `r/sub` forms, scope), namespaceSelector, objectSelector and
matchPolicy: Equivalent (the default) also matches a request through another served
version of the same resource, and the webhook then sees `kind`, `resource` and the
objects in the version its rule named (`requestKind`/`requestResource` keep the one
asked for). Not implemented: matchConditions (ignored: every matching webhook is
called), reinvocationPolicy, parallel calls to validating webhooks.

Every call's URL carries `?timeout=<timeoutSeconds>s`, as the real server's does (and so
do the failure messages, which quote the URL).

A `clientConfig.service` reference (port 443 unless given) is called as kube-apiserver
calls it by default (kube-aggregator's ClusterIP resolver): at `https://name.namespace.svc:
port/path`, dialled at the Service's ClusterIP (`sim/services.py`) and that port, the
Service `port` (not its targetPort; EndpointSlices play no part), or at an ExternalName
Service's `externalName` and the port. The certificate is verified against `caBundle` for
the server name `name.namespace.svc`, which is also the Host header. No such Service, no
Service port with that number or a headless Service fail the call with the real resolver's
reason, so `failurePolicy` decides. ClusterIPs are on loopback by default, so a webhook
served on 0.0.0.0 is reached there, as with the real test tier.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from zsp_operator.sim.auth import UserInfo
from zsp_operator.sim.errors import ApiError, internal
from zsp_operator.sim.patch import PatchError, json_patch
from zsp_operator.sim.resources import Registry, ResourceType
from zsp_operator.sim.selectors import label_selector_object_matches
from zsp_operator.sim.store import Store

log = logging.getLogger(__name__)

ADMISSION_GROUP = "admissionregistration.k8s.io"
DEFAULT_TIMEOUT_SECONDS = 10
DEFAULT_SERVICE_PORT = 443
# Service types the API server reaches at their ClusterIP.
_CLUSTER_IP_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
# The API server never sends its own webhook configurations to webhooks (no lock-out).
_EXEMPT = {"mutatingwebhookconfigurations", "validatingwebhookconfigurations"}


@dataclass
class AdmissionRequest:
    rtype: ResourceType
    operation: str  # CREATE, UPDATE, DELETE
    name: str
    namespace: str
    user: UserInfo
    obj: dict[str, Any] | None
    old: dict[str, Any] | None
    subresource: str = ""
    dry_run: bool = False
    kind: dict[str, str] = field(default_factory=dict)  # set when the body is another kind

    def review(self, invoked: ResourceType | None = None) -> dict[str, Any]:
        """The AdmissionReview; `invoked` is the equivalent version a rule matched (matchPolicy
        Equivalent): kind, resource and the objects are then in that version."""
        rtype = self.rtype
        kind = self.kind or _kind_of(rtype)
        resource = _resource_of(rtype)
        target = invoked or rtype
        options_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}
        request: dict[str, Any] = {
            "uid": str(uuid.uuid4()),
            "kind": self.kind or _kind_of(target),
            "resource": _resource_of(target),
            "requestKind": kind,
            "requestResource": resource,
            "name": self.name,
            "operation": self.operation,
            "userInfo": self.user.to_wire(),
            "object": as_version(self.obj, target),
            "oldObject": as_version(self.old, target),
            "dryRun": self.dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind[self.operation]},
        }
        if self.subresource:
            request["subResource"] = self.subresource
        if self.namespace:
            request["namespace"] = self.namespace
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _kind_of(rtype: ResourceType) -> dict[str, str]:
    return {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}


def _resource_of(rtype: ResourceType) -> dict[str, str]:
    return {"group": rtype.group, "version": rtype.version, "resource": rtype.plural}


def as_version(obj: dict[str, Any] | None, rtype: ResourceType) -> dict[str, Any] | None:
    """A custom resource in another served version (conversion strategy None: apiVersion only)."""
    if obj is None or obj.get("apiVersion") in (None, rtype.api_version) or obj.get("kind") != rtype.kind:
        return obj
    return {**obj, "apiVersion": rtype.api_version}


def _resource_matches(patterns: list[str], plural: str, subresource: str) -> bool:
    for pattern in patterns:
        resource, _, sub = pattern.partition("/")
        if resource not in ("*", plural):
            continue
        if (sub == "*") or (sub == subresource):
            return True
    return False


def rule_matches(rule: dict[str, Any], request: AdmissionRequest, rtype: ResourceType | None = None) -> bool:
    """Whether `rule` matches the request, or the request as if made to the equivalent `rtype`."""
    rtype = rtype or request.rtype
    if not ({"*", request.operation} & set(rule.get("operations") or [])):
        return False
    if not ({"*", rtype.group} & set(rule.get("apiGroups") or [])):
        return False
    if not ({"*", rtype.version} & set(rule.get("apiVersions") or [])):
        return False
    if not _resource_matches(rule.get("resources") or [], rtype.plural, request.subresource):
        return False
    scope = rule.get("scope") or "*"
    namespaced = rtype.namespaced and rtype.plural != "namespaces"
    return scope == "*" or scope == ("Namespaced" if namespaced else "Cluster")


class Admission:
    def __init__(self, store: Store, registry: Registry | None = None) -> None:
        self._store = store
        self._registry = registry
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _matching(self, plural: str, request: AdmissionRequest) -> list[tuple[dict[str, Any], ResourceType]]:
        """The webhooks to call, each with the resource version it is called for."""
        if request.rtype.group == ADMISSION_GROUP and request.rtype.plural in _EXEMPT:
            return []
        hooks = []
        for config in self._store.list((ADMISSION_GROUP, plural)):
            for hook in config.get("webhooks") or []:
                invoked = self._invocation(hook, request)
                if invoked is not None and self._selectors_match(hook, request):
                    hooks.append((hook, invoked))
        return hooks

    def _invocation(self, hook: dict[str, Any], request: AdmissionRequest) -> ResourceType | None:
        """The version a rule matches: the request's own, else (matchPolicy Equivalent, the
        default) the first equivalent version a rule matches, rules in order."""
        rules = hook.get("rules") or []
        if any(rule_matches(rule, request) for rule in rules):
            return request.rtype
        if hook.get("matchPolicy", "Equivalent") != "Equivalent" or self._registry is None:
            return None
        equivalents = [
            other
            for other in self._registry.all()
            if other.storage_key == request.rtype.storage_key and other != request.rtype
        ]
        for rule in rules:
            for other in equivalents:
                if rule_matches(rule, request, other):
                    return other
        return None

    def _selectors_match(self, hook: dict[str, Any], request: AdmissionRequest) -> bool:
        if not self._namespace_matches(hook.get("namespaceSelector"), request):
            return False
        selector = hook.get("objectSelector")
        candidates = [o for o in (request.obj, request.old) if o is not None]
        return (
            any(
                label_selector_object_matches(selector, (o.get("metadata") or {}).get("labels"))
                for o in candidates
            )
            if candidates
            else True
        )

    def _namespace_matches(self, selector: dict[str, Any] | None, request: AdmissionRequest) -> bool:
        if request.rtype.plural == "namespaces" and request.rtype.group == "":
            target = request.obj or request.old or {}
        elif request.namespace:
            target = self._store.get(("", "namespaces"), "", request.namespace) or {}
        else:
            return True  # cluster-scoped objects are not filtered by namespaceSelector
        return label_selector_object_matches(selector, (target.get("metadata") or {}).get("labels"))

    async def mutate(self, request: AdmissionRequest) -> dict[str, Any] | None:
        """Run matching mutating webhooks in name order; return the (patched) object."""
        for hook, invoked in self._matching("mutatingwebhookconfigurations", request):
            response = await self._call(hook, request, invoked)
            if response is None or not response.get("patch"):
                continue
            try:
                operations = json.loads(base64.b64decode(response["patch"]))
                patched = json_patch(as_version(request.obj, invoked), operations)
                request.obj = as_version(patched, request.rtype)  # back to the version asked for
            except (ValueError, PatchError) as error:
                raise internal(f'failed calling webhook "{hook["name"]}": JSONPatch: {error}') from error
        return request.obj

    async def validate(self, request: AdmissionRequest) -> None:
        for hook, invoked in self._matching("validatingwebhookconfigurations", request):
            await self._call(hook, request, invoked)

    async def _call(
        self, hook: dict[str, Any], request: AdmissionRequest, invoked: ResourceType
    ) -> dict[str, Any] | None:
        """The webhook's `response`; None when a failure is ignored; raises on denial."""
        name = hook.get("name", "")
        review = request.review(invoked)
        log.debug(
            "calling webhook %s: %s %s/%s %s",
            name,
            request.operation,
            request.rtype.plural,
            request.subresource,
            request.name,
        )
        try:
            response = await self._post(hook, review)
            if response.get("uid") != review["request"]["uid"]:
                raise WebhookCallError(
                    f'expected response.uid="{review["request"]["uid"]}", got "{response.get("uid")}"'
                )
        except WebhookCallError as error:
            if hook.get("failurePolicy", "Fail") == "Ignore":
                return None
            raise internal(f'failed calling webhook "{name}": {error}') from error
        if not response.get("allowed"):
            log.debug("webhook %s denied the request: %s", name, response.get("status"))
            raise denial(name, response.get("status") or {})
        return response

    async def _post(self, hook: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
        config = hook.get("clientConfig") or {}
        seconds = int(hook.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)
        # The API server tells the webhook its deadline, so the parameter is in every URL.
        deadline = f"timeout={seconds}s"
        url, target, server_name = config.get("url"), None, None
        headers: dict[str, str] = {}
        if url:
            url = f"{url}{'&' if '?' in url else '?'}{deadline}"
        else:
            service = config.get("service") or {}
            server_name = f"{service.get('name')}.{service.get('namespace')}.svc"
            port = int(service.get("port") or DEFAULT_SERVICE_PORT)
            path = f"{service.get('path') or ''}?{deadline}"
            url = f"https://{server_name}:{port}{path}"
            headers["Host"] = f"{server_name}:{port}"
            try:
                host, dial_port = self.resolve_service(service)
            except ServiceUnavailable as error:
                raise WebhookCallError(f'failed to call webhook: Post "{url}": {error}') from error
            target = f"https://{_host_port(host, dial_port)}{path}"
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=seconds)
        try:
            async with self._session.post(
                target or url,
                json=review,
                headers=headers,
                ssl=_ssl_context(config.get("caBundle")),
                server_hostname=server_name,
                timeout=timeout,
            ) as reply:
                if reply.status != 200:
                    raise WebhookCallError(f"received invalid webhook response: status {reply.status}")
                body = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise WebhookCallError(
                f'failed to call webhook: Post "{url}": {error or type(error).__name__}'
            ) from error
        response = body.get("response") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise WebhookCallError("received invalid webhook response: no response")
        return response

    def resolve_service(self, reference: dict[str, Any]) -> tuple[str, int]:
        """Where the API server dials a `service` reference: the Service's ClusterIP and the
        referenced port, which must be one of the Service's; an ExternalName's host instead.

        Raises:
            ServiceUnavailable: no such Service or port, or a headless Service.
        """
        namespace, name = reference.get("namespace") or "", reference.get("name") or ""
        port = int(reference.get("port") or DEFAULT_SERVICE_PORT)
        service = self._store.get(("", "services"), namespace, name)
        if service is None:
            raise ServiceUnavailable(f'service "{name}" not found')
        spec = service.get("spec") or {}
        kind = spec.get("type") or "ClusterIP"
        if kind == "ClusterIP" and spec.get("clusterIP") == "None":
            raise ServiceUnavailable('cannot route to service with ClusterIP "None"')
        if kind in _CLUSTER_IP_TYPES:
            if not any(p.get("port") == port for p in spec.get("ports") or []):
                raise ServiceUnavailable(f'no service port {port} found for service "{name}"')
            return str(spec.get("clusterIP") or ""), port
        if kind == "ExternalName":
            return str(spec.get("externalName") or ""), port
        raise ServiceUnavailable(f'unsupported service type "{kind}"')


class ServiceUnavailable(Exception):
    """A webhook's Service has nowhere to send the call."""


class WebhookCallError(Exception):
    """The webhook could not be called or answered nonsense."""


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    if not ca_bundle:
        return ssl.create_default_context()
    return ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode("ascii"))


def denial(name: str, result: dict[str, Any]) -> ApiError:
    """The Status for `allowed: false`, worded like the real server's."""
    denied_by = f'admission webhook "{name}" denied the request'
    code = int(result.get("code") or 0)
    if result.get("message"):
        message = f"{denied_by}: {result['message']}"
    elif result.get("reason"):
        message = f"{denied_by}: {result['reason']}"
    else:
        message = f"{denied_by} without explanation"
    return ApiError(
        max(code, 400), str(result.get("reason") or ""), message, dict(result.get("details") or {})
    )
