"""RBAC analysis, no I/O: does a rule set allow a request, and which rules are risky.

Matching follows the Kubernetes RBAC authorizer (`rbac/v1` PolicyRule semantics):
`*` matches everything in its field, `resource/subresource` names a subresource,
`*/subresource` matches that subresource of any resource, empty `resourceNames`
matches every name, and non-resource URLs match exactly or by a trailing `*`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from zsp_operator.core.models import PolicyRule

ALL = "*"


@dataclass(frozen=True)
class Attributes:
    """What a request does, as an authorizer sees it."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""  # set for non-resource requests (`/healthz`, `/api`)

    @property
    def is_resource_request(self) -> bool:
        return not self.path


def _verb_matches(rule: PolicyRule, verb: str) -> bool:
    return ALL in rule.verbs or verb in rule.verbs


def _group_matches(rule: PolicyRule, group: str) -> bool:
    return ALL in rule.api_groups or group in rule.api_groups


def _resource_matches(rule: PolicyRule, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for granted in rule.resources:
        if granted in (ALL, combined):
            return True
        if subresource and granted == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: PolicyRule, name: str) -> bool:
    return not rule.resource_names or name in rule.resource_names


def _path_matches(rule: PolicyRule, path: str) -> bool:
    for granted in rule.non_resource_ur_ls:
        if granted in (ALL, path):
            return True
        if granted.endswith(ALL) and path.startswith(granted[:-1]):
            return True
    return False


def rule_allows(rule: PolicyRule, attrs: Attributes) -> bool:
    """True if this one rule permits the request."""
    if not _verb_matches(rule, attrs.verb):
        return False
    if not attrs.is_resource_request:
        return _path_matches(rule, attrs.path)
    return (
        _group_matches(rule, attrs.group)
        and _resource_matches(rule, attrs.resource, attrs.subresource)
        and _name_matches(rule, attrs.name)
    )


def rules_allow(rules: Iterable[PolicyRule], attrs: Attributes) -> bool:
    """True if any rule in the set permits the request."""
    return any(rule_allows(rule, attrs) for rule in rules)


# --- Rule coverage ---------------------------------------------------------------------------


def _split_resource(resource: str) -> tuple[str, str]:
    """`pods/log` -> (`pods`, `log`); `pods` -> (`pods`, ``)."""
    base, _, sub = resource.partition("/")
    return base, sub


def _grant_covers_names(grant: PolicyRule, names: Sequence[str]) -> bool:
    # A request for every name (empty list) is only covered by a grant for every name.
    if not grant.resource_names:
        return True
    return bool(names) and all(name in grant.resource_names for name in names)


def _grant_covers_path(grant: PolicyRule, path: str) -> bool:
    if path.endswith(ALL):
        # A requested prefix is covered by `*` or by a granted prefix that is no longer.
        prefix = path[:-1]
        return any(
            granted == ALL or (granted.endswith(ALL) and prefix.startswith(granted[:-1]))
            for granted in grant.non_resource_ur_ls
        )
    return _path_matches(grant, path)


def _covered_once(grant: PolicyRule, verb: str, group: str, resource: str, names: Sequence[str]) -> bool:
    # The matchers treat a requested `*` as a literal, so it only meets a granted `*`.
    base, sub = _split_resource(resource)
    return (
        _verb_matches(grant, verb)
        and _group_matches(grant, group)
        and _resource_matches(grant, base, sub)
        and _grant_covers_names(grant, names)
    )


def covers(granted: Sequence[PolicyRule], requested: PolicyRule) -> bool:
    """True if every access the requested rule expands to is allowed by the granted rules.

    A `*` in the request is only covered by a `*` in a granted rule, and a request for
    every resource name (empty `resourceNames`) only by a grant for every name.
    """
    for verb in requested.verbs:
        for group in requested.api_groups:
            for resource in requested.resources:
                if not any(
                    _covered_once(g, verb, group, resource, requested.resource_names) for g in granted
                ):
                    return False
        for path in requested.non_resource_ur_ls:
            if not any(_verb_matches(g, verb) and _grant_covers_path(g, path) for g in granted):
                return False
    return True


