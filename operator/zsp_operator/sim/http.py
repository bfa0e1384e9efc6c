"""The HTTP face of the in-memory API server: request parsing, authentication,
authorization, verb dispatch and Status responses, on aiohttp."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from zsp_operator.core.rbac import Attributes
from zsp_operator.sim import errors as E
from zsp_operator.sim.auth import Authenticator, UserInfo
from zsp_operator.sim.authz import Authorizer, Decision
from zsp_operator.sim.deletion import Deleter
from zsp_operator.sim.discovery import serve_non_resource
from zsp_operator.sim.objects import Objects, RequestContext
from zsp_operator.sim.paging import list_objects
from zsp_operator.sim.resources import ResourceType
from zsp_operator.sim.reviews import Reviews
from zsp_operator.sim.selectors import object_filter
from zsp_operator.sim.store import Obj
from zsp_operator.sim.tables import as_table, table_version
from zsp_operator.sim.watch import serve_watch

log = logging.getLogger(__name__)

_PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
_TRUE = ("1", "t", "T", "true", "TRUE", "True")  # Go's strconv.ParseBool


def parse_bool(value: str | None) -> bool:
    return value in _TRUE


_SUBRESOURCE_VERBS = {"status": ("get", "update", "patch"), "finalize": ("update",), "token": ("create",)}
ANONYMOUS = UserInfo("system:anonymous", groups=("system:unauthenticated",))


@dataclass(frozen=True)
class ResourceRequest:
    """What a resource URL addresses (like the apiserver's RequestInfo)."""

    group: str
    version: str
    namespace: str
    resource: str
    name: str
    subresource: str
    verb: str


def parse_resource_path(method: str, path: str, query: Any) -> ResourceRequest | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 2:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in ("status", "finalize"):
            rest = rest[2:]
    if len(rest) > 3:
        return None
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    watching = parse_bool(query.get("watch"))
    verb = {
        "GET": ("watch" if watching else "get") if name else ("watch" if watching else "list"),
        "HEAD": "get" if name else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method, "")
    return ResourceRequest(group, version, namespace, resource, name, subresource, verb)


def _json(
    body: Any, status: int = 200, warnings: list[str] | None = None, content_type: str = "application/json"
) -> web.Response:
    headers = {"Content-Type": content_type}
    response = web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, headers=headers
    )
    for warning in warnings or []:
        response.headers.add("Warning", f'299 - "{warning.replace(chr(34), chr(92) + chr(34))}"')
    return response


# Told of every authenticated request (who, and what it asked for; None for non-resource
# paths), like kube-apiserver's audit log: tests count an operator's calls with it.
RequestObserver = Callable[[str, "ResourceRequest | None"], None]


@dataclass
class Exchange:
    """One request as the audit log sees it, filled in while it is handled (`sim.audit`)."""

    request: web.Request
    audit_id: str
    received: float
    completed: float = 0.0
    user: UserInfo | None = None  # who authenticated; None until then (and after a 401)
    impersonated: UserInfo | None = None
    info: ResourceRequest | None = None  # None for a non-resource path
    attrs: Attributes | None = None
    decision: Decision | None = None  # of the authorizer on the request itself
    streaming: bool = False  # a watch: its 200 went out before the stream
    code: int | None = None  # None when the client left before the answer
    status: dict[str, Any] | None = None  # the Status answered with an error


# Called with each finished Exchange when auditing is on.
AuditHook = Callable[[Exchange], None]


