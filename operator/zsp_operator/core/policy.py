"""Policy evaluation, no I/O: (request, policies, grants, namespace labels, now) -> Decision.

A denial says which policy came closest (the fewest mismatches) and lists every reason it did
not match; the other policies are checked only as far as it takes to rule them out. Each message names the field at fault and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any

from zsp_operator.core import conditions
from zsp_operator.core.constants import LABEL_ENVIRONMENT
from zsp_operator.core.durations import format_duration
from zsp_operator.core.grantindex import GrantIndex
from zsp_operator.core.models import (
    AccessPolicy,
    AccessRequest,
    LabelSelector,
    NamespacedName,
    PolicyRule,
    Subject,
    SubjectKind,
    TaskGrant,
    UserInfo,
)
from zsp_operator.core.rbac import covers, describe_rule, persistence_findings

_NO_CATALOG: Mapping[str, Sequence[PolicyRule]] = MappingProxyType({})

# Names a rule in messages by its index: `rule 0 of permission "deploy"`, `spec.rules[0]`.
_Where = Callable[[int], str]


class Outcome(StrEnum):
    ALLOWED = "allowed"
    PENDING = "pending"
    DENIED = "denied"


@dataclass(frozen=True)
class Decision:
    """The result of evaluating one request against the policies.

    For a denial, `policy`, `permission`, `rules`, `cluster_role` and `persistence` describe the
    closest policy, `mismatches` says why it did not match, and `ttl` is None: nothing is granted.
    """

    outcome: Outcome
    reason: str
    policy: str | None
    ttl: timedelta | None = None
    permission: str | None = None
    rules: tuple[PolicyRule, ...] = ()
    cluster_role: str | None = None
    persistence: tuple[str, ...] = ()
    break_glass: bool = False
    approvals_required: int = 0
    mismatches: tuple[str, ...] = ()
    # For a denial whose closest policy failed a condition: that condition.
    unmet: conditions.Unmet | None = None

    @property
    def persistence_capable(self) -> bool:
        """True if the granted rules can be used to keep access after revocation."""
        return bool(self.persistence)


# --- Label selectors ------------------------------------------------------------------------


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches everything."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def describe_selector(selector: LabelSelector) -> str:
    """`team=payments, zsp.dev/environment in (staging)`; `everything` for an empty selector."""
    parts = [f"{key}={value}" for key, value in selector.match_labels.items()]
    for req in selector.match_expressions:
        if req.operator in ("In", "NotIn"):
            op = "in" if req.operator == "In" else "notin"
            parts.append(f"{req.key} {op} ({', '.join(req.values)})")
        else:
            parts.append(req.key if req.operator == "Exists" else f"!{req.key}")
    return ", ".join(parts) or "everything"


# --- Helpers for messages ---------------------------------------------------------------------


def describe_subject(subject: Subject) -> str:
    if subject.kind is SubjectKind.SERVICE_ACCOUNT:
        return f"ServiceAccount {subject.namespace}/{subject.name}"
    return f"{subject.kind.value} {subject.name}"


def _subject_matches(subject: Subject, user: UserInfo) -> bool:
    if subject.kind is SubjectKind.GROUP:
        return subject.name in user.groups
    return subject.username == user.username


def _listing(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "(none)"


def _ref(name: NamespacedName) -> str:
    return f"{name.namespace}/{name.name}"


def _grant_ref(grant: TaskGrant) -> str:
    return f"{grant.namespace}/{grant.name}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# --- Evaluation of one policy ---------------------------------------------------------------


@dataclass(frozen=True)
class ConditionObjects:
    """Objects conditions may read that the request only names: its grantee and its task."""

    grantee: Mapping[str, Any] | None = None
    task: Mapping[str, Any] | None = None


@dataclass
class _Inputs:
    """What every check reads; built once per decision."""

    request: AccessRequest
    grants: GrantIndex
    now: datetime
    namespace_labels: Mapping[str, Mapping[str, str]]
    catalog: Mapping[str, Sequence[PolicyRule]] = field(default_factory=lambda: _NO_CATALOG)
    break_glass_max_ttl: timedelta = timedelta(hours=1)
    objects: ConditionObjects = field(default_factory=ConditionObjects)

    def labels_of(self, namespace: str) -> Mapping[str, str]:
        return self.namespace_labels.get(namespace, {})

    # Live means in force at `now` and not this request's own grant: re-deciding an active
    # request must not count its own grant. The index answers without scanning other grants.

    @cached_property
    def held_by_grantee(self) -> list[TaskGrant]:
        """Live grants of the requested ServiceAccount (none for an ephemeral grantee)."""
        account = self.request.spec.grantee.service_account
        if account is None:
            return []
        return self.grants.held_by((account.namespace, account.name), self.now, self.request.metadata.uid)

    @cached_property
    def filed_by_requester(self) -> int:
        requester = self.request.status.requester
        if requester is None:
            return 0
        return self.grants.count_by_requester(requester.username, self.now, self.request.metadata.uid)

    def issued_under(self, policy: str) -> int:
        return self.grants.count_by_policy(policy, self.now, self.request.metadata.uid)

    @cached_property
    def _condition_data(self) -> dict[str, Any]:
        """The request as conditions see it, converted once per decision (only if a policy has any)."""
        request = self.request
        wire = request.model_dump(mode="json", by_alias=True, exclude_none=True)
        requester = request.status.requester
        account = request.spec.grantee.service_account
        grantee = self.objects.grantee
        if grantee is None:
            grantee = (
                {"metadata": {"name": account.name, "namespace": account.namespace}}
                if account is not None
                else {"ephemeral": True}
            )
        return {
            "request": {"metadata": wire.get("metadata", {}), "spec": wire.get("spec", {})},
            "requester": requester.model_dump(mode="json", exclude_none=True) if requester else {},
            "namespace": {
                "metadata": {"name": request.namespace, "labels": dict(self.labels_of(request.namespace))}
            },
            "grantee": grantee,
        }

    def condition_inputs(self, policy: str) -> conditions.Inputs:
        data = self._condition_data
        return conditions.Inputs(
            request=data["request"],
            requester=data["requester"],
            namespace=data["namespace"],
            grantee=data["grantee"],
            task=self.objects.task,
            now=self.now,
            active_grants={
                "grantee": len(self.held_by_grantee),
                "requester": self.filed_by_requester,
                "policy": self.issued_under(policy),
            },
        )


@dataclass
class _Evaluation:
    """One policy checked against the request: what it would grant and what failed."""

    policy: AccessPolicy
    ttl: timedelta
    # Why it does not match. Most are written out only if this policy is the one a denial names:
    # with many policies, writing every policy's reasons is most of a decision's work.
    mismatches: list[str | Callable[[], str]] = field(default_factory=list)
    permission: str | None = None
    rules: tuple[PolicyRule, ...] = ()
    cluster_role: str | None = None
    persistence: list[str] = field(default_factory=list)
    unmet: conditions.Unmet | None = None
    checked: int = 0  # how many of _CHECKS have run

    @property
    def name(self) -> str:
        return self.policy.name

    def miss(self, message: str | Callable[[], str]) -> None:
        self.mismatches.append(message)

    def written_mismatches(self) -> list[str]:
        return [m if isinstance(m, str) else m() for m in self.mismatches]

    @property
    def approvals_required(self) -> int:
        # Break-glass never waits for approval: that is its point.
        return 0 if self.policy.spec.break_glass else self.policy.spec.approval.required


def _check_requester(inputs: _Inputs, ev: _Evaluation) -> None:
    requester = inputs.request.status.requester
    name = ev.name
    if requester is None:
        ev.miss(
            lambda: (
                "status.requester is empty, so the request has no authenticated requester: create "
                "the AccessRequest through the API server so the admission webhook records who filed it"
            )
        )
        return
    allowed = ev.policy.spec.requesters
    if not allowed:
        ev.miss(
            lambda: (
                f'requesters of policy "{name}" is empty, so nobody may file requests under it: '
                f'add "{requester.username}" (or one of its groups) to requesters'
            )
        )
    elif not any(_subject_matches(s, requester) for s in allowed):
        ev.miss(
            lambda: (
                f'requester "{requester.username}" (groups: {_listing(requester.groups)}) is not '
                f'among the requesters of policy "{name}" ({_listing([describe_subject(s) for s in allowed])}): '
                f"file the request as one of them, or add this identity to requesters"
            )
        )


def _check_namespace(inputs: _Inputs, ev: _Evaluation) -> None:
    namespace = inputs.request.namespace
    where = ev.policy.spec.namespaces
    labels = inputs.labels_of(namespace)
    if namespace in where.names:
        return
    if where.selector is not None and selector_matches(where.selector, labels):
        return
    if not where.names and where.selector is None:
        ev.miss(
            lambda: (
                f'namespaces of policy "{ev.name}" has neither names nor a selector, so grants may '
                f'land nowhere: add "{namespace}" to namespaces.names or set namespaces.selector'
            )
        )
        return

    def message() -> str:
        allowed = [f"namespaces.names ({_listing(where.names)})"]
        if where.selector is not None:
            allowed.append(f"namespaces.selector ({describe_selector(where.selector)})")
        shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "no labels"
        return (
            f'namespace "{namespace}" ({shown}) is not allowed by {" or ".join(allowed)} of policy '
            f'"{ev.name}": file the request in an allowed namespace, or widen the policy\'s namespaces'
        )

    ev.miss(message)


def _check_grantee(inputs: _Inputs, ev: _Evaluation) -> None:
    spec = inputs.request.spec
    grantees = ev.policy.spec.grantees
    account = spec.grantee.service_account
    if account is not None:
        # By fields: pydantic's model equality costs more than every other check of a policy.
        namespace, name = account.namespace, account.name
        if not any(g.name == name and g.namespace == namespace for g in grantees.service_accounts):
            ev.miss(
                lambda: (
                    f"spec.grantee.serviceAccount {_ref(account)} is not among "
                    f'grantees.serviceAccounts of policy "{ev.name}" '
                    f"({_listing([_ref(g) for g in grantees.service_accounts])}): name one of them, "
                    f"or add it to grantees.serviceAccounts"
                )
            )
        return
    ephemeral = grantees.ephemeral
    if ephemeral is None or not ephemeral.enabled:
        ev.miss(
            lambda: (
                f'spec.grantee.ephemeral is not allowed by policy "{ev.name}" '
                f"(grantees.ephemeral.enabled is not true): name an existing ServiceAccount in "
                f"spec.grantee.serviceAccount, or enable ephemeral grantees on the policy"
            )
        )
        return
    delivery = spec.delivery
    if delivery is None:
        ev.miss(
            lambda: (
                "spec.delivery is missing: an ephemeral grantee's kubeconfig needs a Secret to go "
                "to, so set spec.delivery.namespace and spec.delivery.secretName"
            )
        )
    elif delivery.namespace not in ephemeral.delivery_namespaces:
        ev.miss(
            lambda: (
                f'spec.delivery.namespace "{delivery.namespace}" is not in '
                f'grantees.ephemeral.deliveryNamespaces of policy "{ev.name}" '
                f"({_listing(ephemeral.delivery_namespaces)}): deliver to one of them"
            )
        )


def _check_named_permission(inputs: _Inputs, ev: _Evaluation, wanted: str) -> None:
    permission = ev.policy.spec.permission(wanted)
    if permission is None:
        ev.miss(
            lambda: (
                f'spec.permission "{wanted}" is not a permission of policy "{ev.name}": use one of '
                f"{_listing([p.name for p in ev.policy.spec.permissions])}"
            )
        )
        return
    ev.permission = wanted
    if permission.rules is not None:
        ev.rules = tuple(permission.rules)

        def where(index: int) -> str:
            return f'rule {index} of permission "{wanted}"'

        _check_role_rules(ev, permission.rules, where, f'policy "{ev.name}"')
        _check_persistence(ev, permission.rules, where)
        return
    role = permission.cluster_role or ""
    ev.cluster_role = role
    if role not in inputs.catalog:
        ev.miss(
            lambda: (
                f'permission "{wanted}" of policy "{ev.name}" uses ClusterRole "{role}", which is '
                f"not in the operator's catalog: add it to the catalog, or give the permission "
                f"inline rules"
            )
        )
        return
    _check_persistence(ev, inputs.catalog[role], lambda i: f'rule {i} of ClusterRole "{role}"')


def _granted_rules(inputs: _Inputs, ev: _Evaluation) -> list[PolicyRule]:
    """Every rule the policy's permissions grant; uncatalogued ClusterRoles grant nothing."""
    granted: list[PolicyRule] = []
    for permission in ev.policy.spec.permissions:
        if permission.rules is not None:
            granted.extend(permission.rules)
        elif permission.cluster_role is not None:
            granted.extend(inputs.catalog.get(permission.cluster_role, ()))
    return granted


