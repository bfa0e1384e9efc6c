"""Evidence of use: the API server's audit events, slimmed, attributed to grants and summed up.

The API server posts `audit.k8s.io/v1` EventLists to the operator's audit webhook. Of each
event only what evidence needs is read: who made the request (to find the grant, then
dropped), the verb, resource, namespace, name, response code and time. An event is
attributed to a grant when

- the request was made with the grant's own token (`authentication.kubernetes.io/credential-id`
  is `JTI=<the jti recorded at issuance>`): ephemeral identities; or
- the grantee ServiceAccount made it between issuance and revocation: bound grants.

Pure: no I/O, no clock. Parsing raises `AuditEventsError` naming the field at fault.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from zsp_operator.core.grantindex import identity_of
from zsp_operator.core.models import PolicyRule, TaskGrant, UsageCount, UsageSummary, parse_time
from zsp_operator.core.rbac import ALL, Attributes, rule_allows

API_VERSION: Final = "audit.k8s.io/v1"
CREDENTIAL_ID: Final = "authentication.kubernetes.io/credential-id"
DECISION: Final = "authorization.k8s.io/decision"
SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
# The API server batches 400 events by default; ten thousand is far beyond any real batch.
MAX_EVENTS: Final = 10_000
# A summary lists at most this many entries per kind, so a request's status stays small.
MAX_ENTRIES: Final = 100
# A request counts for a bound grant from this long before `issuedAt`: the RoleBinding exists
# a moment before the operator records the issuance.
ISSUE_SLACK: Final = timedelta(seconds=1)
# Audit IDs remembered per grant: the API server may post a batch again after a failed send.
_SEEN_AUDIT_IDS: Final = 4096


class AuditEventsError(ValueError):
    """The body is not an EventList the operator can read; the message names the field."""


@dataclass(frozen=True, slots=True)
class Use:
    """One audited request by a ServiceAccount, with only what evidence keeps."""

    audit_id: str
    namespace_of_user: str  # the ServiceAccount that made it: for attribution only
    name_of_user: str
    credential_id: str | None  # the token's jti, when the API server says which token
    at: datetime
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    allowed: bool

    @property
    def identity(self) -> tuple[str, str]:
        return (self.namespace_of_user, self.name_of_user)

    @property
    def attributes(self) -> Attributes:
        return Attributes(
            verb=self.verb,
            group=self.group,
            resource=self.resource,
            subresource=self.subresource,
            name=self.name,
            namespace=self.namespace,
        )

    @property
    def key(self) -> UseKey:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return (self.verb, self.group, resource, self.namespace)


UseKey = tuple[str, str, str, str]  # verb, API group, resource[/subresource], namespace


# --- reading an EventList -------------------------------------------------------------------


def read_event_list(raw: bytes | str | Mapping[str, Any]) -> list[Use]:
    """The events of an EventList that could be evidence of a grant's use.

    Kept: resource requests by ServiceAccounts at stage ResponseComplete. Everything else
    (people, the control plane's own components, non-resource URLs, other stages) is dropped
    here, before anything looks for a grant.

    Raises:
        AuditEventsError: not JSON, not an `audit.k8s.io/v1` EventList, too many items, or a
            kept event whose verb, objectRef, responseStatus or timestamp is unreadable.
    """
    body = _json_object(raw)
    if body.get("apiVersion") != API_VERSION or body.get("kind") != "EventList":
        raise AuditEventsError(
            f"expected apiVersion {API_VERSION} and kind EventList, got "
            f"{body.get('apiVersion')!r} {body.get('kind')!r}: point the API server's "
            "--audit-webhook-config-file at this endpoint"
        )
    items = body.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise AuditEventsError("items: must be a list of audit events")
    if len(items) > MAX_EVENTS:
        raise AuditEventsError(
            f"items: {len(items)} events in one list, at most {MAX_EVENTS}: lower the API server's "
            "--audit-webhook-batch-max-size"
        )
    uses = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise AuditEventsError(f"items[{index}]: must be an object")
        use = _use(item, f"items[{index}]")
        if use is not None:
            uses.append(use)
    return uses


def _json_object(raw: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise AuditEventsError(f"body: not JSON ({err})") from None
    if not isinstance(body, dict):
        raise AuditEventsError("body: must be a JSON object (an EventList)")
    return body


def _use(item: Mapping[str, Any], where: str) -> Use | None:
    if item.get("stage") != "ResponseComplete":
        return None
    user = item.get("user")
    username = user.get("username") if isinstance(user, dict) else None
    if not isinstance(username, str) or not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    sa_namespace, _, sa_name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    ref = item.get("objectRef")
    if ref is None:
        return None  # a non-resource URL (/api, /healthz): no rule of a grant is about it
    if not isinstance(ref, dict) or not isinstance(ref.get("resource"), str) or not ref["resource"]:
        raise AuditEventsError(f"{where}.objectRef.resource: must be a non-empty string")
    verb = item.get("verb")
    if not isinstance(verb, str) or not verb:
        raise AuditEventsError(f"{where}.verb: must be a non-empty string")
    status = item.get("responseStatus")
    code = status.get("code") if isinstance(status, dict) else None
    if not isinstance(code, int) or isinstance(code, bool):
        raise AuditEventsError(f"{where}.responseStatus.code: must be an integer")
    at = parse_time(item.get("requestReceivedTimestamp") or item.get("stageTimestamp"))
    if at is None:
        raise AuditEventsError(f"{where}.requestReceivedTimestamp: must be an RFC 3339 time")
    annotations = item.get("annotations")
    decision = annotations.get(DECISION) if isinstance(annotations, dict) else None
    allowed = decision == "allow" if decision in ("allow", "forbid") else code != 403
    return Use(
        audit_id=str(item.get("auditID") or ""),
        namespace_of_user=sa_namespace,
        name_of_user=sa_name,
        credential_id=_jti(user) if isinstance(user, dict) else None,
        at=at,
        verb=verb,
        group=_text(ref, "apiGroup"),
        resource=ref["resource"],
        subresource=_text(ref, "subresource"),
        namespace=_text(ref, "namespace"),
        name=_text(ref, "name"),
        code=code,
        allowed=allowed,
    )


def _text(ref: Mapping[str, Any], key: str) -> str:
    value = ref.get(key)
    return value if isinstance(value, str) else ""


def _jti(user: Mapping[str, Any]) -> str | None:
    extra = user.get("extra")
    values = extra.get(CREDENTIAL_ID) if isinstance(extra, dict) else None
    if not isinstance(values, list):
        return None
    for value in values:
        if isinstance(value, str) and value.startswith("JTI="):
            return value.removeprefix("JTI=")
    return None


# --- attributing a use to a grant -----------------------------------------------------------


def made_under(use: Use, grant: TaskGrant, ended_at: datetime | None) -> bool:
    """Whether `use` was made with `grant`'s privilege available: its token, or its window.

    A grant with a recorded token (ephemeral) claims exactly the requests made with that
    token. A bound grant claims its grantee's requests from issuance (less `ISSUE_SLACK`)
    until it ended; `ended_at` is None while it is live.
    """
    status = grant.status
    if identity_of(grant) != use.identity:
        return False
    if status.token_credential_id and use.credential_id is not None:
        return use.credential_id == status.token_credential_id
    issued_at = status.issued_at or grant.metadata.creation_timestamp
    if issued_at is None or use.at < issued_at - ISSUE_SLACK:
        return False
    return ended_at is None or use.at <= ended_at


Outcome = Literal["used", "denied", "unrelated", "repeated"]


@dataclass
class UsageTally:
    """What one grant's grantee did while the grant was live, counted as events arrive."""

    used: Counter[UseKey] = field(default_factory=Counter)
    denied: Counter[UseKey] = field(default_factory=Counter)
    events: int = 0
    _seen: dict[str, None] = field(default_factory=dict, repr=False)

    def add(self, use: Use, rules: Sequence[PolicyRule]) -> Outcome:
        """Count `use` against a grant of `rules`.

        An allowed request counts as used only if a rule of the grant covers it: the grantee
        may hold other permissions (discovery, its own review APIs) that are not the grant's.
        """
        if use.audit_id:
            if use.audit_id in self._seen:
                return "repeated"
            self._seen[use.audit_id] = None
            if len(self._seen) > _SEEN_AUDIT_IDS:
                del self._seen[next(iter(self._seen))]
        if not use.allowed:
            self.denied[use.key] += 1
            self.events += 1
            return "denied"
        if any(rule_allows(rule, use.attributes) for rule in rules):
            self.used[use.key] += 1
            self.events += 1
            return "used"
        return "unrelated"


# --- summing up -----------------------------------------------------------------------------

Cell = tuple[str, str, str, tuple[str, ...]]  # API group, resource, verb, resourceNames


def _cells(rule: PolicyRule) -> list[Cell]:
    names = tuple(rule.resource_names)
    groups = rule.api_groups or [""]
    return [(g, r, v, names) for g in groups for r in rule.resources for v in rule.verbs]


def _exercised(cell: Cell, used: Iterable[UseKey]) -> list[Cell]:
    """The concrete cells a wildcard cell was used as (the cell itself when it has none)."""
    group, resource, verb, names = cell
    rule = PolicyRule(verbs=[verb], api_groups=[group], resources=[resource])
    found: list[Cell] = []
    for used_verb, used_group, used_resource, _ in used:
        base, _, sub = used_resource.partition("/")
        if rule_allows(rule, Attributes(verb=used_verb, group=used_group, resource=base, subresource=sub)):
            found.append(
                (
                    used_group if group == ALL else group,
                    used_resource if ALL in resource else resource,
                    used_verb if verb == ALL else verb,
                    names,
                )
            )
    return found


def rules_of(cells: Iterable[Cell]) -> list[PolicyRule]:
    """Cells grouped back into few rules: one per API group and names, resources with equal verbs together."""
    verbs_by: dict[tuple[str, tuple[str, ...]], dict[str, set[str]]] = {}
    for group, resource, verb, names in cells:
        verbs_by.setdefault((group, names), {}).setdefault(resource, set()).add(verb)
    rules = []
    for (group, names), by_resource in sorted(verbs_by.items()):
        resources_by_verbs: dict[tuple[str, ...], list[str]] = {}
        for resource, verb_set in sorted(by_resource.items()):
            resources_by_verbs.setdefault(tuple(sorted(verb_set)), []).append(resource)
        for verbs, resources in resources_by_verbs.items():
            rules.append(
                PolicyRule(
                    verbs=list(verbs), api_groups=[group], resources=resources, resource_names=list(names)
                )
            )
    return rules


def summarize(rules: Sequence[PolicyRule], tally: UsageTally) -> UsageSummary:
    """The summary a request's status and the audit record carry once its grant has ended.

    Non-resource rules (`nonResourceURLs`) are left out of `unused`: the audit webhook's
    events for them carry no objectRef, so their use is not followed.
    """
    unused = [
        cell for rule in rules if rule.resources for cell in _cells(rule) if not _exercised(cell, tally.used)
    ]
    used, used_cut = _counts(tally.used)
    denied, denied_cut = _counts(tally.denied)
    unused_rules = rules_of(unused)
    return UsageSummary(
        used=used,
        unused=unused_rules[:MAX_ENTRIES],
        denied=denied,
        events=tally.events,
        truncated=used_cut or denied_cut or len(unused_rules) > MAX_ENTRIES,
    )


def _counts(counter: Counter[UseKey]) -> tuple[list[UsageCount], bool]:
    ordered = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return [
        UsageCount(verb=verb, api_group=group, resource=resource, namespace=namespace, count=count)
        for (verb, group, resource, namespace), count in ordered[:MAX_ENTRIES]
    ], len(ordered) > MAX_ENTRIES


def used_keys(summary: UsageSummary) -> set[UseKey]:
    return {(u.verb, u.api_group, u.resource, u.namespace) for u in summary.used}


def narrowed(rules: Sequence[PolicyRule], used: Iterable[UseKey]) -> list[PolicyRule]:
    """The smallest rules, cut from `rules`, that still allow every use in `used`.

    Each rule keeps only the (verb, resource, group) cells some use exercised; a wildcard
    becomes the concrete values it was used as. Non-resource rules are kept as they are.
    """
    used = list(used)
    cells = {
        found for rule in rules if rule.resources for cell in _cells(rule) for found in _exercised(cell, used)
    }
    kept = [rule for rule in rules if rule.non_resource_ur_ls and not rule.resources]
    return rules_of(sorted(cells)) + kept
