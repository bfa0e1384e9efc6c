"""Notifications, the pure part: the operator's routes file, who hears about an event, and the
message a person can act on. No I/O; `observe/notify.py` delivers.

The routes file (`--notify-config`, mounted from a Secret) names the targets and how to reach
them; an AccessPolicy's `spec.notify` only names targets, so no URL or token is ever in a CR.
A message carries who asks, for whom, what, where, for how long, why, the approvals so far and
needed, and the exact commands, and never a token: free text a person wrote (a reason, a
comment) has anything shaped like a JWT or a kubeconfig credential redacted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import Field, model_validator

from zsp_operator.core.approvals import Tally
from zsp_operator.core.durations import format_duration
from zsp_operator.core.models import (
    NOTIFY_EVENTS,
    AccessRequest,
    AccessRequestStatus,
    Model,
    NamespacedName,
    NonEmpty,
    NotifyRoute,
    PolicyRule,
    TaskGrant,
    UserInfo,
    format_time,
)
from zsp_operator.core.policy import Decision

__all__ = [
    "APPROVAL_NEEDED",
    "APPROVED",
    "BREAK_GLASS",
    "DENIED",
    "ENDED",
    "ISSUED",
    "ISSUE_FAILED",
    "NOTIFY_EVENTS",
    "PERSISTENCE_GRANTED",
    "TIMED_OUT",
    "Message",
    "NotifyConfig",
    "Subject",
    "Target",
    "about_grant",
    "about_request",
    "describe_rules",
    "message",
    "redact",
    "targets_for",
    "unknown_targets",
]

APPROVAL_NEEDED = "approvalNeeded"
APPROVED = "approved"
DENIED = "denied"
TIMED_OUT = "timedOut"
ISSUED = "issued"
ENDED = "ended"
BREAK_GLASS = "breakGlass"
PERSISTENCE_GRANTED = "persistenceGranted"
ISSUE_FAILED = "issueFailed"

# Events whose message says how many approvals the policy needs.
APPROVAL_EVENTS = frozenset({APPROVAL_NEEDED, APPROVED, DENIED, TIMED_OUT})
# Events of a break-glass request that always reach the file's `breakGlass` targets.
BREAK_GLASS_EVENTS = frozenset({BREAK_GLASS, ENDED, ISSUE_FAILED, DENIED})


class Target(Model):
    """One place messages go: an Apprise URL (Slack, Teams, e-mail, PagerDuty...) or a webhook
    that receives each message as a CloudEvent (HTTP POST, structured JSON)."""

    apprise: list[NonEmpty] | None = None
    webhook: NonEmpty | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _one_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("apprise"), str):
            data = {**data, "apprise": [data["apprise"]]}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if (self.apprise is None) == (self.webhook is None):
            raise ValueError("set exactly one of apprise (a URL or a list of URLs) or webhook (a URL)")
        if self.headers and self.webhook is None:
            raise ValueError("headers are for a webhook target only")
        return self


class NotifyConfig(Model):
    """The operator-wide routes file: targets by name, routes for every policy, break-glass's route."""

    targets: dict[str, Target] = Field(default_factory=dict)
    routes: list[NotifyRoute] = Field(default_factory=list)
    break_glass: list[NonEmpty] = Field(default_factory=list)

    @model_validator(mode="after")
    def _targets_exist(self) -> NotifyConfig:
        named = [t for route in self.routes for t in route.targets] + list(self.break_glass)
        unknown = sorted({t for t in named if t not in self.targets})
        if unknown:
            raise ValueError(f"routes name targets that are not defined under targets: {', '.join(unknown)}")
        return self


def targets_for(
    event: str,
    config: NotifyConfig,
    policy_routes: Sequence[NotifyRoute],
    *,
    break_glass: bool,
) -> list[str]:
    """The targets that hear about `event`, each once, in the order the routes name them.

    The file's routes apply to every policy; a policy's routes add to them; a break-glass
    request always reaches the file's `breakGlass` targets on use, end, failure and denial.
    Targets the file does not define are left out (`unknown_targets` says which).
    """
    found: dict[str, None] = {}
    for route in (*config.routes, *policy_routes):
        if event in route.events:
            found.update(dict.fromkeys(route.targets))
    if break_glass and event in BREAK_GLASS_EVENTS:
        found.update(dict.fromkeys(config.break_glass))
    return [name for name in found if name in config.targets]