def _check_role_rules(ev: _Evaluation, rules: Sequence[PolicyRule], where: _Where, fix: str) -> None:
    """Rules the grant's namespaced Role could not hold, or that would grant nothing."""
    for index, rule in enumerate(rules):
        if rule.non_resource_ur_ls:
            ev.miss(
                f"{where(index)} {describe_rule(rule)} has nonResourceURLs, which a grant's "
                f"namespaced Role cannot hold: remove them from {fix}"
            )
        elif not rule.api_groups or not rule.resources:
            ev.miss(
                f"{where(index)} {describe_rule(rule)} grants nothing without apiGroups and "
                f'resources: set both in {fix} (apiGroups: [""] is the core group)'
            )


def _check_explicit_rules(inputs: _Inputs, ev: _Evaluation, rules: Sequence[PolicyRule]) -> None:
    ev.rules = tuple(rules)
    granted = _granted_rules(inputs, ev)
    _check_role_rules(ev, rules, lambda i: f"spec.rules[{i}]", "the request")
    for index, rule in enumerate(rules):
        if rule.non_resource_ur_ls or not rule.api_groups or not rule.resources:
            continue  # already reported as malformed
        if not covers(granted, rule):
            ev.miss(
                f"spec.rules[{index}] {describe_rule(rule)} is not covered by the permissions of "
                f'policy "{ev.name}" ({_listing([p.name for p in ev.policy.spec.permissions])}): '
                f"narrow it to what they grant, or name one of them in spec.permission"
            )
    _check_persistence(ev, rules, lambda i: f"spec.rules[{i}]")


