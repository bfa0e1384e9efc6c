"""Operator settings: flags of `zsp run` and `ZSP_*` environment variables, validated once.

Each field is a flag as it stands (cli/run.py makes them): its description is the help, its
type says how the value is read; `json_schema_extra={"metavar": ...}` names the value in
`--help` where its type alone would not say enough.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from zsp_operator.core import constants as c
from zsp_operator.core.models import Duration


class SweepMode(StrEnum):
    AUDIT = "audit"
    ENFORCE = "enforce"


def _split(value: object) -> object:
    """Comma-separated environment values (`ZSP_NAMESPACES=a,b`) become lists."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split)]
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class Settings(BaseSettings):
    """Everything `zsp run` can be told; each field is also `ZSP_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ZSP_", extra="forbid", validate_default=True)

    kubeconfig: str | None = Field(
        default=None,
        description="kubeconfig file; default like kubectl",
        json_schema_extra={"metavar": "FILE"},
    )
    context: str | None = Field(default=None, description="kubeconfig context")
    namespaces: CommaList = Field(
        default_factory=list,
        description="namespaces to serve (comma-separated); empty = all",
        json_schema_extra={"metavar": "NS[,NS...]"},
    )
    metrics_port: int = Field(default=8080, description="port of /metrics")
    health_port: int = Field(default=8081, description="port of /healthz (liveness)")
    webhook_port: int = Field(default=9443, description="port of the admission webhooks")
    catalog: CommaList = Field(
        default_factory=lambda: ["view"],
        description="ClusterRoles that policies may reference by clusterRole (comma-separated)",
        json_schema_extra={"metavar": "CLUSTERROLE[,...]"},
    )
    break_glass_max_ttl: Duration = Field(
        default=timedelta(hours=1), description="longest TTL a break-glass policy may grant"
    )
    token_seconds: int = Field(
        default=600,
        ge=600,
        description="expirationSeconds of issued tokens (the API's floor is 600; the grant's own "
        "expiry is enforced by revocation)",
    )
    delivery_server: str | None = Field(
        default=None,
        description="API server URL written into delivered kubeconfigs",
        json_schema_extra={"metavar": "URL"},
    )
    sweep_mode: SweepMode = Field(
        default=SweepMode.AUDIT,
        description="unmanaged bindings in enforced namespaces: audit reports them, enforce deletes them",
    )
    sweep_allowlist: CommaList = Field(
        default_factory=list,
        description="bindings the sweeper never deletes: NAMESPACE/NAME or NAME, shell wildcards allowed (zsp-requester-*)",
        json_schema_extra={"metavar": "NS/NAME[,...]"},
    )
    enforce_cluster_bindings: bool = Field(
        default=False, description="in enforce mode, also delete unmanaged ClusterRoleBindings"
    )
    resync: Duration = Field(default=timedelta(minutes=5), description="full sweep interval")
    revoke_concurrency: int = Field(
        default=16,
        ge=1,
        le=256,
        description="expiries revoked at once, earliest deadline first; a burst starts early by "
        "its size over the measured rate",
    )
    audit_file: str | None = Field(
        default=None,
        description="also append audit records to this file",
        json_schema_extra={"metavar": "FILE"},
    )
    notify_config: str | None = Field(
        default=None,
        description="notification routes file (YAML: targets with their Apprise or webhook URLs, routes "
        "by event, the breakGlass targets); mount it from a Secret: URLs never sit in a CR "
        "(docs/notifications.md)",
        json_schema_extra={"metavar": "FILE"},
    )
    notify_attempts: int = Field(
        default=8, ge=1, le=50, description="tries per notification before it is counted as failed"
    )
    notify_queue: int = Field(
        default=1000,
        ge=1,
        description="notifications each target may hold while it is slow or down; more are dropped and counted",
    )
    notify_timeout: Duration = Field(
        default=timedelta(seconds=10), description="longest one delivery attempt may take"
    )
    webhook_cert_dir: str | None = Field(
        default=None,
        description="directory with tls.crt and tls.key for the webhook server (in a cluster)",
        json_schema_extra={"metavar": "DIR"},
    )
    dev: bool = Field(
        default=False, description="serve webhooks on 127.0.0.1 with a self-signed cert and register them"
    )
    webhook_service: str | None = Field(
        default=None,
        description="NAMESPACE/NAME of the Service the API server calls the webhooks through; the "
        "operator keeps their certificate in a Secret and its CA in the webhook configurations",
        json_schema_extra={"metavar": "NAMESPACE/NAME"},
    )
    webhook_secret: str | None = Field(
        default=None,
        description="Secret (in the Service's namespace) for the webhook certificate; default NAME-tls",
    )
    webhook_configuration: str = Field(
        default=c.OPERATOR_NAME,
        description="name of the Mutating and ValidatingWebhookConfiguration that get the CA bundle",
    )
    webhook_cert_refresh: Duration = Field(
        default=timedelta(hours=1),
        description="how often the webhook certificate is re-read (cert dir) or renewed near expiry "
        "(webhook service) and swapped in without a restart",
    )
    audit_webhook_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="serve the API server's audit webhook (POST /audit) on this port for evidence of use; "
        "0: off (docs/evidence.md)",
    )
    audit_webhook_cert_dir: str | None = Field(
        default=None,
        description="directory with tls.crt and tls.key the audit webhook serves; its CA goes in the "
        "API server's --audit-webhook-config-file",
        json_schema_extra={"metavar": "DIR"},
    )
    audit_webhook_token_file: str | None = Field(
        default=None,
        description="file with the bearer token the API server's audit webhook kubeconfig sends; "
        "posts without it (or a client certificate from --audit-webhook-client-ca) get 401",
        json_schema_extra={"metavar": "FILE"},
    )
    audit_webhook_client_ca: str | None = Field(
        default=None,
        description="CA file: a client certificate it signed is accepted on the audit webhook",
        json_schema_extra={"metavar": "FILE"},
    )
    audit_webhook_max_body: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="largest EventList (bytes) the audit webhook reads; larger posts get 413",
    )
    audit_settle: Duration = Field(
        default=timedelta(seconds=60),
        description="how long after a grant ends its usage summary waits for late audit events; "
        "keep it above the API server's --audit-webhook-batch-max-wait (30s by default)",
    )
    leader_elect: bool = Field(
        default=False,
        description="elect one active replica through a coordination.k8s.io Lease; the others stand by",
    )
    lease_namespace: str | None = Field(
        default=None, description="namespace of the Lease; default the pod's own, else zsp-system"
    )
    lease_name: str = Field(default=c.OPERATOR_NAME, description="name of the Lease")
    lease_duration: Duration = Field(
        default=timedelta(seconds=15),
        description="how long a standby waits before taking over a silent leader",
    )
    renew_deadline: Duration = Field(
        default=timedelta(seconds=10), description="the leader steps down if it cannot renew within this"
    )
    retry_period: Duration = Field(
        default=timedelta(seconds=2), description="how often the Lease is renewed or tried"
    )

    @field_validator("webhook_service")
    @classmethod
    def _service_reference(cls, value: str | None) -> str | None:
        if value is None:
            return value
        namespace, slash, name = value.partition("/")
        if not (slash and _DNS_LABEL.fullmatch(namespace) and _DNS_LABEL.fullmatch(name)):
            raise ValueError("must be NAMESPACE/NAME of a Service, e.g. zsp-system/zsp-operator-webhook")
        return value

    @model_validator(mode="after")
    def _audit_webhook_authenticates(self) -> Settings:
        if self.audit_webhook_port and not (self.audit_webhook_token_file or self.audit_webhook_client_ca):
            raise ValueError(
                "--audit-webhook-port needs --audit-webhook-token-file or --audit-webhook-client-ca: "
                "the audit webhook believes only the API server"
            )
        if self.audit_webhook_port and not self.audit_webhook_cert_dir:
            raise ValueError(
                "--audit-webhook-port needs --audit-webhook-cert-dir (tls.crt, tls.key): the API server "
                "sends audit events over TLS only"
            )
        return self
