"""Create-only virtual kinds: TokenRequest, TokenReview, SelfSubjectReview and access reviews."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zsp_operator.core.rbac import Attributes
from zsp_operator.sim import errors as E
from zsp_operator.sim.admission import AdmissionRequest
from zsp_operator.sim.auth import Authenticator, UserInfo
from zsp_operator.sim.authz import Authorizer
from zsp_operator.sim.objects import Objects, RequestContext, rfc3339
from zsp_operator.sim.resources import ResourceType
from zsp_operator.sim.tokens import (
    API_AUDIENCE,
    DEFAULT_EXPIRATION_SECONDS,
    EXTENDED_EXPIRATION_SECONDS,
    LEGACY_EXTENDED_REQUEST_SECONDS,
    MAX_EXPIRATION_SECONDS,
    MIN_EXPIRATION_SECONDS,
    BoundObject,
    TokenSigner,
)

AUTHN = "authentication.k8s.io/v1"
AUTHZ = "authorization.k8s.io/v1"
_BINDABLE = {"Pod": "pods", "Secret": "secrets"}


class Reviews:
    def __init__(self, objects: Objects, authenticator: Authenticator, authorizer: Authorizer,
                 signer: TokenSigner, clock: Callable[[], float]) -> None:
        self.objects = objects
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.signer = signer
        self.clock = clock

    async def token_request(self, ctx: RequestContext, sa_type: ResourceType, namespace: str, name: str,
                            body: Any) -> dict[str, Any]:
        """POST serviceaccounts/<name>/token: a signed, audience-bound, expiring token."""
        account = self.objects.get(sa_type, namespace, name)
        spec = dict((body or {}).get("spec") or {})
        seconds = spec.get("expirationSeconds")
        seconds = DEFAULT_EXPIRATION_SECONDS if seconds is None else seconds
        if not isinstance(seconds, int) or seconds < MIN_EXPIRATION_SECONDS:
            raise E.invalid_object("TokenRequest", "authentication.k8s.io", name, [
                E.invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes")])
        if seconds > MAX_EXPIRATION_SECONDS:
            raise E.invalid_object("TokenRequest", "authentication.k8s.io", name, [
                E.invalid("spec.expirationSeconds", seconds, "may not specify a duration larger than 2^32 seconds")])
        spec["expirationSeconds"] = seconds
        spec["audiences"] = list(spec.get("audiences") or [API_AUDIENCE])
        bound = self._bound_object(namespace, spec.get("boundObjectRef"))
        now = int(self.clock())
        request = {"apiVersion": AUTHN, "kind": "TokenRequest",
                   "metadata": {"name": name, "namespace": namespace, "creationTimestamp": rfc3339(now)},
                   "spec": spec}
        review = AdmissionRequest(sa_type, "CREATE", name, namespace, ctx.user, request, None,
                                  subresource="token", dry_run=ctx.dry_run,
                                  kind={"group": "authentication.k8s.io", "version": "v1",
                                        "kind": "TokenRequest"})
        await self.objects.admission.mutate(review)
        await self.objects.admission.validate(review)
        # Like --service-account-extend-token-expiration: 3607 s buys a year (status says otherwise).
        lifetime = EXTENDED_EXPIRATION_SECONDS if seconds == LEGACY_EXTENDED_REQUEST_SECONDS else seconds
        token, _ = self.signer.mint(namespace=namespace, sa_name=name, sa_uid=account["metadata"]["uid"],
                                    audiences=spec["audiences"], issued_at=now, lifetime_seconds=lifetime,
                                    bound=bound)
        request["status"] = {"token": "" if ctx.dry_run else token,
                             "expirationTimestamp": rfc3339(now + seconds)}
        return request

    def _bound_object(self, namespace: str, ref: Any) -> BoundObject | None:
        if not ref:
            return None
        kind = ref.get("kind", "")
        plural = _BINDABLE.get(kind)
        if plural is None:
            raise E.bad_request(f"cannot bind token for object of kind {kind!r}: only Pod and Secret "
                                "are supported by the in-memory API server")
        rtype = self.objects.registry.lookup("", "v1", plural)
        assert rtype is not None
        target = self.objects.get(rtype, namespace, ref.get("name", ""))
        uid = target["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            raise E.conflict(rtype.group_resource, ref.get("name", ""),
                             f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
                             "record. The object might have been deleted and then recreated")
        return BoundObject(kind, ref["name"], uid)

    def token_review(self, body: Any) -> dict[str, Any]:
        spec = (body or {}).get("spec") or {}
        audiences = spec.get("audiences") or [API_AUDIENCE]
        user = self.authenticator.authenticate(spec.get("token", ""), audiences)
        status: dict[str, Any]
        if user is None:
            status = {"authenticated": False, "user": {}, "error": "[invalid bearer token, token lookup failed]"}
        else:
            status = {"authenticated": True, "user": user.to_wire(), "audiences": audiences}
        return {"apiVersion": AUTHN, "kind": "TokenReview", "metadata": {"creationTimestamp": None},
                "spec": spec, "status": status}

    def self_subject_review(self, user: UserInfo) -> dict[str, Any]:
        return {"apiVersion": AUTHN, "kind": "SelfSubjectReview", "metadata": {"creationTimestamp": None},
                "status": {"userInfo": user.to_wire()}}

    def access_review(self, rtype: ResourceType, caller: UserInfo, body: Any, namespace: str) -> dict[str, Any]:
        """SelfSubjectAccessReview, SubjectAccessReview and LocalSubjectAccessReview."""
        spec = dict((body or {}).get("spec") or {})
        if rtype.kind == "SelfSubjectAccessReview":
            subject = caller
        else:
            if not spec.get("user") and not spec.get("groups"):
                raise E.invalid_object(rtype.kind, rtype.group, "", [
                    E.invalid("spec.user", "", "at least one of user or group must be specified")])
            subject = UserInfo(spec.get("user", ""), spec.get("uid", ""), tuple(spec.get("groups") or ()),
                               dict(spec.get("extra") or {}))
        resource = spec.get("resourceAttributes")
        non_resource = spec.get("nonResourceAttributes")
        if bool(resource) == bool(non_resource):
            raise E.invalid_object(rtype.kind, rtype.group, "", [E.required(
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified")])
        if resource:
            if rtype.kind == "LocalSubjectAccessReview":
                if resource.get("namespace", namespace) != namespace:
                    raise E.invalid_object(rtype.kind, rtype.group, "", [E.invalid(
                        "spec.resourceAttributes.namespace", resource.get("namespace"),
                        "must match metadata.namespace")])
                resource = {**resource, "namespace": namespace}
            attrs = Attributes(resource.get("verb", ""), resource.get("group", ""), resource.get("resource", ""),
                               resource.get("subresource", ""), resource.get("name", ""),
                               resource.get("namespace", ""))
        else:
            assert isinstance(non_resource, dict)
            attrs = Attributes(non_resource.get("verb", ""), path=non_resource.get("path", "") or "/")
        decision = self.authorizer.authorize(subject, attrs)
        status: dict[str, Any] = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        metadata: dict[str, Any] = {"creationTimestamp": None}
        if rtype.namespaced:
            metadata["namespace"] = namespace
        return {"apiVersion": AUTHZ, "kind": rtype.kind, "metadata": metadata, "spec": spec, "status": status}
