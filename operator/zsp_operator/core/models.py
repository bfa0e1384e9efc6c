"""Typed models of the three kinds; the CRD schemas are generated from these.

Field names follow the API the examples in `examples/` use (and docs/architecture.md
summarises): camelCase on the wire, snake_case in Python. Specs reject unknown fields so a typo is an error that
names the field, never a silently ignored setting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from zsp_operator.core.conditions import ConditionError, compile_condition
from zsp_operator.core.credentials import CREDENTIAL_SHAPES_RE2, looks_like_credential
from zsp_operator.core.durations import DURATION_PATTERN, format_duration, parse_duration


def _to_duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds kept: expiry is enforced below the second."""
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def parse_time(raw: Any) -> datetime | None:
    """An API timestamp (RFC 3339, `Z` or offset) as an aware datetime; None if absent or unreadable."""
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if not raw:
        return None
    try:
        return parse_time(datetime.fromisoformat(str(raw).replace("Z", "+00:00")))
    except ValueError:
        return None


def _to_time(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


Time = Annotated[
    datetime,
    BeforeValidator(_to_time),
    PlainSerializer(format_time, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

NonEmpty = Annotated[str, Field(min_length=1)]


def _api_server_checks(*rules: tuple[str, str]) -> dict[str, Any]:
    """CEL rules (rule, message) the API server itself enforces: `x-kubernetes-validations`.

    They repeat the model validators below so a bad object is refused at the API, with the
    same message, even when the admission webhook is not running. `zsp crds` copies them into
    the CRD schemas; tests/test_crds.py evaluates them.
    """
    return {"x-kubernetes-validations": [{"rule": rule, "message": msg} for rule, msg in rules]}


# `status.conditions` is keyed by type (Kubernetes API conventions), so server-side apply merges it.
_CONDITIONS_BY_TYPE: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class Model(BaseModel):
    """Base of every model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict the API server stores (camelCase, no unset optionals)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Phase(StrEnum):
    PENDING = "Pending"
    APPROVED = "Approved"
    ACTIVE = "Active"
    COMPLETED = "Completed"
    EXPIRED = "Expired"
    REVOKED = "Revoked"
    DENIED = "Denied"
    TIMED_OUT = "TimedOut"
    FAILED = "Failed"


TERMINAL_PHASES = frozenset(
    {Phase.COMPLETED, Phase.EXPIRED, Phase.REVOKED, Phase.DENIED, Phase.TIMED_OUT, Phase.FAILED}
)


class SubjectKind(StrEnum):
    SERVICE_ACCOUNT = "ServiceAccount"
    USER = "User"
    GROUP = "Group"


class Subject(Model):
    """Who: a ServiceAccount (namespace and name), a User or a Group (name)."""

    model_config = ConfigDict(
        json_schema_extra=_api_server_checks(
            (
                "self.kind == 'ServiceAccount'"
                " ? (has(self.namespace) && size(self.namespace) > 0)"
                " : (!has(self.namespace) || size(self.namespace) == 0)",
                "namespace: a ServiceAccount subject needs one, a User or Group subject has none",
            )
        )
    )

    kind: SubjectKind
    name: NonEmpty
    namespace: str | None = None

    @model_validator(mode="after")
    def _namespace_only_for_service_accounts(self) -> Subject:
        if self.kind is SubjectKind.SERVICE_ACCOUNT and not self.namespace:
            raise ValueError("a ServiceAccount subject needs a namespace")
        if self.kind is not SubjectKind.SERVICE_ACCOUNT and self.namespace:
            raise ValueError(f"a {self.kind.value} subject has no namespace")
        return self

    @property
    def username(self) -> str:
        """The username the API server authenticates this subject as (for Users and SAs)."""
        if self.kind is SubjectKind.SERVICE_ACCOUNT:
            return f"system:serviceaccount:{self.namespace}:{self.name}"
        return self.name


class NamespacedName(Model):
    namespace: NonEmpty
    name: NonEmpty


class LabelSelectorRequirement(Model):
    key: NonEmpty
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(Model):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class PolicyRule(Model):
    """An RBAC PolicyRule, as in rbac.authorization.k8s.io/v1."""

    verbs: list[NonEmpty] = Field(min_length=1)
    api_groups: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    resource_names: list[str] = Field(default_factory=list)
    non_resource_ur_ls: list[str] = Field(default_factory=list, alias="nonResourceURLs")


# --- AccessPolicy ---------------------------------------------------------------------------


class EphemeralGrantees(Model):
    enabled: bool = False
    delivery_namespaces: list[NonEmpty] = Field(default_factory=list)


class Grantees(Model):
    service_accounts: list[NamespacedName] = Field(default_factory=list)
    ephemeral: EphemeralGrantees | None = None


class NamespaceSelection(Model):
    """Where grants may land: the union of the listed names and the selector's matches."""

    names: list[NonEmpty] = Field(default_factory=list)
    selector: LabelSelector | None = None


class Permission(Model):
    """A named permission set: inline rules, or a ClusterRole from the operator's catalog."""

    model_config = ConfigDict(
        json_schema_extra=_api_server_checks(
            (
                "has(self.rules) != has(self.clusterRole)",
                "set exactly one of rules or clusterRole in each permission",
            )
        )
    )

    name: NonEmpty
    rules: list[PolicyRule] | None = None
    cluster_role: str | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Permission:
        if (self.rules is None) == (self.cluster_role is None):
            raise ValueError(f"permission {self.name!r}: set exactly one of rules or clusterRole")
        return self


class Approval(Model):
    required: int = Field(default=0, ge=0)
    approvers: list[Subject] = Field(default_factory=list)
    allow_self_approval: bool = False
    timeout: Duration = timedelta(minutes=30)


class Limits(Model):
    active_per_grantee: int | None = Field(default=None, ge=1)
    active_per_requester: int | None = Field(default=None, ge=1)
    active_per_policy: int | None = Field(default=None, ge=1)
    exclusive_environments: bool = False


class PolicyCondition(Model):
    """A CEL expression that must be true for the policy to allow, and stay true while a grant lives."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    expression: str = Field(min_length=1, max_length=4096)
    message: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _compiles(self) -> PolicyCondition:
        try:
            compile_condition(self.expression)
        except ConditionError as err:
            raise ValueError(
                f"condition {self.name!r}: expression {err}: fix the expression (docs/conditions.md lists "
                "the variables and their types)"
            ) from None
        return self


# The transitions a policy's `notify` routes may name (docs/notifications.md).
NOTIFY_EVENTS = (
    "approvalNeeded",
    "approved",
    "denied",
    "timedOut",
    "issued",
    "ended",
    "breakGlass",
    "persistenceGranted",
    "issueFailed",
)


def _known_event(value: str) -> str:
    if value not in NOTIFY_EVENTS:
        raise ValueError(f"{value!r} is not a notification event; use one of {', '.join(NOTIFY_EVENTS)}")
    return value


class NotifyRoute(Model):
    """Who hears about which transitions: targets named in the operator's notification file."""

    events: list[Annotated[str, BeforeValidator(_known_event)]] = Field(min_length=1)
    targets: list[NonEmpty] = Field(min_length=1)


class AccessPolicySpec(Model):
    model_config = ConfigDict(
        json_schema_extra=_api_server_checks(
            (
                "!has(self.defaultTTL) || !has(self.maxTTL)"
                " || duration(self.defaultTTL) <= duration(self.maxTTL)",
                "defaultTTL is longer than maxTTL: lower defaultTTL or raise maxTTL",
            )
        )
    )

    requesters: list[Subject] = Field(default_factory=list)
    grantees: Grantees = Field(default_factory=Grantees)
    namespaces: NamespaceSelection = Field(default_factory=NamespaceSelection)
    # Keyed by name: the API server refuses duplicates and server-side apply merges by name.
    permissions: list[Permission] = Field(
        min_length=1,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    default_ttl: Duration = Field(default=timedelta(minutes=15), alias="defaultTTL")
    max_ttl: Duration = Field(default=timedelta(hours=1), alias="maxTTL")
    approval: Approval = Field(default_factory=Approval)
    limits: Limits = Field(default_factory=Limits)
    allow_persistence: bool = False
    break_glass: bool = False
    # All must hold for the policy to allow; keyed by name, like permissions.
    conditions: list[PolicyCondition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    notify: list[NotifyRoute] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> AccessPolicySpec:
        if self.default_ttl > self.max_ttl:
            raise ValueError(
                f"defaultTTL ({format_duration(self.default_ttl)}) is longer than maxTTL "
                f"({format_duration(self.max_ttl)}): lower defaultTTL or raise maxTTL"
            )
        names = [p.name for p in self.permissions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"permissions: names must be unique, repeated: {', '.join(duplicates)}")
        return self

    def permission(self, name: str) -> Permission | None:
        return next((p for p in self.permissions if p.name == name), None)


class ObjectMeta(Model):
    """The parts of metadata the operator reads; everything else is kept but not modelled."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    name: str = ""
    namespace: str | None = None
    uid: str = ""
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)


class AccessPolicy(Model):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AccessPolicySpec

    @property
    def name(self) -> str:
        return self.metadata.name


# --- AccessRequest --------------------------------------------------------------------------


class EphemeralGrantee(Model):
    """A ServiceAccount minted for this grant alone; nothing to configure yet."""


class Grantee(Model):
    model_config = ConfigDict(
        json_schema_extra=_api_server_checks(
            (
                "has(self.serviceAccount) != has(self.ephemeral)",
                "set exactly one of grantee.serviceAccount or grantee.ephemeral",
            )
        )
    )

    service_account: NamespacedName | None = None
    ephemeral: EphemeralGrantee | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Grantee:
        if (self.service_account is None) == (self.ephemeral is None):
            raise ValueError("set exactly one of grantee.serviceAccount or grantee.ephemeral")
        return self

    @property
    def mode(self) -> Literal["bind", "ephemeral"]:
        return "ephemeral" if self.ephemeral is not None else "bind"


class TaskRef(Model):
    api_version: NonEmpty
    kind: NonEmpty
    name: NonEmpty
    namespace: str | None = None


class Delivery(Model):
    namespace: NonEmpty
    secret_name: NonEmpty


def _reason_has_text(value: str) -> str:
    if not value.strip():
        raise ValueError("reason must say why the access is needed, not be blank")
    if looks_like_credential(value):
        raise ValueError(_REASON_HOLDS_CREDENTIAL)
    return value


def _cel_string(text: str) -> str:
    """`text` as the inside of a single-quoted CEL string literal."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


_REASON_HOLDS_CREDENTIAL = (
    "reason holds something shaped like a token or private key: never put credentials in a request "
    "(the reason is recorded and shown to approvers); say why the access is needed instead"
)


class AccessRequestSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=_api_server_checks(
            (
                "has(self.permission) != has(self.rules)",
                "set exactly one of permission (a policy's permission name) or rules",
            ),
            (
                "!has(self.delivery) || has(self.grantee.ephemeral)",
                "delivery is only for grantee.ephemeral: a bound ServiceAccount has its own tokens",
            ),
        )
    )

    policy: str | None = None
    grantee: Grantee
    permission: str | None = None
    rules: list[PolicyRule] | None = None
    ttl: Duration | None = None
    reason: Annotated[
        str,
        Field(
            min_length=1,
            json_schema_extra=_api_server_checks(
                # The CEL text is self.matches('\\S'): RE2's \S, one non-space character.
                ("self.matches('\\\\S')", "reason must say why the access is needed, not be blank"),
                (f"!self.matches('{_cel_string(CREDENTIAL_SHAPES_RE2)}')", _REASON_HOLDS_CREDENTIAL),
            ),
        ),
        BeforeValidator(_reason_has_text),
    ]
    task_ref: TaskRef | None = None
    delivery: Delivery | None = None
    done: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> AccessRequestSpec:
        if (self.permission is None) == (self.rules is None):
            raise ValueError("set exactly one of permission (a policy's permission name) or rules")
        if self.delivery is not None and self.grantee.ephemeral is None:
            raise ValueError(
                "delivery is only for grantee.ephemeral: a bound ServiceAccount has its own tokens"
            )
        return self


class UserInfo(Model):
    """An authenticated identity as the API server reported it.

    `extra` carries what the authenticator added, e.g. a ServiceAccount token's
    `authentication.kubernetes.io/credential-id`: which credential filed the request.
    """

    username: str
    uid: str = ""
    groups: list[str] = Field(default_factory=list)
    extra: dict[str, list[str]] = Field(default_factory=dict)


class ApprovalRecord(Model):
    username: str
    groups: list[str] = Field(default_factory=list)
    decision: Literal["approve", "deny"]
    at: Time
    comment: str | None = None


class DecisionRecord(Model):
    allowed: bool
    reason: str
    at: Time


class ObjectRef(Model):
    name: str
    uid: str = ""


class Condition(Model):
    """A status condition in the Kubernetes shape (metav1.Condition)."""

    type: NonEmpty
    status: Literal["True", "False", "Unknown"]
    reason: NonEmpty
    message: str = ""
    last_transition_time: Time
    observed_generation: int | None = None


class UsageCount(Model):
    """How often the grantee made one kind of request during a grant (from the API server's audit)."""

    verb: NonEmpty
    api_group: str = ""
    resource: NonEmpty  # `resource` or `resource/subresource`
    namespace: str = ""  # empty for cluster-scoped requests
    count: int = Field(ge=1)


class UsageSummary(Model):
    """What a grant was used for, joined from the API server's audit events once it ended.

    `used` counts allowed requests a rule of the grant covers; `unused` are the grant's rules
    (narrowed to the verb and resource) that no request exercised; `denied` counts requests the
    grantee made during the grant that the API server refused.
    """

    used: list[UsageCount] = Field(default_factory=list)
    unused: list[PolicyRule] = Field(default_factory=list)
    denied: list[UsageCount] = Field(default_factory=list)
    events: int = Field(default=0, ge=0, description="audit events attributed to the grant")
    truncated: bool = False


class AccessRequestStatus(Model):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    phase: Phase | None = None
    policy: str | None = None
    requester: UserInfo | None = None
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    decision: DecisionRecord | None = None
    grant: ObjectRef | None = None
    identity: NamespacedName | None = None
    permission_rules: list[PolicyRule] | None = None
    persistence_capable: bool | None = None
    break_glass: bool | None = None
    issued_at: Time | None = None
    expires_at: Time | None = None
    revoked_at: Time | None = None
    end_reason: str | None = None
    revocation_lag_seconds: float | None = None
    token_credential_id: str | None = None
    usage: UsageSummary | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=_CONDITIONS_BY_TYPE)


class NamespacedObject(Model):
    """A namespaced object as the API server sends it; fields the models do not name are ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""


class AccessRequest(NamespacedObject):
    spec: AccessRequestSpec
    status: AccessRequestStatus = Field(default_factory=AccessRequestStatus)


# --- TaskGrant ------------------------------------------------------------------------------


class CreatedObject(Model):
    """One object issuance created, so revocation can delete exactly it."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str = ""


class TaskGrantSpec(Model):
    """Written by the operator at issuance; the record the teardown and the sweeper trust."""

    request: ObjectRef
    policy: str
    mode: Literal["bind", "ephemeral"]
    identity: NamespacedName | None = None
    permission: str | None = None
    rules: list[PolicyRule] = Field(default_factory=list)
    cluster_role: str | None = None
    requester: UserInfo | None = None
    expires_at: Time
    task_ref: TaskRef | None = None
    delivery: Delivery | None = None
    persistence_capable: bool = False
    break_glass: bool = False


class TaskGrantStatus(Model):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    objects: list[CreatedObject] = Field(default_factory=list)
    token_credential_id: str | None = None
    token_expires_at: Time | None = None
    issued_at: Time | None = None
    revoked_at: Time | None = None
    end_reason: str | None = None
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=_CONDITIONS_BY_TYPE)


class TaskGrant(NamespacedObject):
    spec: TaskGrantSpec
    status: TaskGrantStatus = Field(default_factory=TaskGrantStatus)
