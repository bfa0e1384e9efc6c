"""Audit events as kube-apiserver writes them with `--audit-policy-file`.

An audit.k8s.io/v1 Policy picks a level for each request (its rules in order, first match
wins); a request at a level other than None becomes one `audit.k8s.io/v1` Event at stage
ResponseComplete, which `Auditor` hands to a sink (the batching webhook of `auditwebhook`).

Approximations: only the ResponseComplete stage is emitted (RequestReceived and
ResponseStarted never are), and Request/RequestResponse levels are named in the event but
carry no request or response bodies. The event's `objectRef.name` is the URL's, so creates
have none. Requests that fail authentication (401) produce no event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zsp_operator.core.rbac import Attributes
from zsp_operator.sim.auth import UserInfo
from zsp_operator.sim.http import Exchange

API_VERSION = "audit.k8s.io/v1"
LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
STAGE = "ResponseComplete"  # the only stage emitted here
DECISION = "authorization.k8s.io/decision"
REASON = "authorization.k8s.io/reason"

_POLICY_KEYS = {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
_RULE_KEYS = {
    "level",
    "users",
    "userGroups",
    "verbs",
    "resources",
    "namespaces",
    "nonResourceURLs",
    "omitStages",
    "omitManagedFields",
}
_GROUP_KEYS = {"group", "resources", "resourceNames"}


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()

    def matches(self, attrs: Attributes) -> bool:
        """The real policy checker's rules: `r`, `r/sub`, `*`, `*/sub` and `r/*` forms."""
        if attrs.group != self.group:
            return False
        if not self.resources:
            return True
        if self.resource_names and attrs.name not in self.resource_names:
            return False
        sub = attrs.subresource
        combined = f"{attrs.resource}/{sub}" if sub else attrs.resource
        return any(
            spec in ("*", combined)
            or (bool(sub) and spec == f"*/{sub}")
            or (spec.endswith("/*") and spec[:-2] == attrs.resource)
            for spec in self.resources
        )


@dataclass(frozen=True)
class PolicyRule:
    level: str
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: tuple[str, ...] = ()

    def matches(self, user: UserInfo, attrs: Attributes) -> bool:
        if self.users and user.username not in self.users:
            return False
        if self.user_groups and not set(self.user_groups).intersection(user.groups):
            return False
        if self.verbs and attrs.verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            if not attrs.is_resource_request:
                return False
            if self.namespaces and attrs.namespace not in self.namespaces:
                return False  # cluster-scoped requests have the namespace ""
            return not self.resources or any(group.matches(attrs) for group in self.resources)
        if self.non_resource_urls:
            return not attrs.is_resource_request and any(
                _path_matches(attrs.path, spec) for spec in self.non_resource_urls
            )
        return True


def _path_matches(path: str, spec: str) -> bool:
    return spec in ("*", path) or (spec.endswith("*") and path.startswith(spec.rstrip("*")))


@dataclass(frozen=True)
class Policy:
    rules: tuple[PolicyRule, ...]
    omit_stages: tuple[str, ...] = ()

    def evaluate(self, user: UserInfo, attrs: Attributes) -> tuple[str, tuple[str, ...]]:
        """The level of a request and the stages not to log; no matching rule means None."""
        for rule in self.rules:
            if rule.matches(user, attrs):
                return rule.level, (*self.omit_stages, *rule.omit_stages)
        return "None", self.omit_stages


# --- parsing ------------------------------------------------------------------------------------