# --- Permissions that outlive revocation -----------------------------------------------------


class Risk(StrEnum):
    """Why a rule can be used to keep access after its grant is revoked."""

    WILDCARD = "wildcard"
    MINTS_TOKENS = "mints-tokens"
    RUNS_WORKLOADS = "runs-workloads"
    ENTERS_PODS = "enters-pods"
    READS_SECRETS = "reads-secrets"
    WRITES_SECRETS = "writes-secrets"
    WRITES_RBAC = "writes-rbac"
    ESCALATES = "escalates"
    SIGNS_CERTIFICATES = "signs-certificates"
    WRITES_WEBHOOKS = "writes-webhooks"


_WHY: Mapping[Risk, str] = {
    Risk.WILDCARD: "it uses `*`, which grants whatever exists now or is added later, "
    "so it cannot be shown to be safe",
    Risk.MINTS_TOKENS: "it can mint ServiceAccount tokens that outlive the grant",
    Risk.RUNS_WORKLOADS: ("it can create workloads that run as another ServiceAccount and outlive the grant"),
    Risk.ENTERS_PODS: "it can run commands inside pods and use their ServiceAccount tokens",
    Risk.READS_SECRETS: "it can read Secrets, including ServiceAccount token Secrets",
    Risk.WRITES_SECRETS: "it can write Secrets, including planting ServiceAccount token Secrets",
    Risk.WRITES_RBAC: "it can write RBAC objects and so grant itself standing access",
    Risk.ESCALATES: "it can bind, escalate or impersonate beyond its own permissions",
    Risk.SIGNS_CERTIFICATES: "it can obtain signed client certificates that outlive the grant",
    Risk.WRITES_WEBHOOKS: ("it can write admission webhooks that intercept or rewrite every later request"),
}

_WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

