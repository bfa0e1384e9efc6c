"""The standing-privilege report of `zsp audit`, built from listed objects. No I/O.

Every non-system subject that any RoleBinding or ClusterRoleBinding names is reported with
the bindings that name it (each one: held by a live grant, orphaned, tampered, forged, or
unmanaged standing privilege), what it can do in each namespace (the union of its rules),
and which of those rules can outlive revocation (`core.rbac.persistence_findings`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from zsp_operator.core import constants as c
from zsp_operator.core.bindings import (
    Binding,
    RoleKey,
    State,
    SubjectRef,
    allowlisted,
    check_managed,
    is_system_binding,
    is_system_subject,
    parse_binding,
    role_key,
    rule_key,
)
from zsp_operator.core.models import PolicyRule, TaskGrant
from zsp_operator.core.rbac import describe_rule, rule_risks

Body = Mapping[str, Any]
RuleKey = tuple[tuple[str, ...], ...]

# A subject holding privilege through a binding in one of these states holds it without a grant.
STANDING_STATES = frozenset({State.STANDING, State.ORPHANED, State.TAMPERED, State.FORGED, State.UNVERIFIED})


@dataclass(frozen=True)
class BindingFinding:
    """One binding that names the subject, and what it is."""

    binding: Binding
    state: State
    message: str
    grant: str | None = None  # "namespace/name" of the grant it belongs to, if any
    persistence_capable_grant: bool = False
    role_missing: bool = False  # its role does not exist: it grants nothing until someone creates it
    enforced: bool = False  # its namespace is labelled zsp.dev/enforce: "true"

    @property
    def standing(self) -> bool:
        return self.state in STANDING_STATES


@dataclass(frozen=True)
class RuleFinding:
    rule: Mapping[str, Any]
    text: str  # the rule as a policy author writes it
    standing: bool  # held through at least one binding without a live grant
    risks: tuple[str, ...]  # why it can outlive revocation; empty if it cannot


@dataclass(frozen=True)
class Scope:
    """What a subject can do in one namespace, or cluster-wide (namespace None)."""

    namespace: str | None
    rules: tuple[RuleFinding, ...]


@dataclass(frozen=True)
class SubjectReport:
    subject: SubjectRef
    exists: bool | None  # ServiceAccounts only: does it exist (else whoever creates it inherits all this)
    bindings: tuple[BindingFinding, ...]
    scopes: tuple[Scope, ...]

    @property
    def standing(self) -> bool:
        return any(b.standing for b in self.bindings)

    @property
    def persistence_capable(self) -> bool:
        """Its standing privilege includes a rule that can outlive revocation."""
        return any(r.standing and r.risks for scope in self.scopes for r in scope.rules)

    @property
    def persistence_capable_grant(self) -> bool:
        return any(b.persistence_capable_grant for b in self.bindings)


@dataclass(frozen=True)
class Summary:
    subjects: int
    standing: int
    persistence: int
    bindings: Mapping[str, int]  # by state
    persistence_grants: int

    def line(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.bindings.items())) or "none"
        return (
            f"{self.subjects} subject(s) hold privilege, {self.standing} of them standing "
            f"({self.persistence} persistence-capable); bindings: {counts}; "
            f"{self.persistence_grants} live persistence-capable grant(s)"
        )


@dataclass(frozen=True)
class Report:
    subjects: tuple[SubjectReport, ...]
    summary: Summary


@dataclass
class _Accumulator:
    bindings: list[BindingFinding] = field(default_factory=list)
    # scope -> rule key -> (rule, standing)
    rules: dict[str | None, dict[RuleKey, tuple[Mapping[str, Any], bool]]] = field(default_factory=dict)


class _RuleAnalysis:
    """Describes and analyses each distinct rule once: most roles share their rules."""

    def __init__(self) -> None:
        self._cache: dict[RuleKey, tuple[str, tuple[str, ...]]] = {}

    def __call__(self, key: RuleKey, raw: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
        known = self._cache.get(key)
        if known is None:
            try:
                rule = PolicyRule.model_validate(raw)
            except ValidationError:
                known = (str(dict(raw)), ())
            else:
                known = (describe_rule(rule), tuple(r.value for r in rule_risks(rule)))
            self._cache[key] = known
        return known


def index_roles(roles: Iterable[Body], cluster_roles: Iterable[Body]) -> dict[RoleKey, list[Any]]:
    """Rules of every Role and ClusterRole, by role key."""
    index: dict[RoleKey, list[Any]] = {}
    for kind, items in (("Role", roles), ("ClusterRole", cluster_roles)):
        for body in items:
            meta = body.get("metadata") or {}
            index[role_key(kind, meta.get("namespace"), meta.get("name", ""))] = list(body.get("rules") or [])
    return index


def index_grants(grants: Iterable[Body]) -> dict[str, TaskGrant]:
    """TaskGrants by uid; one that does not parse is left out (its bindings show as orphaned)."""
    index: dict[str, TaskGrant] = {}
    for body in grants:
        try:
            grant = TaskGrant.model_validate(body)
        except ValidationError:
            continue
        index[grant.metadata.uid] = grant
    return index


def _finding(
    binding: Binding,
    grants: Mapping[str, TaskGrant] | None,
    roles: Mapping[RoleKey, Sequence[Any]],
    labels: Mapping[str, Mapping[str, str]],
    allowlist: Sequence[str],
) -> BindingFinding:
    enforced = labels.get(binding.namespace, {}).get(c.LABEL_ENFORCE) == "true"
    missing = binding.role_key not in roles
    if binding.managed:
        if grants is None:
            return BindingFinding(
                binding,
                State.UNVERIFIED,
                f"{binding} carries the operator's labels, but TaskGrants could not be read",
                role_missing=missing,
                enforced=enforced,
            )
        check = check_managed(binding, grants, roles)
        grant = check.grant
        return BindingFinding(
            binding,
            check.state,
            check.message,
            grant=f"{grant.namespace}/{grant.name}" if grant else None,
            persistence_capable_grant=bool(
                grant and check.state is State.GRANTED and grant.spec.persistence_capable
            ),
            role_missing=missing,
            enforced=enforced,
        )
    entry = allowlisted(binding, allowlist)
    if entry is not None:
        return BindingFinding(
            binding,
            State.ALLOWLISTED,
            f"{binding} is allowlisted by {entry!r}",
            role_missing=missing,
            enforced=enforced,
        )
    message = f"{binding} grants {binding.role_ref} with no grant behind it: standing privilege"
    if missing:
        message += f"; {binding.role_ref} does not exist, so it grants nothing until someone creates it"
    return BindingFinding(binding, State.STANDING, message, role_missing=missing, enforced=enforced)


def build_report(
    *,
    bindings: Iterable[Body],
    roles: Iterable[Body],
    cluster_roles: Iterable[Body],
    namespaces: Iterable[Body],
    service_accounts: Iterable[Body] | None,
    grants: Iterable[Body] | None,
    allowlist: Sequence[str] = (),
) -> Report:
    """The report over everything listed.

    Parameters:
        service_accounts: every ServiceAccount; None when they could not be read, which
            leaves whether a ServiceAccount subject exists unknown.
        grants: the cluster's TaskGrants; None when they could not be read, which leaves
            bindings with the operator's labels `unverified`.
        allowlist: bindings accepted as they are (`NS/NAME` or `NAME`, wildcards allowed).
    """
    role_index = index_roles(roles, cluster_roles)
    grant_index = None if grants is None else index_grants(grants)
    labels = {
        (ns.get("metadata") or {}).get("name", ""): dict((ns.get("metadata") or {}).get("labels") or {})
        for ns in namespaces
    }
    accounts = None
    if service_accounts is not None:
        accounts = {
            ((sa.get("metadata") or {}).get("namespace", ""), (sa.get("metadata") or {}).get("name", ""))
            for sa in service_accounts
        }
    by_subject: dict[SubjectRef, _Accumulator] = {}
    states: Counter[str] = Counter()
    persistence_grants: set[str] = set()
    keyed: dict[RoleKey, list[tuple[RuleKey, Mapping[str, Any]]]] = {}
    for body in bindings:
        binding = parse_binding(body)
        if is_system_binding(binding):
            continue
        subjects = [s for s in binding.subjects if not is_system_subject(s)]
        if not subjects:
            continue
        finding = _finding(binding, grant_index, role_index, labels, allowlist)
        states[finding.state.value] += 1
        if finding.persistence_capable_grant and finding.grant:
            persistence_grants.add(finding.grant)
        scope = None if binding.cluster_wide else binding.namespace
        rules = keyed.get(binding.role_key)
        if rules is None:
            # Each role's rules are put in canonical form once: many bindings share a role.
            rules = keyed[binding.role_key] = [
                (rule_key(raw), raw) for raw in role_index.get(binding.role_key, ())
            ]
        for subject in subjects:
            acc = by_subject.setdefault(subject, _Accumulator())
            acc.bindings.append(finding)
            held = acc.rules.setdefault(scope, {})
            for key, raw in rules:
                previous = held.get(key)
                held[key] = (raw, finding.standing or (previous is not None and previous[1]))
    analyse = _RuleAnalysis()
    reports = []
    for subject in sorted(by_subject, key=lambda s: (s.kind, s.namespace, s.name)):
        acc = by_subject[subject]
        scopes = []
        for scope in sorted(acc.rules, key=lambda s: (s is not None, s or "")):
            held = acc.rules[scope]
            findings = []
            # Grouped by what they act on (apiGroups, resources...) rather than by verbs.
            for key in sorted(held, key=lambda k: (*k[1:], k[0])):
                raw, standing = held[key]
                text, risks = analyse(key, raw)
                findings.append(RuleFinding(raw, text, standing, risks))
            scopes.append(Scope(scope, tuple(findings)))
        exists = None
        if subject.kind == "ServiceAccount" and accounts is not None:
            exists = (subject.namespace, subject.name) in accounts
        ordered = sorted(acc.bindings, key=lambda f: (f.binding.kind, f.binding.namespace, f.binding.name))
        reports.append(SubjectReport(subject, exists, tuple(ordered), tuple(scopes)))
    summary = Summary(
        subjects=len(reports),
        standing=sum(r.standing for r in reports),
        persistence=sum(r.persistence_capable for r in reports),
        bindings=dict(states),
        persistence_grants=len(persistence_grants),
    )
    return Report(tuple(reports), summary)


def subject_json(report: SubjectReport) -> dict[str, Any]:
    """One subject of the report as JSON-ready data (the `zsp audit -o json` shape)."""
    s = report.subject
    return {
        "kind": s.kind,
        "namespace": s.namespace or None,
        "name": s.name,
        "exists": report.exists,
        "standing": report.standing,
        "persistenceCapable": report.persistence_capable,
        "persistenceCapableGrant": report.persistence_capable_grant,
        "bindings": [
            {
                "kind": f.binding.kind,
                "namespace": f.binding.namespace or None,
                "name": f.binding.name,
                "roleRef": {"kind": f.binding.role_ref.kind, "name": f.binding.role_ref.name},
                "state": f.state.value,
                "message": f.message,
                "grant": f.grant,
                "persistenceCapableGrant": f.persistence_capable_grant,
                "roleMissing": f.role_missing,
                "enforced": f.enforced,
            }
            for f in report.bindings
        ],
        "scopes": [
            {
                "namespace": scope.namespace,
                "rules": [
                    {"rule": dict(r.rule), "text": r.text, "standing": r.standing, "risks": list(r.risks)}
                    for r in scope.rules
                ],
            }
            for scope in report.scopes
        ],
    }


def report_json(report: Report) -> dict[str, Any]:
    summary = report.summary
    return {
        "subjects": [subject_json(s) for s in report.subjects],
        "summary": {
            "subjects": summary.subjects,
            "standing": summary.standing,
            "persistence": summary.persistence,
            "bindings": dict(sorted(summary.bindings.items())),
            "persistenceGrants": summary.persistence_grants,
            "text": summary.line(),
        },
    }