def _check_persistence(ev: _Evaluation, rules: Sequence[PolicyRule], where: _Where) -> None:
    for finding in persistence_findings(rules):
        sentence = f"{where(finding.index)} {describe_rule(finding.rule)} can outlive "
        sentence += f"revocation: {finding.why}"
        ev.persistence.append(sentence)
        if not ev.policy.spec.allow_persistence:
            ev.miss(
                f'{sentence}, and policy "{ev.name}" does not allow that: narrow the rule, or set '
                f"allowPersistence: true on the policy if this is intended"
            )


def _check_ttl(inputs: _Inputs, ev: _Evaluation) -> None:
    spec = ev.policy.spec
    asked = inputs.request.spec.ttl
    capped = spec.break_glass and inputs.break_glass_max_ttl < spec.max_ttl
    limit = inputs.break_glass_max_ttl if capped else spec.max_ttl
    if asked is not None and asked <= timedelta(0):
        ev.miss(lambda: f"spec.ttl {format_duration(asked)} is not positive: ask for a duration such as 15m")
    elif ev.ttl <= timedelta(0):
        ev.miss(
            lambda: (
                f'defaultTTL {format_duration(ev.ttl)} of policy "{ev.name}" is not positive: set '
                f"spec.ttl, or give the policy a positive defaultTTL"
            )
        )
    elif ev.ttl > limit:

        def message() -> str:
            if capped:
                limit_name = (
                    f'the break-glass maximum {format_duration(limit)} (policy "{ev.name}" is breakGlass)'
                )
            else:
                limit_name = f'maxTTL {format_duration(limit)} of policy "{ev.name}"'
            asked_for = (
                f"spec.ttl {format_duration(ev.ttl)}"
                if asked is not None
                else f'defaultTTL {format_duration(ev.ttl)} of policy "{ev.name}"'
            )
            return f"{asked_for} exceeds {limit_name}: ask for {format_duration(limit)} or less" + (
                "" if asked is not None else " in spec.ttl"
            )

        ev.miss(message)


