"""Names shared by every layer: API group, labels, annotations, reasons, condition types."""

from typing import Final

GROUP: Final = "zsp.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

KIND_POLICY: Final = "AccessPolicy"
KIND_REQUEST: Final = "AccessRequest"
KIND_GRANT: Final = "TaskGrant"
PLURAL_POLICY: Final = "accesspolicies"
PLURAL_REQUEST: Final = "accessrequests"
PLURAL_GRANT: Final = "taskgrants"

OPERATOR_NAME: Final = "zsp-operator"

# Labels on everything the operator creates.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_GRANT: Final = "zsp.dev/grant"
LABEL_GRANT_UID: Final = "zsp.dev/grant-uid"
LABEL_REQUEST_UID: Final = "zsp.dev/request-uid"

# Namespace labels the operator reads.
LABEL_ENVIRONMENT: Final = "zsp.dev/environment"
LABEL_ENFORCE: Final = "zsp.dev/enforce"

# Annotations written only through the admission webhook.
ANNOTATION_REQUESTER: Final = "zsp.dev/requester"
ANNOTATION_APPROVALS: Final = "zsp.dev/approvals"
ANNOTATION_APPROVE: Final = "zsp.dev/approve"
ANNOTATION_DENY: Final = "zsp.dev/deny"
# Set on a delivery Secret found after a crash, as the grant that made it is torn down.
ANNOTATION_ENDING: Final = "zsp.dev/ending"

# The TaskGrant finalizer runs the teardown; kopf's own bookkeeping lives under its own prefix.
FINALIZER: Final = "zsp.dev/revoke"
KOPF_FINALIZER: Final = "kopf.zsp.dev/finalizer"  # kopf's; no handler of ours requires one
KOPF_PREFIX: Final = "kopf.zsp.dev"

# Key of the delivery Secret that holds the kubeconfig.
DELIVERY_KEY: Final = "kubeconfig"

# TokenRequest's floor: the API rejects expirationSeconds below 600.
TOKEN_MIN_SECONDS: Final = 600

# Condition types (Kubernetes shape).
COND_APPROVED: Final = "Approved"
COND_DENIED: Final = "Denied"
COND_READY: Final = "Ready"

# Condition reasons and end reasons.
REASON_ISSUED: Final = "Issued"
REASON_EXPIRED: Final = "Expired"
REASON_REVOKED: Final = "Revoked"
REASON_COMPLETED: Final = "Completed"
REASON_FAILED: Final = "Failed"
REASON_PENDING: Final = "AwaitingApproval"
REASON_POLICY_ALLOWS: Final = "PolicyAllows"
REASON_POLICY_DENIES: Final = "PolicyDenies"
REASON_APPROVED: Final = "QuorumReached"
REASON_APPROVER_DENIED: Final = "ApproverDenied"
REASON_TIMED_OUT: Final = "TimedOut"

# Event reasons.
EVENT_REQUEST_DECIDED: Final = "RequestDecided"
EVENT_REQUEST_DENIED: Final = "RequestDenied"
EVENT_APPROVAL_RECORDED: Final = "ApprovalRecorded"
EVENT_GRANT_ISSUED: Final = "GrantIssued"
EVENT_GRANT_REVOKED: Final = "GrantRevoked"
EVENT_GRANT_FAILED: Final = "GrantFailed"
EVENT_EDIT_IGNORED: Final = "EditIgnored"
# A live grant revoked because a condition of its policy stopped holding (the Warning Event's reason).
EVENT_CONDITION_NO_LONGER_HOLDS: Final = "ConditionNoLongerHolds"
EVENT_BREAK_GLASS: Final = "BreakGlass"
EVENT_STANDING_BINDING: Final = "StandingBindingFound"
EVENT_STANDING_BINDING_REMOVED: Final = "StandingBindingRemoved"