def unknown_targets(config: NotifyConfig, policy_routes: Sequence[NotifyRoute]) -> list[str]:
    """Targets a policy's routes name that the routes file does not define."""
    return sorted({t for route in policy_routes for t in route.targets if t not in config.targets})


# --- messages -------------------------------------------------------------------------------

# A JWT (ServiceAccount tokens are), a kubeconfig's credential fields, a bearer header value.
_SECRET_SHAPES = (
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    re.compile(
        r"(?i)\b(token|client-key-data|client-certificate-data|password|authorization)\b(\s*[:=]\s*)\S+"
    ),
    re.compile(r"(?i)\bbearer\s+\S+"),
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Free text with anything shaped like a credential replaced by `[redacted]`."""
    text = _SECRET_SHAPES[0].sub(REDACTED, text)
    text = _SECRET_SHAPES[2].sub(f"Bearer {REDACTED}", text)
    return _SECRET_SHAPES[1].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def describe_rules(
    rules: Sequence[PolicyRule], cluster_role: str | None = None, permission: str | None = None
) -> str:
    """A permission in one line: `deploy (apps/deployments: get,list)`, `read-only (ClusterRole view)`."""
    if cluster_role:
        what = f"ClusterRole {cluster_role}"
    else:
        parts = []
        for rule in rules:
            groups = ",".join(g or "core" for g in rule.api_groups) or "core"
            targets = ",".join(rule.resources) or ",".join(rule.non_resource_ur_ls) or "*"
            names = f"[{','.join(rule.resource_names)}]" if rule.resource_names else ""
            parts.append(f"{groups}/{targets}{names}: {','.join(rule.verbs)}")
        what = "; ".join(parts) or "no rules"
    return f"{permission} ({what})" if permission else what


_TITLES = {
    APPROVAL_NEEDED: "approval needed",
    APPROVED: "approved",
    DENIED: "denied",
    TIMED_OUT: "timed out waiting for approval",
    ISSUED: "access granted",
    ENDED: "access ended",
    BREAK_GLASS: "BREAK-GLASS access in use",
    PERSISTENCE_GRANTED: "access that can outlive revocation granted",
    ISSUE_FAILED: "could not be issued",
}


@dataclass(frozen=True)
class Message:
    """One notification: a title and lines for people, `data` for machines (the CloudEvent's)."""

    event: str
    request_uid: str
    title: str
    lines: tuple[str, ...]
    data: Mapping[str, Any] = field(default_factory=dict)
    warning: bool = False

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Subject:
    """What a message is about, gathered from a request or a grant (no tokens, no Secret data)."""

    name: str
    namespace: str
    uid: str
    policy: str | None = None
    requester: UserInfo | None = None
    grantee: NamespacedName | None = None
    ephemeral: bool = False
    permission: str | None = None
    rules: tuple[PolicyRule, ...] = ()
    cluster_role: str | None = None
    ttl: timedelta | None = None
    reason: str | None = None
    approvals: tuple[str, ...] = ()  # usernames whose approval counted so far
    approvals_needed: int = 0
    expires_at: str | None = None
    break_glass: bool = False
    persistence_capable: bool = False
    outcome: str | None = None  # why it was denied, ended or failed; who decided


def message(event: str, about: Subject) -> Message:
    """The message of `event` about one request, with the commands that act on it."""
    ref = f"{about.namespace}/{about.name}"
    title = f"{_TITLES.get(event, event)}: AccessRequest {ref}"
    who = about.requester.username if about.requester else "unknown requester"
    if about.grantee is not None:
        grantee = f"ServiceAccount {about.grantee.namespace}/{about.grantee.name}"
    else:
        grantee = "an ephemeral ServiceAccount" if about.ephemeral else "unknown grantee"
    what = describe_rules(about.rules, about.cluster_role, about.permission)
    lines = [
        f"who asks: {who}",
        f"for: {grantee}",
        f"what: {what}",
        f"where: namespace {about.namespace}",
    ]
    if about.ttl is not None:
        lines.append(f"how long: {format_duration(about.ttl)}")
    if about.expires_at:
        lines.append(f"until: {about.expires_at}")
    if about.reason:
        lines.append(f"reason: {redact(about.reason)}")
    if about.policy:
        lines.append(f"policy: {about.policy}" + (" (break-glass)" if about.break_glass else ""))
    if about.approvals_needed:
        so_far = ", ".join(about.approvals) or "none yet"
        lines.append(f"approvals: {len(about.approvals)} of {about.approvals_needed} ({so_far})")
    if about.persistence_capable:
        lines.append("note: these rules can be used to keep access after revocation")
    if about.outcome:
        lines.append(f"outcome: {redact(about.outcome)}")
    commands = [f"kubectl zsp describe {about.name} -n {about.namespace}"]
    if event == APPROVAL_NEEDED:
        commands = [
            f"kubectl zsp approve {about.name} -n {about.namespace}",
            f"kubectl zsp deny {about.name} -n {about.namespace}",
            *commands,
        ]
    elif event in (ISSUED, BREAK_GLASS, PERSISTENCE_GRANTED):
        commands.append(f"kubectl zsp done {about.name} -n {about.namespace}  # end it now")
    lines.extend(f"run: {command}" for command in commands)
    data: dict[str, Any] = {
        "event": event,
        "request": {"name": about.name, "namespace": about.namespace, "uid": about.uid},
        "policy": about.policy,
        "requester": who,
        "grantee": grantee,
        "permission": what,
        "ttl": format_duration(about.ttl) if about.ttl is not None else None,
        "expiresAt": about.expires_at,
        "reason": redact(about.reason) if about.reason else None,
        "approvals": list(about.approvals),
        "approvalsRequired": about.approvals_needed or None,
        "breakGlass": about.break_glass or None,
        "persistenceCapable": about.persistence_capable or None,
        "outcome": redact(about.outcome) if about.outcome else None,
        "commands": commands,
        "text": "\n".join(lines),
    }
    warning = (
        event in (DENIED, TIMED_OUT, BREAK_GLASS, PERSISTENCE_GRANTED, ISSUE_FAILED) or about.break_glass
    )
    return Message(
        event=event,
        request_uid=about.uid,
        title=title,
        lines=tuple(lines),
        data={k: v for k, v in data.items() if v is not None},
        warning=warning,
    )


def _approvers(request: AccessRequest, tally: Tally | None) -> tuple[str, ...]:
    if tally is not None:
        return tally.counted
    return tuple(dict.fromkeys(a.username for a in request.status.approvals if a.decision == "approve"))


def about_request(
    request: AccessRequest,
    decision: Decision | None = None,
    *,
    tally: Tally | None = None,
    outcome: str | None = None,
) -> Subject:
    """What a notification says about a request: its spec, what status knows, the decision."""
    spec, status = request.spec, request.status
    needed = len(tally.counted) + tally.missing if tally is not None else 0
    if decision is not None:
        needed = needed or decision.approvals_required
        rules = tuple(decision.rules)
    else:
        rules = tuple(spec.rules or status.permission_rules or ())
    return Subject(
        name=request.name,
        namespace=request.namespace,
        uid=request.metadata.uid,
        policy=(decision.policy if decision is not None else status.policy) or None,
        requester=status.requester,
        grantee=status.identity or spec.grantee.service_account,
        ephemeral=spec.grantee.ephemeral is not None,
        permission=(decision.permission if decision is not None else None) or spec.permission,
        rules=rules,
        cluster_role=decision.cluster_role if decision is not None else None,
        ttl=(decision.ttl if decision is not None else None) or spec.ttl,
        reason=spec.reason,
        approvals=_approvers(request, tally),
        approvals_needed=needed,
        expires_at=format_time(status.expires_at) if status.expires_at else None,
        break_glass=bool(decision.break_glass if decision is not None else status.break_glass),
        persistence_capable=bool(
            decision.persistence_capable if decision is not None else status.persistence_capable
        ),
        outcome=outcome,
    )


def about_grant(grant: TaskGrant, status: AccessRequestStatus | None, outcome: str | None) -> Subject:
    """What a notification says about a grant: its own spec, which the teardown trusted."""
    spec = grant.spec
    approvals = tuple(
        dict.fromkeys(a.username for a in (status.approvals if status else []) if a.decision == "approve")
    )
    return Subject(
        name=spec.request.name,
        namespace=grant.namespace,
        uid=spec.request.uid,
        policy=spec.policy,
        requester=spec.requester,
        grantee=spec.identity,
        ephemeral=spec.mode == "ephemeral",
        permission=spec.permission,
        rules=tuple(spec.rules),
        cluster_role=spec.cluster_role,
        approvals=approvals,
        expires_at=format_time(spec.expires_at),
        break_glass=spec.break_glass,
        persistence_capable=spec.persistence_capable,
        outcome=outcome,
    )