def _check_limits(inputs: _Inputs, ev: _Evaluation) -> None:
    limits = ev.policy.spec.limits
    request = inputs.request
    account = request.spec.grantee.service_account
    requester = request.status.requester
    fix = "wait for one to end, or set done: true on its request"

    if limits.active_per_grantee is not None and account is not None:
        held = inputs.held_by_grantee
        if len(held) >= limits.active_per_grantee:
            ev.miss(
                lambda: (
                    f'limits.activePerGrantee {limits.active_per_grantee} of policy "{ev.name}" is '
                    f"reached: ServiceAccount {_ref(account)} already holds "
                    f"{_plural(len(held), 'live grant')} ({_listing([_grant_ref(g) for g in held])}): "
                    f"{fix}"
                )
            )
    if limits.active_per_requester is not None and requester is not None:
        filed = inputs.filed_by_requester
        if filed >= limits.active_per_requester:
            ev.miss(
                lambda: (
                    f'limits.activePerRequester {limits.active_per_requester} of policy "{ev.name}" '
                    f'is reached: requester "{requester.username}" already has '
                    f"{_plural(filed, 'live grant')}: {fix}"
                )
            )
    if limits.active_per_policy is not None:
        issued = inputs.issued_under(ev.name)
        if issued >= limits.active_per_policy:
            ev.miss(
                lambda: (
                    f'limits.activePerPolicy {limits.active_per_policy} of policy "{ev.name}" is '
                    f"reached: {_plural(issued, 'live grant')} were issued under it: "
                    f"{fix}, or raise limits.activePerPolicy"
                )
            )


