"""`zsp describe` text: the whole story of one AccessRequest, laid out like `kubectl describe`.

No I/O: the verb fetches the request, its Events, its TaskGrant and its policy (each may be
missing, e.g. when the caller may not read it) and this renders what there is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from zsp_operator.cli.output import NONE, age, human_duration, table
from zsp_operator.cli.summary import (
    approval_records,
    created_at,
    grantee,
    phase,
    requester,
    status_of,
)
from zsp_operator.cli.timeline import Entry, event_time, timeline
from zsp_operator.core.approvals import is_eligible, tally
from zsp_operator.core.models import AccessPolicySpec, ApprovalRecord, Phase, PolicyRule, UserInfo
from zsp_operator.core.rbac import describe_rule

Body = Mapping[str, Any]
_LABEL_WIDTH = 14


def stamp(at: datetime | None) -> str:
    """An absolute time to the second, in UTC, as kubectl describe shows it."""
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else NONE


def relative(at: datetime | None, now: datetime) -> str:
    """`5m ago` or `in 3m`."""
    if at is None:
        return NONE
    return f"in {human_duration(at - now)}" if at > now else f"{human_duration(now - at)} ago"


def _field(label: str, value: Any, indent: int = 0) -> str:
    text = NONE if value is None or value == "" else str(value)
    return f"{' ' * indent}{label + ':':<{_LABEL_WIDTH - indent}}{text}"


def _indented(text: str, by: int = 2) -> list[str]:
    return [" " * by + line for line in text.splitlines()]


def _when(at: datetime | None, now: datetime) -> str | None:
    return f"{stamp(at)} ({relative(at, now)})" if at is not None else None


def _grantee_line(spec: Mapping[str, Any]) -> str:
    account = (spec.get("grantee") or {}).get("serviceAccount")
    if account:
        return f"ServiceAccount {account.get('namespace')}/{account.get('name')} (bind mode)"
    return "a ServiceAccount minted for this grant (ephemeral mode)"


def _task_line(spec: Mapping[str, Any], namespace: str) -> str | None:
    ref = spec.get("taskRef")
    if not ref:
        return None
    return (
        f"{ref.get('kind')} {ref.get('namespace') or namespace}/{ref.get('name')} ({ref.get('apiVersion')})"
    )


def _delivery_line(spec: Mapping[str, Any]) -> str | None:
    delivery = spec.get("delivery")
    if not delivery:
        return None
    return f"Secret {delivery.get('namespace')}/{delivery.get('secretName')}, key kubeconfig"


def _request_section(body: Body) -> list[str]:
    spec = body.get("spec") or {}
    namespace = str((body.get("metadata") or {}).get("namespace", ""))
    lines = [
        "Request:",
        _field("Grantee", _grantee_line(spec), 2),
        _field("Permission", spec.get("permission"), 2),
    ]
    for rule in spec.get("rules") or []:
        lines.append(_field("Rule", _rule_text(rule), 2))
    lines += [
        _field("TTL", spec.get("ttl") or "the policy's defaultTTL", 2),
        _field("Reason", spec.get("reason"), 2),
        _field("Policy", spec.get("policy") or "any that allows it", 2),
        _field("Task", _task_line(spec, namespace), 2),
        _field("Delivery", _delivery_line(spec), 2),
        _field("Done", str(bool(spec.get("done"))).lower(), 2),
    ]
    return lines


def _rule_text(rule: Mapping[str, Any]) -> str:
    try:
        return describe_rule(PolicyRule.model_validate(rule))
    except ValidationError:
        return str(dict(rule))


def _decision_section(body: Body, now: datetime) -> list[str]:
    status = status_of(body)
    decision = status.decision
    lines = ["Decision:"]
    if decision is None:
        return [*lines, "  not decided yet: the operator has not seen this request"]
    lines += [
        _field("Outcome", "allowed" if decision.allowed else "denied", 2),
        _field("Policy", status.policy, 2),
        _field("Reason", decision.reason, 2),
        _field("At", _when(decision.at, now), 2),
    ]
    for rule in status.permission_rules or []:
        lines.append(_field("Rule", describe_rule(rule), 2))
    if status.persistence_capable:
        lines.append(_field("Warning", "these permissions can outlive revocation (allowed by policy)", 2))
    if status.break_glass:
        lines.append(_field("Break-glass", "yes: no approval, every step a Warning event", 2))
    return lines


def record_effects(
    records: Sequence[ApprovalRecord], policy: AccessPolicySpec, asked_by: UserInfo | None
) -> list[str]:
    """What each record (in time order) did to the tally: `yes`, `denies`, or `no: <why>`.

    Each record is judged by the tally itself (with and without it), so the words match
    what the operator counted.
    """
    effects = []
    for i, record in enumerate(records):
        before, after = tally(records[:i], policy, asked_by), tally(records[: i + 1], policy, asked_by)
        if record.decision == "deny" and is_eligible(record, policy.approval.approvers):
            effects.append("denies")
        elif len(after.counted) > len(before.counted):
            effects.append("yes")
        elif len(after.ignored) > len(before.ignored):
            effects.append(f"no: {after.ignored[-1][1]}")
        else:
            effects.append("no")
    return effects


def _approvals_section(body: Body, policy: AccessPolicySpec | None, now: datetime) -> list[str]:
    records = sorted(approval_records(body), key=lambda r: r.at)
    asked_by = requester(body)
    if policy is not None:
        result = tally(records, policy, asked_by)
        required = policy.approval.required
        approvers = ", ".join(f"{s.kind.value} {s.name}" for s in policy.approval.approvers) or "nobody"
        if required == 0:
            head = "not required by the policy"
        else:
            head = f"{len(result.counted)} of {required} required (approvers: {approvers})"
        effects = record_effects(records, policy, asked_by)
    else:
        head = f"{len(records)} recorded (policy not readable: cannot say which count)"
        effects = [NONE] * len(records)
    lines = [_field("Approvals", head)]
    if records:
        rows = [
            [record.username, record.decision, age(record.at, now), effect, record.comment or ""]
            for record, effect in zip(records, effects, strict=True)
        ]
        lines += _indented(table(["approver", "decision", "age", "counted", "comment"], rows))
    return lines


def _grant_section(body: Body, now: datetime) -> list[str]:
    status = status_of(body)
    if status.grant is None and status.issued_at is None:
        return [_field("Grant", "none issued")]
    grant = f"{status.grant.name} (uid {status.grant.uid})" if status.grant else None
    identity = f"{status.identity.namespace}/{status.identity.name}" if status.identity else None
    lines = [
        "Grant:",
        _field("TaskGrant", grant, 2),
        _field("Identity", identity or grantee(body), 2),
        _field("Issued", _when(status.issued_at, now), 2),
        _field("Expires", _when(status.expires_at, now), 2),
    ]
    if status.revoked_at is not None:
        lines.append(_field("Revoked", _when(status.revoked_at, now), 2))
    if status.end_reason:
        lines.append(_field("End reason", status.end_reason, 2))
    if status.token_credential_id:
        lines.append(_field("Token jti", status.token_credential_id, 2))
    return lines


def _objects_section(body: Body, grant: Body | None) -> list[str]:
    current = phase(body)
    if grant is not None:
        objects = (grant.get("status") or {}).get("objects") or []
        if objects:
            rows = [[str(o.get("kind")), str(o.get("namespace") or ""), str(o.get("name"))] for o in objects]
            return ["Objects:", *_indented(table(["kind", "namespace", "name"], rows))]
        return [_field("Objects", "none recorded on the TaskGrant yet")]
    if current is Phase.ACTIVE:
        return [_field("Objects", "TaskGrant not readable with these credentials")]
    if status_of(body).issued_at is not None:
        return [_field("Objects", "none: the grant ended and everything it created was removed")]
    return [_field("Objects", "none: nothing was issued")]


def _usage_section(body: Body) -> list[str]:
    """What the grant was used for, when the operator recorded it (docs/evidence.md)."""
    usage = status_of(body).usage
    if usage is None:
        return []

    def resource(group: str, name: str) -> str:
        return f"{group}/{name}" if group else name

    counted = [("used", u) for u in usage.used] + [("denied", d) for d in usage.denied]
    rows = [
        [kind, c.verb, resource(c.api_group, c.resource), c.namespace, str(c.count)] for kind, c in counted
    ]
    rows += [
        [
            "unused",
            ",".join(r.verbs),
            ",".join(resource(g, n) for g in r.api_groups for n in r.resources),
            "",
            "",
        ]
        for r in usage.unused
    ]
    if not rows:
        return [_field("Usage", "no request made with the grant")]
    return ["Usage:", *_indented(table(["", "verb", "resource", "namespace", "count"], rows))]


def _conditions_section(body: Body, now: datetime) -> list[str]:
    conditions = status_of(body).conditions
    if not conditions:
        return [_field("Conditions", None)]
    rows = [[c.type, c.status, c.reason, age(c.last_transition_time, now), c.message] for c in conditions]
    return ["Conditions:", *_indented(table(["type", "status", "reason", "age", "message"], rows))]


def _timeline_section(entries: Sequence[Entry], now: datetime) -> list[str]:
    if not entries:
        return [_field("Timeline", None)]
    rows = [
        [stamp(e.at), relative(e.at, now), ("! " if e.warning else "") + e.step, e.detail] for e in entries
    ]
    return ["Timeline:", *_indented(table(["time", "when", "step", "detail"], rows))]


def distinct(events: Sequence[Body]) -> list[Body]:
    """Events once each: the operator posts some on both the request and its TaskGrant."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for event in events:
        key = (str(event.get("reason", "")), str(event.get("message", "")))
        if key not in seen:
            seen.add(key)
            kept.append(event)
    return kept


