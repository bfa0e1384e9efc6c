"""What each field of the three kinds means, for the generated reference (tools/refdocs.py).

Types, defaults and validation come from the CRD schemas; this file says only what a field
means and what the operator does with it. Keys are the reference's paths (`[]` marks the
items of a list). tests/test_docs.py fails when a field has no text here (and no
`description` in the schema), or when a key names a field the CRD no longer has.
"""

from typing import Final

KIND_DOCS: Final[dict[str, str]] = {
    "AccessPolicy": (
        "Written by platform admins. A request is allowed when one policy matches it on every "
        "check: requester, namespace, grantee, permission, TTL, limits, environments, approvers. "
        "When several match, the one needing the fewest approvals wins (then the first by name). "
        "A denial names the policy that came closest and every reason it did not match. "
        "See [Writing policies](../policies.md) for a walk-through."
    ),
    "AccessRequest": (
        "Filed by the task that needs the privilege (a pipeline, an agent, a GitOps controller, a "
        "person), in the namespace where the privilege is wanted. The requester is whoever the "
        "API server authenticated when the request was created; the admission webhook records it "
        "in the annotation `zsp.dev/requester`, which nobody else can write. Approvals are the "
        "annotations `zsp.dev/approve` and `zsp.dev/deny` (what `zsp approve` and `zsp deny` "
        "set), turned by the webhook into records under `zsp.dev/approvals` with the approver's "
        "authenticated identity. A request is one-shot: once it has ended it never grants again."
    ),
    "TaskGrant": (
        "Created and deleted by the operator alone (the admission webhook refuses anyone else's "
        "write). It exists exactly while its privilege is live, so `kubectl get taskgrants -A` "
        "lists every privilege in force. It lives in the request's namespace under the request's "
        "name, is owned by the AccessRequest, owns the Role, RoleBinding and ephemeral "
        "ServiceAccount it created, and carries the finalizer `zsp.dev/revoke` that holds it "
        "until the teardown is complete. You never write one; read it to see what is granted."
    ),
}

_SUBJECT_KIND = "`ServiceAccount`, `User` or `Group`."
_SUBJECT_NAME = "The ServiceAccount's, user's or group's name, as the API server authenticates it."
_SUBJECT_NAMESPACE = "The ServiceAccount's namespace; set for a ServiceAccount, never for a User or Group."

_RULE = {
    "verbs": "RBAC verbs, e.g. `get`, `list`, `patch`; `*` is every verb.",
    "apiGroups": 'API groups of the resources; `""` is the core group. A grant\'s rule needs at least one.',
    "resources": "Resources (`deployments`, `pods/log`); a grant's rule needs at least one.",
    "resourceNames": "Limits the rule to these object names; empty means every name.",
    "nonResourceURLs": (
        "Non-resource URLs. A grant is a namespaced Role, which cannot hold them: a rule with "
        "nonResourceURLs is denied."
    ),
}


def _rules(prefix: str) -> dict[str, str]:
    return {f"{prefix}[].{name}": text for name, text in _RULE.items()}


def _conditions(prefix: str, types: str) -> dict[str, str]:
    return {
        prefix: f"Conditions in the Kubernetes shape, one per type: {types}.",
        f"{prefix}[].type": "The condition's type.",
        f"{prefix}[].status": "`True`, `False` or `Unknown`.",
        f"{prefix}[].reason": "Why, as one CamelCase word (`Issued`, `Expired`, `AwaitingApproval`, ...).",
        f"{prefix}[].message": "Why, in a sentence that names the field or object concerned.",
        f"{prefix}[].lastTransitionTime": "When the status last changed.",
        f"{prefix}[].observedGeneration": "The `metadata.generation` this condition was set for.",
    }


def _userinfo(prefix: str, what: str) -> dict[str, str]:
    return {
        prefix: what,
        f"{prefix}.username": "Username as authenticated (`system:serviceaccount:<ns>:<name>` for a ServiceAccount).",
        f"{prefix}.uid": "The identity's uid, as the authenticator reported it.",
        f"{prefix}.groups": "Groups the API server put the identity in.",
        f"{prefix}.extra": (
            "Extra attributes from the authenticator; for a ServiceAccount token, "
            "`authentication.kubernetes.io/credential-id` names the token that was used."
        ),
    }