def _check_environments(inputs: _Inputs, ev: _Evaluation) -> None:
    account = inputs.request.spec.grantee.service_account
    # An ephemeral identity is new for this grant, so it holds nothing elsewhere.
    if not ev.policy.spec.limits.exclusive_environments or account is None:
        return
    target = inputs.request.namespace
    wanted = inputs.labels_of(target).get(LABEL_ENVIRONMENT)
    for grant in inputs.held_by_grantee:
        held = inputs.labels_of(grant.namespace).get(LABEL_ENVIRONMENT)
        if held != wanted:
            ev.miss(
                f'limits.exclusiveEnvironments of policy "{ev.name}": ServiceAccount '
                f"{_ref(account)} holds live grant {_grant_ref(grant)} in namespace "
                f'"{grant.namespace}" ({_environment(held)}), but namespace "{target}" has '
                f"{_environment(wanted)}: wait for that grant to end, or set done: true on its "
                f"request"
            )


def _environment(value: str | None) -> str:
    return f"{LABEL_ENVIRONMENT}={value}" if value else f"no {LABEL_ENVIRONMENT} label"


def _check_approvers(ev: _Evaluation) -> None:
    approval = ev.policy.spec.approval
    if ev.approvals_required and not approval.approvers:
        ev.miss(
            lambda: (
                f"approval.required is {approval.required} but approval.approvers of policy "
                f'"{ev.name}" is empty, so nobody can approve: list approvers, or set '
                f"approval.required to 0"
            )
        )


def _check_permission(inputs: _Inputs, ev: _Evaluation) -> None:
    spec = inputs.request.spec
    if spec.permission is not None:
        _check_named_permission(inputs, ev, spec.permission)
    else:
        _check_explicit_rules(inputs, ev, spec.rules or [])


def _check_approval(inputs: _Inputs, ev: _Evaluation) -> None:
    _check_approvers(ev)


def _check_conditions(inputs: _Inputs, ev: _Evaluation) -> None:
    listed = ev.policy.spec.conditions
    if not listed:
        return
    unmet = conditions.first_unmet(listed, inputs.condition_inputs(ev.name))
    if unmet is not None:
        ev.unmet = unmet
        ev.miss(
            f'condition "{unmet.name}" (spec.conditions[{unmet.index}] of policy "{ev.name}") does not hold: '
            f"{unmet.message}"
        )