def _events_section(events: Sequence[Body] | None, now: datetime, why_missing: str | None) -> list[str]:
    if events is None:
        return [_field("Events", f"not readable: {why_missing}" if why_missing else None)]
    if not events:
        return [_field("Events", None)]
    rows = []
    for event in sorted(distinct(events), key=lambda e: event_time(e) or now):
        source = (event.get("source") or {}).get("component") or event.get("reportingComponent") or ""
        count = int(event.get("count") or 1)
        when = age(event_time(event), now) + (f" (x{count})" if count > 1 else "")
        rows.append(
            [
                str(event.get("type", "")),
                str(event.get("reason", "")),
                when,
                source,
                str(event.get("message", "")),
            ]
        )
    return ["Events:", *_indented(table(["type", "reason", "age", "from", "message"], rows))]


def render(
    body: Body,
    *,
    events: Sequence[Body] | None,
    grant: Body | None,
    policy: AccessPolicySpec | None,
    now: datetime,
    events_error: str | None = None,
) -> str:
    """The describe text; `events` None means they could not be read (`events_error` says why)."""
    meta = body.get("metadata") or {}
    who = requester(body)
    groups = f" (groups: {', '.join(who.groups)})" if who is not None and who.groups else ""
    lines = [
        _field("Name", meta.get("name")),
        _field("Namespace", meta.get("namespace")),
        _field("UID", meta.get("uid")),
        _field("Phase", phase(body).value),
        _field("Requester", f"{who.username}{groups}" if who is not None else None),
        _field("Created", _when(created_at(body), now)),
        *_request_section(body),
        *_decision_section(body, now),
        *_approvals_section(body, policy, now),
        *_grant_section(body, now),
        *_objects_section(body, grant),
        *_usage_section(body),
        *_conditions_section(body, now),
        *_timeline_section(timeline(body, events or []), now),
        *_events_section(events, now, events_error),
    ]
    return "\n".join(lines)