_WORKLOADS = (
    ("", "pods"),
    ("", "replicationcontrollers"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
)

_RBAC_GROUP = "rbac.authorization.k8s.io"
_RBAC_RESOURCES = ("roles", "rolebindings", "clusterroles", "clusterrolebindings")
_WEBHOOK_GROUP = "admissionregistration.k8s.io"
_WEBHOOK_RESOURCES = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
_CERT_GROUP = "certificates.k8s.io"

# Concrete requests whose permission makes a rule persistence-capable, by risk.
_PROBES: Mapping[Risk, tuple[Attributes, ...]] = {
    Risk.MINTS_TOKENS: (Attributes("create", "", "serviceaccounts", "token"),),
    Risk.RUNS_WORKLOADS: tuple(Attributes("create", g, r) for g, r in _WORKLOADS),
    Risk.ENTERS_PODS: (
        # Websocket exec/attach was authorised as `get` before Kubernetes 1.30.
        *(Attributes(v, "", "pods", s) for v in ("create", "get") for s in ("exec", "attach")),
        *(Attributes(v, "", "pods", "ephemeralcontainers") for v in ("create", "update", "patch")),
    ),
    Risk.READS_SECRETS: tuple(Attributes(v, "", "secrets") for v in ("get", "list", "watch")),
    Risk.WRITES_SECRETS: tuple(Attributes(v, "", "secrets") for v in ("create", "update", "patch")),
    Risk.WRITES_RBAC: tuple(Attributes(v, _RBAC_GROUP, r) for v in _WRITE_VERBS for r in _RBAC_RESOURCES),
    Risk.SIGNS_CERTIFICATES: (
        Attributes("create", _CERT_GROUP, "certificatesigningrequests"),
        Attributes("update", _CERT_GROUP, "certificatesigningrequests", "approval"),
        Attributes("patch", _CERT_GROUP, "certificatesigningrequests", "approval"),
        Attributes("approve", _CERT_GROUP, "signers"),
    ),
    Risk.WRITES_WEBHOOKS: tuple(
        Attributes(v, _WEBHOOK_GROUP, r) for v in _WRITE_VERBS for r in _WEBHOOK_RESOURCES
    ),
}

# Verbs that are dangerous on any resource: RBAC's own escalation checks are bypassed.
_ESCALATING_VERBS = frozenset({"bind", "escalate", "impersonate"})


@dataclass(frozen=True)
class Finding:
    """A rule that can be used to keep access after revocation, and why."""

    index: int
    rule: PolicyRule
    risks: tuple[Risk, ...]
    why: str  # the risks in words, e.g. "it can mint ServiceAccount tokens that outlive the grant"
    message: str  # one sentence naming the rule and why it is persistence-capable


def describe_rule(rule: PolicyRule) -> str:
    """A rule in YAML flow style, as a policy author wrote it."""

    def items(values: Sequence[str]) -> str:
        return "[" + ", ".join(v if v else '""' for v in values) + "]"

    parts = [f"verbs: {items(rule.verbs)}"]
    if rule.api_groups:
        parts.append(f"apiGroups: {items(rule.api_groups)}")
    if rule.resources:
        parts.append(f"resources: {items(rule.resources)}")
    if rule.resource_names:
        parts.append(f"resourceNames: {items(rule.resource_names)}")
    if rule.non_resource_ur_ls:
        parts.append(f"nonResourceURLs: {items(rule.non_resource_ur_ls)}")
    return "{" + ", ".join(parts) + "}"


def _wildcard_fields(rule: PolicyRule) -> tuple[tuple[str, list[str]], ...]:
    return (("verbs", rule.verbs), ("apiGroups", rule.api_groups), ("resources", rule.resources))


def _uses_wildcard(rule: PolicyRule) -> bool:
    return any(ALL in values for _, values in _wildcard_fields(rule))


class _ByFields:
    """A rule, hashed and compared by its fields: what `rule_risks` depends on."""

    __slots__ = ("fields", "rule")

    def __init__(self, rule: PolicyRule) -> None:
        self.rule = rule
        self.fields = (
            tuple(rule.verbs),
            tuple(rule.api_groups),
            tuple(rule.resources),
            tuple(rule.resource_names),
            tuple(rule.non_resource_ur_ls),
        )

    def __hash__(self) -> int:
        return hash(self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByFields) and self.fields == other.fields


def rule_risks(rule: PolicyRule) -> tuple[Risk, ...]:
    """Every way this rule can be used to keep access after revocation (empty if none)."""
    # Every decision probes every rule of every policy; the rules themselves rarely change.
    return _rule_risks(_ByFields(rule))


@lru_cache(maxsize=4096)
def _rule_risks(key: _ByFields) -> tuple[Risk, ...]:
    rule = key.rule
    if _uses_wildcard(rule):
        # The wildcard subsumes every concrete risk; listing them all would bury the cause.
        return (Risk.WILDCARD,)
    # A name restriction does not help: one named Secret or ServiceAccount is all it takes.
    unnamed = rule.model_copy(update={"resource_names": []})
    risks = [r for r, probes in _PROBES.items() if any(rule_allows(unnamed, p) for p in probes)]
    if _ESCALATING_VERBS.intersection(rule.verbs):
        risks.append(Risk.ESCALATES)
    return tuple(risks)


def persistence_findings(rules: Sequence[PolicyRule]) -> list[Finding]:
    """The rules that can be used to keep access after revocation, one finding per rule."""
    findings = []
    for index, rule in enumerate(rules):
        risks = rule_risks(rule)
        if risks:
            why = ", and ".join(_WHY[r] for r in risks)
            if risks == (Risk.WILDCARD,):
                fields = [f for f, values in _wildcard_fields(rule) if ALL in values]
                why = why.replace("`*`", f"`*` in {', '.join(fields)}", 1)
            message = f"rule {index} {describe_rule(rule)} can outlive revocation: {why}"
            findings.append(Finding(index, rule, risks, why, message))
    return findings