def load_policy(path: str | Path) -> Policy:
    """Read a Policy file; a malformed one is a ValueError naming the field, as the server fails."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"audit policy {path}: not YAML: {error}") from error
    try:
        return parse_policy(document)
    except ValueError as error:
        raise ValueError(f"audit policy {path}: {error}") from error


def parse_policy(document: Any) -> Policy:
    mapping = _mapping(document, "policy", _POLICY_KEYS)
    if mapping.get("apiVersion") != API_VERSION:
        raise ValueError(f"apiVersion: must be {API_VERSION}, not {mapping.get('apiVersion')!r}")
    if mapping.get("kind") != "Policy":
        raise ValueError(f"kind: must be Policy, not {mapping.get('kind')!r}")
    rules = [] if mapping.get("rules") is None else mapping["rules"]
    if not isinstance(rules, list):
        raise ValueError("rules: must be a list")
    return Policy(
        tuple(_rule(rule, f"rules[{index}]") for index, rule in enumerate(rules)),
        _stages(mapping.get("omitStages"), "omitStages"),
    )


def _rule(raw: Any, where: str) -> PolicyRule:
    mapping = _mapping(raw, where, _RULE_KEYS)
    level = mapping.get("level")
    if level not in LEVELS:
        raise ValueError(f"{where}.level: must be one of {', '.join(LEVELS)}, not {level!r}")
    urls = _strings(mapping.get("nonResourceURLs"), f"{where}.nonResourceURLs")
    namespaces = _strings(mapping.get("namespaces"), f"{where}.namespaces")
    resources = [] if mapping.get("resources") is None else mapping["resources"]
    if not isinstance(resources, list):
        raise ValueError(f"{where}.resources: must be a list")
    if urls and (namespaces or resources):
        raise ValueError(
            f"{where}.nonResourceURLs: rules cannot apply to both regular resources and non-resource URLs"
        )
    for index, url in enumerate(urls):
        if url != "*" and not url.startswith("/"):
            raise ValueError(f"{where}.nonResourceURLs[{index}]: must begin with a '/' character")
        if "*" in url[:-1]:
            raise ValueError(f"{where}.nonResourceURLs[{index}]: '*' must be the final character")
    return PolicyRule(
        level=level,
        users=_strings(mapping.get("users"), f"{where}.users"),
        user_groups=_strings(mapping.get("userGroups"), f"{where}.userGroups"),
        verbs=_strings(mapping.get("verbs"), f"{where}.verbs"),
        resources=tuple(
            _group_resources(item, f"{where}.resources[{index}]") for index, item in enumerate(resources)
        ),
        namespaces=namespaces,
        non_resource_urls=urls,
        omit_stages=_stages(mapping.get("omitStages"), f"{where}.omitStages"),
    )


def _group_resources(raw: Any, where: str) -> GroupResources:
    mapping = _mapping(raw, where, _GROUP_KEYS)
    group = mapping.get("group") or ""
    if not isinstance(group, str):
        raise ValueError(f"{where}.group: must be a string")
    resources = _strings(mapping.get("resources"), f"{where}.resources")
    names = _strings(mapping.get("resourceNames"), f"{where}.resourceNames")
    if names and not resources:
        raise ValueError(f"{where}.resourceNames: using resourceNames requires at least one resource")
    return GroupResources(group, resources, names)


def _mapping(raw: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field")
    return raw


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise ValueError(f"{where}: must be a list of strings")
    return tuple(raw)


def _stages(raw: Any, where: str) -> tuple[str, ...]:
    stages = _strings(raw, where)
    for index, stage in enumerate(stages):
        if stage not in STAGES:
            raise ValueError(f"{where}[{index}]: must be one of {', '.join(STAGES)}, not {stage!r}")
    return stages


# --- events -------------------------------------------------------------------------------------


def timestamp(seconds: float) -> str:
    """RFC 3339 with microseconds, the audit API's MicroTime."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def source_ips(forwarded_for: str, real_ip: str, remote: str | None) -> list[str]:
    """X-Forwarded-For, then X-Real-Ip, then the peer, as the real server lists them."""
    ips = [ip.strip() for ip in forwarded_for.split(",") if ip.strip()]
    for ip in (real_ip.strip(), remote or ""):
        if ip and (not ips or ips[-1] != ip):
            ips.append(ip)
    return ips


def _object_ref(exchange: Exchange) -> dict[str, str] | None:
    info = exchange.info
    if info is None:
        return None
    ref = {
        "resource": info.resource,
        "namespace": info.namespace,
        "name": info.name,
        "apiGroup": info.group,
        "apiVersion": info.version,
        "subresource": info.subresource,
    }
    return {key: value for key, value in ref.items() if value}


def _response_status(exchange: Exchange) -> dict[str, Any]:
    if exchange.code is None:  # the client left first: the real server's stand-in status
        if exchange.streaming:
            return {"metadata": {}, "code": 200}
        return {"metadata": {}, "status": "Success", "message": "Connection closed early", "code": 200}
    status: dict[str, Any] = {"metadata": {}}
    if exchange.status is not None:
        kept = ("status", "message", "reason", "details")
        status.update({key: exchange.status[key] for key in kept if exchange.status.get(key)})
    status["code"] = exchange.code
    return status


def build_event(exchange: Exchange, level: str, user: UserInfo) -> dict[str, Any]:
    """The audit.k8s.io/v1 Event of a completed request, with the real server's field names."""
    request = exchange.request
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": API_VERSION,
        "level": level,
        "auditID": exchange.audit_id,
        "stage": STAGE,
        "requestURI": request.raw_path,
        "verb": exchange.attrs.verb if exchange.attrs else request.method.lower(),
        "user": user.to_wire(),
    }
    if exchange.impersonated is not None:
        event["impersonatedUser"] = exchange.impersonated.to_wire()
    headers = request.headers
    event["sourceIPs"] = source_ips(
        headers.get("X-Forwarded-For", ""), headers.get("X-Real-Ip", ""), request.remote
    )
    if headers.get("User-Agent"):
        event["userAgent"] = headers["User-Agent"]
    ref = _object_ref(exchange)
    if ref is not None:
        event["objectRef"] = ref
    event["responseStatus"] = _response_status(exchange)
    event["requestReceivedTimestamp"] = timestamp(exchange.received)
    event["stageTimestamp"] = timestamp(exchange.completed)
    if exchange.decision is not None:
        event["annotations"] = {
            DECISION: "allow" if exchange.decision.allowed else "forbid",
            REASON: exchange.decision.reason,
        }
    return event


class Auditor:
    """Decides each completed request's level and passes its event to a non-blocking sink."""

    def __init__(self, policy: Policy, sink: Callable[[dict[str, Any]], None]) -> None:
        self.policy = policy
        self.sink = sink

    def __call__(self, exchange: Exchange) -> None:
        user, attrs = exchange.user, exchange.attrs
        if user is None or attrs is None:
            return  # not authenticated
        level, omitted = self.policy.evaluate(user, attrs)
        if level == "None" or STAGE in omitted:
            return
        self.sink(build_event(exchange, level, user))