# In this order, which is the order a denial lists its reasons in.
_CHECKS: tuple[Callable[[_Inputs, _Evaluation], None], ...] = (
    _check_requester,
    _check_namespace,
    _check_grantee,
    _check_permission,
    _check_ttl,
    _check_limits,
    _check_environments,
    _check_approval,
    _check_conditions,  # last: the costliest, and only worth it for a policy that otherwise fits
)


def _start(inputs: _Inputs, policy: AccessPolicy) -> _Evaluation:
    spec = inputs.request.spec
    ttl = spec.ttl if spec.ttl is not None else policy.spec.default_ttl
    return _Evaluation(policy=policy, ttl=ttl)


def _continue(inputs: _Inputs, ev: _Evaluation, *, to_first_mismatch: bool) -> None:
    """Run the checks not run yet: all of them, or up to the first that fails."""
    for check in _CHECKS[ev.checked :]:
        check(inputs, ev)
        ev.checked += 1
        if to_first_mismatch and ev.mismatches:
            return


def _closest(inputs: _Inputs, evaluations: Sequence[_Evaluation]) -> _Evaluation:
    """The policy with the fewest mismatches, the first by name on a tie, checked in full.

    The others are checked only as far as it takes to see they cannot beat it: mismatches only
    add up, so one that already has as many as the best so far (which comes first by name) is
    left there. A denial then costs about one full evaluation, not one per policy.
    """
    best = evaluations[0]  # sorted by name
    _continue(inputs, best, to_first_mismatch=False)
    for ev in evaluations[1:]:
        while ev.checked < len(_CHECKS) and len(ev.mismatches) < len(best.mismatches):
            _CHECKS[ev.checked](inputs, ev)
            ev.checked += 1
        if ev.checked == len(_CHECKS) and len(ev.mismatches) < len(best.mismatches):
            best = ev
    return best


# --- The decision -----------------------------------------------------------------------------


def _what_and_whom(request: AccessRequest, ev: _Evaluation) -> str:
    what = f'permission "{ev.permission}"' if ev.permission else "the requested rules"
    account = request.spec.grantee.service_account
    delivery = request.spec.delivery
    if account is not None:
        whom = f"ServiceAccount {_ref(account)}"
    elif delivery is not None:
        secret = f"{delivery.namespace}/{delivery.secret_name}"
        whom = f"an ephemeral ServiceAccount delivered to Secret {secret}"
    else:
        whom = "an ephemeral ServiceAccount"
    return f'{what} for {whom} in namespace "{request.namespace}" for {format_duration(ev.ttl)}'


def _granted(request: AccessRequest, ev: _Evaluation) -> Decision:
    spec = ev.policy.spec
    if spec.break_glass:
        outcome = Outcome.ALLOWED
        reason = (
            f'break-glass policy "{ev.name}" allows {_what_and_whom(request, ev)} without '
            f"approval; every step is reported as a Warning event"
        )
    elif ev.approvals_required == 0:
        outcome = Outcome.ALLOWED
        reason = f'policy "{ev.name}" allows {_what_and_whom(request, ev)} without approval'
    else:
        outcome = Outcome.PENDING
        approvers = _listing([describe_subject(s) for s in spec.approval.approvers])
        reason = (
            f'policy "{ev.name}" allows {_what_and_whom(request, ev)} once '
            f"{_plural(ev.approvals_required, 'approver')} from {approvers} approve"
        )
    if ev.persistence:
        reason += "; its rules can outlive revocation, which the policy allows (allowPersistence)"
    return Decision(
        outcome=outcome,
        reason=reason,
        policy=ev.name,
        ttl=ev.ttl,
        permission=ev.permission,
        rules=ev.rules,
        cluster_role=ev.cluster_role,
        persistence=tuple(ev.persistence),
        break_glass=spec.break_glass,
        approvals_required=ev.approvals_required,
    )