class ApiHandler:
    def __init__(
        self,
        objects: Objects,
        deleter: Deleter,
        reviews: Reviews,
        authenticator: Authenticator,
        authorizer: Authorizer,
        bookmark_interval: float,
        server_address: str,
        observers: list[RequestObserver] | None = None,
        audit: AuditHook | None = None,
    ) -> None:
        self.observers = observers if observers is not None else []
        self.audit = audit
        self.objects = objects
        self.registry = objects.registry
        self.deleter = deleter
        self.reviews = reviews
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.bookmark_interval = bookmark_interval
        self.server_address = server_address

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.audit is None:
            return await self._answer(request, None)
        # A client may choose the audit ID (the Audit-ID header), as with the real server.
        audit_id = request.headers.get("Audit-ID") or str(uuid.uuid4())
        exchange = Exchange(request, audit_id, self.objects.clock())
        try:
            response = await self._answer(request, exchange)
        except asyncio.CancelledError:
            self._audited(exchange)
            raise
        if not response.prepared:
            response.headers["Audit-ID"] = audit_id
        exchange.code = response.status
        self._audited(exchange)
        return response

    def _audited(self, exchange: Exchange) -> None:
        assert self.audit is not None
        if exchange.user is None:
            return  # a 401: there is nobody to attribute the request to
        exchange.completed = self.objects.clock()
        try:
            self.audit(exchange)
        except Exception:  # auditing must not fail the request it records
            log.exception("audit of %s %s failed", exchange.request.method, exchange.request.path)

    async def _answer(self, request: web.Request, exchange: Exchange | None) -> web.StreamResponse:
        try:
            return await self._handle(request, exchange)
        except E.ApiError as error:
            status = error.status()
            if exchange is not None:
                exchange.status = status
            return _json(status, error.code)
        except Exception as error:
            log.exception("in-memory API server failed on %s %s", request.method, request.path)
            failure = E.internal(f"{type(error).__name__}: {error}")
            if exchange is not None:
                exchange.status = failure.status()
            return _json(failure.status(), failure.code)

    def _authenticate(self, request: web.Request, exchange: Exchange | None) -> UserInfo:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            if request.path.rstrip("/") in _PUBLIC_PATHS or request.path.startswith(_PUBLIC_PATHS):
                if exchange is not None:
                    exchange.user = ANONYMOUS
                return ANONYMOUS
            raise E.unauthorized()
        user = self.authenticator.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise E.unauthorized()
        if exchange is not None:
            exchange.user = user
        acting = self._impersonate(request, user)
        if exchange is not None and acting is not user:
            exchange.impersonated = acting
        return acting

    def _authorize(self, user: UserInfo, attrs: Attributes, exchange: Exchange | None) -> bool:
        decision = self.authorizer.authorize(user, attrs)
        if exchange is not None:
            exchange.decision = decision
        return decision.allowed

    def _impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        """Honour kubectl's --as / --as-group (Impersonate-* headers) after an RBAC check."""
        target = request.headers.get("Impersonate-User")
        if not target:
            return user
        groups = request.headers.getall("Impersonate-Group", [])
        sa_parts = target.split(":")
        if target.startswith("system:serviceaccount:") and len(sa_parts) == 4:
            checks = [
                Attributes("impersonate", "", "serviceaccounts", name=sa_parts[3], namespace=sa_parts[2])
            ]
        else:
            checks = [Attributes("impersonate", "", "users", name=target)]
        checks += [Attributes("impersonate", "", "groups", name=group) for group in groups]
        for attrs in checks:
            if not self.authorizer.authorize(user, attrs).allowed:
                raise E.forbidden(
                    E.GroupResource("", attrs.resource), attrs.name, _forbidden_reason(user, attrs)
                )
        if target.startswith("system:serviceaccount:") and len(sa_parts) == 4:
            groups = [*groups, "system:serviceaccounts", f"system:serviceaccounts:{sa_parts[2]}"]
        all_groups = tuple(dict.fromkeys([*groups, "system:authenticated"]))
        return UserInfo(target, request.headers.get("Impersonate-Uid", ""), all_groups)

    async def _handle(self, request: web.Request, exchange: Exchange | None) -> web.StreamResponse:
        info = parse_resource_path(request.method, request.path, request.query)
        if info is None:
            attrs = Attributes(
                "get" if request.method in ("GET", "HEAD") else request.method.lower(), path=request.path
            )
        else:
            attrs = Attributes(
                info.verb, info.group, info.resource, info.subresource, info.name, info.namespace
            )
        if exchange is not None:
            exchange.info, exchange.attrs = info, attrs
        user = self._authenticate(request, exchange)
        for observe in self.observers:
            observe(user.username, info)
        if info is None:
            if not self._authorize(user, attrs, exchange):
                raise E.forbidden(E.GroupResource("", ""), "", _forbidden_reason(user, attrs))
            document = serve_non_resource(self.registry, request.path, self.server_address)
            if isinstance(document, str):
                return web.Response(text=document, content_type="text/plain")
            return _json(document)
        rtype = self.registry.lookup(info.group, info.version, info.resource)
        if rtype is None:
            raise E.path_not_found()
        if not self._authorize(user, attrs, exchange):
            raise E.forbidden(rtype.group_resource, info.name, _forbidden_reason(user, attrs))
        if exchange is not None:
            exchange.streaming = info.verb == "watch"
        return await self._dispatch(request, user, info, rtype)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as error:
            raise E.bad_request(f"the body of the request was in an unknown format: {error}") from error

    async def _dispatch(
        self, request: web.Request, user: UserInfo, info: ResourceRequest, rtype: ResourceType
    ) -> web.StreamResponse:
        query = request.query
        if rtype.namespaced and rtype.plural != "namespaces":
            if info.name and not info.namespace:
                raise E.path_not_found()
            namespace = info.namespace
        else:
            if info.namespace and rtype.plural != "namespaces":
                raise E.path_not_found()
            namespace = ""
        if info.subresource and info.subresource not in rtype.subresources:
            raise E.path_not_found()
        if info.subresource and info.verb not in _SUBRESOURCE_VERBS.get(info.subresource, ()):
            raise E.method_not_allowed()
        if info.verb not in rtype.verbs and not info.subresource:
            raise E.method_not_allowed()
        ctx = RequestContext(
            user,
            dry_run="All" in query.getall("dryRun", []),
            field_validation=query.get("fieldValidation", "Warn"),
        )
        list_namespace = namespace if (rtype.namespaced and info.namespace) else None

        if info.verb in ("list", "watch", "deletecollection"):
            field_selector = query.get("fieldSelector", "")
            if info.name:
                field_selector = ",".join(filter(None, [field_selector, f"metadata.name={info.name}"]))
            matches = object_filter(query.get("labelSelector", ""), field_selector, rtype.group, rtype.plural)
            if info.verb == "watch":
                return await serve_watch(
                    request,
                    self.objects.store,
                    rtype,
                    list_namespace,
                    matches,
                    self.bookmark_interval,
                    self._table_events(request, rtype),
                )
            if info.verb == "deletecollection":
                options = await self._body(request) or {}
                return _json(
                    await self.deleter.delete_collection(ctx, rtype, list_namespace, matches, options)
                )
            selective = bool(query.get("labelSelector") or query.get("fieldSelector"))
            listed = list_objects(
                self.objects.store, rtype, list_namespace, matches, query, selective=selective
            )
            return self._maybe_table(request, rtype, listed)
        if info.verb == "create":
            return await self._create(request, ctx, info, rtype, namespace)
        if info.verb == "get":
            return self._maybe_table(request, rtype, self.objects.get(rtype, namespace, info.name))
        if info.verb == "update":
            body = await self._body(request)
            return _json(
                await self.objects.update(ctx, rtype, namespace, info.name, body, info.subresource),
                warnings=ctx.warnings,
            )
        if info.verb == "patch":
            body = await self._body(request)
            patched = await self.objects.patch(
                ctx,
                rtype,
                namespace,
                info.name,
                request.headers.get("Content-Type", ""),
                body,
                info.subresource,
            )
            return _json(patched, warnings=ctx.warnings)
        if info.verb == "delete":
            options = dict(await self._body(request) or {})
            for key in ("propagationPolicy", "orphanDependents"):
                if key in query and key not in options:
                    options[key] = query[key] if key == "propagationPolicy" else query[key] == "true"
            status, body = await self.deleter.delete(ctx, rtype, namespace, info.name, options)
            return _json(body, status)
        raise E.method_not_allowed()

    async def _create(
        self,
        request: web.Request,
        ctx: RequestContext,
        info: ResourceRequest,
        rtype: ResourceType,
        namespace: str,
    ) -> web.StreamResponse:
        body = await self._body(request)
        if info.subresource == "token":
            return _json(await self.reviews.token_request(ctx, rtype, namespace, info.name, body), 201)
        if info.name or info.subresource:
            raise E.method_not_allowed()
        if rtype.group == "authorization.k8s.io":
            return _json(self.reviews.access_review(rtype, ctx.user, body, namespace), 201)
        if rtype.kind == "TokenReview":
            return _json(self.reviews.token_review(body), 201)
        if rtype.kind == "SelfSubjectReview":
            return _json(self.reviews.self_subject_review(ctx.user), 201)
        created = await self.objects.create(ctx, rtype, namespace, body)
        return _json(created, 201, warnings=ctx.warnings)

    def _table_options(self, request: web.Request) -> tuple[str, str] | None:
        """(meta.k8s.io version, includeObject) when the client asked for Tables."""
        version = table_version(request.headers.get("Accept", ""))
        if version is None:
            return None
        include = request.query.get("includeObject") or "Metadata"
        if include not in ("None", "Metadata", "Object"):
            raise E.bad_request(
                f'includeObject: Unsupported value: "{include}": supported values: "None", "Metadata", "Object"'
            )
        return version, include

    def _maybe_table(self, request: web.Request, rtype: ResourceType, body: dict[str, Any]) -> web.Response:
        options = self._table_options(request)
        if options is None:
            return _json(body)
        version, include = options
        table = as_table(rtype, body, self.objects.clock(), version=version, include=include)
        return _json(table, content_type=f"application/json;as=Table;v={version};g=meta.k8s.io")

    def _table_events(self, request: web.Request, rtype: ResourceType) -> Callable[[Obj], Obj] | None:
        """For `kubectl get -w`: each event's object as a one-row Table, column headers on the first only."""
        options = self._table_options(request)
        if options is None:
            return None
        version, include = options
        first = [True]

        def transform(obj: Obj) -> Obj:
            table = as_table(rtype, obj, self.objects.clock(), version=version, include=include)
            if not first[0]:
                del table["columnDefinitions"]
            first[0] = False
            return table

        return transform


def _forbidden_reason(user: UserInfo, attrs: Attributes) -> str:
    """The real server's wording: `User "u" cannot <verb> resource "r" in API group "g" ...`."""
    if not attrs.is_resource_request:
        return f'User "{user.username}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    text = f'User "{user.username}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.group}"'
    if attrs.namespace:
        return f'{text} in the namespace "{attrs.namespace}"'
    return f"{text} at the cluster scope"