def _task_ref(prefix: str) -> dict[str, str]:
    return {
        f"{prefix}.apiVersion": "API version of the task object, e.g. `batch/v1`.",
        f"{prefix}.kind": "Kind of the task object, e.g. `Job`.",
        f"{prefix}.name": "Name of the task object.",
        f"{prefix}.namespace": "Namespace of the task object; defaults to the request's namespace.",
    }


FIELD_DOCS: Final[dict[str, dict[str, str]]] = {
    "AccessPolicy": {
        "spec.requesters": (
            "Who may file requests under this policy, matched against the authenticated "
            "requester: a ServiceAccount or User by username, a Group by membership. Empty means "
            "nobody."
        ),
        "spec.requesters[].kind": _SUBJECT_KIND,
        "spec.requesters[].name": _SUBJECT_NAME,
        "spec.requesters[].namespace": _SUBJECT_NAMESPACE,
        "spec.grantees": "Who may receive the privilege: existing ServiceAccounts, a fresh one per grant, or both.",
        "spec.grantees.serviceAccounts": (
            "Existing ServiceAccounts a request may name in `spec.grantee.serviceAccount` (bind "
            "mode: the operator binds them, they keep their own credentials)."
        ),
        "spec.grantees.serviceAccounts[].namespace": "The ServiceAccount's namespace.",
        "spec.grantees.serviceAccounts[].name": "The ServiceAccount's name.",
        "spec.grantees.ephemeral": (
            "Ephemeral grantees: a ServiceAccount created for one grant, whose token is written "
            "as a kubeconfig into a delivery Secret, and which is deleted when the grant ends."
        ),
        "spec.grantees.ephemeral.enabled": "Allow requests with `spec.grantee.ephemeral`.",
        "spec.grantees.ephemeral.deliveryNamespaces": (
            "Namespaces the kubeconfig Secret may be written to (`spec.delivery.namespace`). "
            "Whoever may read Secrets there can use the token: pick namespaces only the "
            "requesting task can read."
        ),
        "spec.namespaces.names": "Namespaces grants may land in, by name.",
        "spec.namespaces.selector": (
            "Namespaces grants may land in, by label; re-checked when a namespace's labels "
            "change, so relabelling a namespace out of the policy revokes its grants. With "
            "neither names nor selector, grants land nowhere."
        ),
        "spec.namespaces.selector.matchLabels": "Labels a namespace must carry, all of them.",
        "spec.namespaces.selector.matchExpressions": "Label requirements a namespace must meet, all of them.",
        "spec.namespaces.selector.matchExpressions[].key": "The label key.",
        "spec.namespaces.selector.matchExpressions[].operator": "How the label is compared with `values`.",
        "spec.namespaces.selector.matchExpressions[].values": "Values for `In` and `NotIn`; empty for the others.",
        "spec.permissions": "What may be granted, by name; a request names one in `spec.permission`, or asks for `spec.rules` these cover.",
        "spec.permissions[].name": "The name requests use.",
        "spec.permissions[].rules": (
            "Inline rules: the grant creates a Role with exactly these in the target namespace. "
            "Rules that can outlive revocation are denied unless `allowPersistence` is true."
        ),
        "spec.permissions[].clusterRole": (
            "A ClusterRole to bind in the target namespace instead of inline rules; it must be in "
            "the operator's catalog (`--catalog`, chart value `operator.catalog`), or the policy "
            "is refused at admission."
        ),
        "spec.defaultTTL": "How long a grant lives when the request gives no `ttl`.",
        "spec.maxTTL": (
            "The longest grant allowed; a longer `ttl` is refused at admission (when the request "
            "names the policy) or denied, never shortened."
        ),
        "spec.approval": "Approval before issuance; ignored by a break-glass policy.",
        "spec.approval.required": "Distinct eligible approvers needed; 0 issues without approval.",
        "spec.approval.approvers": (
            "Who may approve or deny. One deny from an eligible approver denies the request, even "
            "after that approver approved."
        ),
        "spec.approval.approvers[].kind": _SUBJECT_KIND,
        "spec.approval.approvers[].name": _SUBJECT_NAME,
        "spec.approval.approvers[].namespace": _SUBJECT_NAMESPACE,
        "spec.approval.allowSelfApproval": "Let the requester's own approval count (it is refused otherwise).",
        "spec.approval.timeout": "A request still Pending this long after creation ends TimedOut.",
        "spec.limits": "Caps on live grants issued under this policy; a request over a cap is denied, not queued.",
        "spec.limits.activePerGrantee": "Live grants one existing ServiceAccount may hold under this policy.",
        "spec.limits.activePerRequester": "Live grants one requester may have under this policy.",
        "spec.limits.activePerPolicy": "Live grants under this policy in total.",
        "spec.limits.exclusiveEnvironments": (
            "An existing ServiceAccount may not hold live grants in namespaces with different "
            "`zsp.dev/environment` labels at once (e.g. staging and production)."
        ),
        "spec.allowPersistence": (
            "Allow rules that can be used to keep access after revocation (minting tokens, "
            "writing RBAC, `bind`, `escalate`, `impersonate`, reading Secrets, creating Pods, "
            "wildcards). Such grants are flagged in status, audit and metrics."
        ),
        "spec.breakGlass": (
            "Emergency access: no approval, TTL capped by the operator's `--break-glass-max-ttl` "
            "(1h by default) whatever `maxTTL` says, and every step posted as a Warning Event."
        ),
        "spec.conditions": (
            "CEL conditions that must all hold for the policy to allow a request; they are "
            "checked again while a grant lives, and a grant whose conditions stop holding is "
            "revoked. Each expression is compiled when the policy is admitted. The variables and "
            "examples: [Conditions](../conditions.md)."
        ),
        "spec.conditions[].name": "Names the condition in denials and revocations; unique in the policy.",
        "spec.conditions[].expression": "A CEL expression that must evaluate to true.",
        "spec.conditions[].message": "What a denial says when the condition does not hold.",
        "spec.notify": (
            "Who hears about this policy's requests: each route sends the listed events to the "
            "listed targets. The targets and their URLs are defined in the operator's "
            "notification routes file (`--notify-config`), never in the policy: "
            "[Notifications](../notifications.md)."
        ),
        "spec.notify[].events": (
            "Transitions to send: `approvalNeeded`, `approved`, `denied`, `timedOut`, `issued`, "
            "`ended`, `breakGlass`, `persistenceGranted`, `issueFailed`."
        ),
        "spec.notify[].targets": "Target names from the notification routes file.",
    },
    "AccessRequest": {
        "spec.policy": "The AccessPolicy to decide by; without it every policy is tried.",
        "spec.grantee": "Who receives the privilege: exactly one of `serviceAccount` or `ephemeral`.",
        "spec.grantee.serviceAccount": "An existing ServiceAccount listed in the policy's `grantees.serviceAccounts`.",
        "spec.grantee.serviceAccount.namespace": "Its namespace.",
        "spec.grantee.serviceAccount.name": "Its name.",
        "spec.grantee.ephemeral": (
            "Set `{}` to have a ServiceAccount created for this grant in the request's namespace "
            "(named `zsp-<request>-<hash>`); needs `delivery`."
        ),
        "spec.permission": "A permission of the policy, by name; or give `rules` instead.",
        "spec.rules": "Rules to grant instead of a named permission; every rule must be covered by the policy's permissions.",
        "spec.ttl": "How long the grant may live; the policy's `defaultTTL` when absent; over `maxTTL` is refused or denied.",
        "spec.reason": (
            "Why the access is needed; kept in status, Events, notifications and the audit log, so "
            "it must never hold a credential (something shaped like a token or private key is refused)."
        ),
        "spec.taskRef": (
            "The task the grant is for: it ends (Completed) when this object finishes or is "
            "deleted. A Job ends on its Complete, SuccessCriteriaMet, Failed or FailureTarget "
            "condition, a Pod in phase Succeeded or Failed, anything else on a True Ready, "
            "Complete or Failed condition. A task that does not exist yet is waited for, within the TTL."
        ),
        "spec.delivery": "Where the ephemeral identity's kubeconfig goes; only with `grantee.ephemeral`.",
        "spec.delivery.namespace": "The Secret's namespace; must be one of the policy's `grantees.ephemeral.deliveryNamespaces`.",
        "spec.delivery.secretName": "The Secret's name; its key `kubeconfig` holds a kubeconfig with the token.",
        "spec.done": (
            "Set true to end the grant now (Completed). The only field that may change once the "
            "request has been decided; it cannot be set back."
        ),
        "status.phase": (
            "Derived from the conditions: Pending, Approved, Active, then Completed, Expired or "
            "Revoked; or Denied, TimedOut, Failed."
        ),
        "status.policy": "The policy that decided (for a denial, the one that came closest).",
        "status.approvals": "Every approve or deny recorded, with the approver's authenticated identity.",
        "status.approvals[].username": "The approver, as authenticated.",
        "status.approvals[].groups": "The approver's groups at that moment.",
        "status.approvals[].decision": "`approve` or `deny`.",
        "status.approvals[].at": "When it was recorded.",
        "status.approvals[].comment": "The text given with `zsp approve --comment` (the annotation's value).",
        "status.decision": "The policy decision.",
        "status.decision.allowed": "True when a policy allows the request (possibly after approval).",
        "status.decision.reason": "Why, naming the policy; for a denial, every field that did not match and how to fix it.",
        "status.decision.at": "When it was decided.",
        "status.grant": "The TaskGrant that holds the privilege.",
        "status.grant.name": "Its name (the request's).",
        "status.grant.uid": "Its uid.",
        "status.identity": "The ServiceAccount holding the privilege: the named one, or the one created.",
        "status.identity.namespace": "Its namespace.",
        "status.identity.name": "Its name.",
        "status.permissionRules": "The rules granted (absent when the permission is a catalogued ClusterRole).",
        "status.persistenceCapable": "True when the rules can outlive revocation (allowed by `allowPersistence`).",
        "status.breakGlass": "True when a break-glass policy allowed it.",
        "status.issuedAt": "When the grant became live.",
        "status.expiresAt": "When the privilege ends at the latest.",
        "status.revokedAt": "When the privilege was removed.",
        "status.endReason": "Why it ended or failed, in a sentence.",
        "status.revocationLagSeconds": "For an expired grant: seconds from `expiresAt` to the RoleBinding's deletion (negative: early).",
        "status.tokenCredentialId": (
            "The issued token's `jti` (ephemeral grants): the `authentication.kubernetes.io/credential-id` "
            "the API server's audit log shows for calls made with it."
        ),
        "status.usage": (
            "What the grant was used for, from the API server's audit events, recorded once after it "
            "ended (`zsp run --audit-webhook-port`; docs/evidence.md)."
        ),
        "status.usage.used": "Allowed requests a rule of the grant covers, counted by verb, resource and namespace.",
        "status.usage.used[].verb": "The request's verb (`get`, `list`, `watch`, `create`, `patch`, ...).",
        "status.usage.used[].apiGroup": "The resource's API group (empty for the core group).",
        "status.usage.used[].resource": "The resource, or `resource/subresource`.",
        "status.usage.used[].namespace": "The namespace of the request (empty: cluster-scoped).",
        "status.usage.used[].count": "How many such requests were made.",
        "status.usage.unused": (
            "The grant's rules, narrowed to verb and resource, that no request exercised: "
            "candidates for `zsp advise` (empty for a catalogued ClusterRole, whose rules the grant does not hold)."
        ),
        "status.usage.unused[].verbs": "Verbs never used.",
        "status.usage.unused[].apiGroups": "The API group.",
        "status.usage.unused[].resources": "Resources never used with those verbs.",
        "status.usage.unused[].resourceNames": "The rule's resource names, if it had any.",
        "status.usage.unused[].nonResourceURLs": "Always empty: non-resource rules are not followed.",
        "status.usage.denied": "Requests the grantee made during the grant that the API server refused.",
        "status.usage.denied[].verb": "The request's verb.",
        "status.usage.denied[].apiGroup": "The resource's API group.",
        "status.usage.denied[].resource": "The resource, or `resource/subresource`.",
        "status.usage.denied[].namespace": "The namespace of the request (empty: cluster-scoped).",
        "status.usage.denied[].count": "How many such requests were refused.",
        "status.usage.events": "Audit events attributed to the grant (used and denied).",
        "status.usage.truncated": "True when a list was cut at 100 entries.",
        "status.observedGeneration": "The `metadata.generation` the operator last acted on.",
    },
    "TaskGrant": {
        "spec.request": "The AccessRequest this grant was issued for.",
        "spec.request.name": "Its name.",
        "spec.request.uid": "Its uid; a new request of the same name is a different request.",
        "spec.policy": "The AccessPolicy that allowed it; the grant is re-decided when that policy changes.",
        "spec.mode": "`bind` (an existing ServiceAccount) or `ephemeral` (one created for this grant).",
        "spec.identity": "The ServiceAccount that holds the privilege.",
        "spec.identity.namespace": "Its namespace.",
        "spec.identity.name": "Its name.",
        "spec.permission": "The policy's permission by name, when the request named one.",
        "spec.rules": "The rules of the grant's Role (empty when a catalogued ClusterRole is bound).",
        "spec.clusterRole": "The catalogued ClusterRole bound, when the permission is one.",
        "spec.expiresAt": "When the operator revokes it at the latest.",
        "spec.taskRef.apiVersion": "API version of the task object.",
        "spec.taskRef.kind": "Kind of the task object.",
        "spec.taskRef": "The task whose end ends the grant (copied from the request).",
        "spec.taskRef.name": "Name of the task object.",
        "spec.taskRef.namespace": "Namespace of the task object.",
        "spec.delivery": "The Secret the kubeconfig was delivered to (ephemeral mode).",
        "spec.delivery.namespace": "Its namespace.",
        "spec.delivery.secretName": "Its name.",
        "spec.persistenceCapable": "The rules can outlive revocation (the policy allowed it).",
        "spec.breakGlass": "Issued under a break-glass policy.",
        "status.objects": "Everything issuance created, with uids, so the teardown deletes exactly these.",
        "status.objects[].apiVersion": "API version of the object.",
        "status.objects[].kind": "Kind of the object.",
        "status.objects[].name": "Name of the object.",
        "status.objects[].namespace": "Namespace of the object.",
        "status.objects[].uid": "Its uid; deletes carry it as a precondition.",
        "status.tokenCredentialId": "The issued token's `jti` (ephemeral mode).",
        "status.tokenExpiresAt": (
            "When the token itself expires, as the TokenRequest API answered (at least 600 s "
            "after issuance: the API's floor). The grant ends at `spec.expiresAt` regardless."
        ),
        "status.issuedAt": "When issuance finished.",
        "status.revokedAt": "When the privilege was removed.",
        "status.endReason": "Why it ended, in a sentence.",
    },
}

FIELD_DOCS["AccessRequest"].update(_rules("spec.rules"))
FIELD_DOCS["AccessRequest"].update(_rules("status.permissionRules"))
FIELD_DOCS["AccessRequest"].update(_task_ref("spec.taskRef"))
FIELD_DOCS["AccessRequest"].update(
    _userinfo(
        "status.requester",
        "The authenticated creator, copied from the webhook's `zsp.dev/requester` annotation.",
    )
)
FIELD_DOCS["AccessRequest"].update(_conditions("status.conditions", "`Approved`, `Denied`, `Ready`"))
FIELD_DOCS["AccessPolicy"].update(_rules("spec.permissions[].rules"))
FIELD_DOCS["TaskGrant"].update(_rules("spec.rules"))
FIELD_DOCS["TaskGrant"].update(_userinfo("spec.requester", "Who filed the request, as authenticated."))
FIELD_DOCS["TaskGrant"].update(_conditions("status.conditions", "`Ready`"))