def _denied(reason: str, mismatches: Sequence[str], closest: _Evaluation | None = None) -> Decision:
    if closest is None:
        return Decision(Outcome.DENIED, reason, policy=None, mismatches=tuple(mismatches))
    return Decision(
        outcome=Outcome.DENIED,
        reason=reason,
        policy=closest.name,
        permission=closest.permission,
        rules=closest.rules,
        cluster_role=closest.cluster_role,
        persistence=tuple(closest.persistence),
        mismatches=tuple(mismatches),
        unmet=closest.unmet,
    )


def decide(
    request: AccessRequest,
    policies: Sequence[AccessPolicy],
    grants: GrantIndex,
    namespace_labels: Mapping[str, Mapping[str, str]],
    now: datetime,
    *,
    catalog: Mapping[str, Sequence[PolicyRule]] = _NO_CATALOG,
    break_glass_max_ttl: timedelta = timedelta(hours=1),
    objects: ConditionObjects | None = None,
) -> Decision:
    """Decide a request: allowed, pending approval, or denied with the closest policy's misses.

    Parameters:
        grants: the TaskGrants limits count. A grant counts if it is neither being deleted nor
            revoked, has not expired at `now`, and is not this request's own.
        namespace_labels: labels of the request's namespace and of every live grant's namespace.
        catalog: the ClusterRoles the operator trusts, by name; other ClusterRoles never match.
        break_glass_max_ttl: the longest grant a break-glass policy may give, whatever its maxTTL.
        objects: the grantee ServiceAccount and the task object, for conditions that read them
            (without them, conditions see the grantee's name only and no task).
    """
    named = request.spec.policy
    candidates = sorted(policies, key=lambda p: p.name)
    if named is not None:
        candidates = [p for p in candidates if p.name == named]
        if not candidates:
            known = _listing(sorted(p.name for p in policies))
            message = (
                f'spec.policy "{named}" names no AccessPolicy (known: {known}): name an existing '
                f"policy, or remove spec.policy to try every policy"
            )
            return _denied(message, [message])
    if not candidates:
        message = (
            "no AccessPolicy exists, so nothing can be allowed: ask a platform admin for a "
            "policy that covers this request"
        )
        return _denied(message, [message])

    inputs = _Inputs(
        request=request,
        grants=grants,
        now=now,
        namespace_labels=namespace_labels,
        catalog=catalog,
        break_glass_max_ttl=break_glass_max_ttl,
        objects=objects or ConditionObjects(),
    )
    # A policy that fails one check cannot match: when one matches, the others' remaining
    # checks would change nothing. Only a denial needs every policy checked in full.
    evaluations = [_start(inputs, policy) for policy in candidates]
    for ev in evaluations:
        _continue(inputs, ev, to_first_mismatch=True)
    matching = [ev for ev in evaluations if not ev.mismatches]
    if matching:
        best = min(matching, key=lambda ev: (ev.approvals_required, ev.name))
        return _granted(request, best)

    closest = _closest(inputs, evaluations)
    mismatches = closest.written_mismatches()
    misses = "; ".join(mismatches)
    if named is not None:
        reason = f'policy "{named}" named in spec.policy does not allow this request: {misses}'
    else:
        reason = f'no policy allows this request; closest is "{closest.name}": {misses}'
    return _denied(reason, mismatches, closest)


def next_condition_change(
    request: AccessRequest,
    policy: AccessPolicy,
    grants: GrantIndex,
    namespace_labels: Mapping[str, Mapping[str, str]],
    now: datetime,
    until: datetime,
    *,
    objects: ConditionObjects | None = None,
) -> datetime | None:
    """When a live grant's conditions could next stop holding with time alone (None: not before `until`).

    The same inputs as `decide`, so the moment found is the one a re-decision would deny at.
    """
    if not policy.spec.conditions:
        return None
    inputs = _Inputs(request, grants, now, namespace_labels, objects=objects or ConditionObjects())
    return conditions.next_change(policy.spec.conditions, inputs.condition_inputs(policy.name), until)


def reads(policy: AccessPolicy, variable: str) -> bool:
    """Whether any of the policy's conditions reads `variable` (`grantee`, `task`, `now`...)."""
    return any(conditions.references(c.expression, variable) for c in policy.spec.conditions)
