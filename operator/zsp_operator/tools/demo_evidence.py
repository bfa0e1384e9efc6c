"""Evidence of use on a local API server: its audit events sent to the operator (the demo, the tests).

Everything a platform team sets up by hand for it (docs/evidence.md) is made here in a
temporary folder: the audit webhook's serving certificate and its CA, the bearer token the
API server presents, the API server's audit policy and its webhook kubeconfig. The same
files serve the in-memory API server (`sim_options`) and kube-apiserver (`apiserver_args`).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import yaml

from zsp_operator.core.advice import advise, recorded_usage
from zsp_operator.core.models import AccessPolicy, PolicyRule, UsageSummary
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import ACCESS_POLICIES, ACCESS_REQUESTS
from zsp_operator.serving.pki import LOOPBACK, issue_serving_pki

# Short, so the demo need not wait: the API server's default batch wait is 30 s.
BATCH_WAIT = 0.2
SETTLE = "1s"
OPERATOR = "system:serviceaccount:zsp-system:zsp-operator"


@dataclass(frozen=True)
class Evidence:
    """Where the operator serves the audit webhook, and what the API server is started with."""

    port: int
    folder: Path

    def sim_options(self) -> dict[str, Any]:
        return {
            "audit_policy_file": self.folder / "audit-policy.yaml",
            "audit_webhook_config_file": self.folder / "audit-webhook.kubeconfig",
            "audit_webhook_batch_max_wait": BATCH_WAIT,
            "audit_webhook_initial_backoff": 0.2,
        }

    def apiserver_args(self) -> list[str]:
        return [
            f"--audit-policy-file={self.folder / 'audit-policy.yaml'}",
            f"--audit-webhook-config-file={self.folder / 'audit-webhook.kubeconfig'}",
            "--audit-webhook-mode=batch",
            f"--audit-webhook-batch-max-wait={int(BATCH_WAIT * 1000)}ms",
            "--audit-webhook-initial-backoff=200ms",
        ]

    @property
    def token(self) -> str:
        return (self.folder / "token").read_text(encoding="utf-8")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/audit"

    def operator_settings(self) -> dict[str, Any]:
        return {
            "audit_webhook_port": self.port,
            "audit_webhook_cert_dir": str(self.folder),
            "audit_webhook_token_file": str(self.folder / "token"),
            "audit_settle": SETTLE,
        }


@contextmanager
def evidence_files() -> Iterator[Evidence]:
    with TemporaryDirectory(prefix="zsp-demo-audit-") as tmp:
        folder = Path(tmp)
        pki = issue_serving_pki(LOOPBACK, common_name="zsp-operator-audit")
        pki.write(folder)
        (folder / "ca.crt").write_bytes(pki.ca_cert)
        token = secrets.token_urlsafe(32)
        (folder / "token").write_text(token, encoding="utf-8")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived", "ResponseStarted"],
            "rules": [
                {"level": "None", "users": [OPERATOR]},
                {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
                {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
                {"level": "None"},
            ],
        }
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "zsp-operator",
                    "cluster": {
                        "server": f"https://127.0.0.1:{port}/audit",
                        "certificate-authority-data": base64.b64encode(pki.ca_cert).decode(),
                    },
                }
            ],
            "users": [{"name": "kube-apiserver", "user": {"token": token}}],
            "contexts": [{"name": "audit", "context": {"cluster": "zsp-operator", "user": "kube-apiserver"}}],
            "current-context": "audit",
        }
        (folder / "audit-policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
        (folder / "audit-webhook.kubeconfig").write_text(yaml.safe_dump(kubeconfig), encoding="utf-8")
        yield Evidence(port, folder)


async def recorded(admin: Kube, name: str, namespace: str, within: float = 15) -> UsageSummary | None:
    """The usage the operator recorded on the request once its grant settled; None if it never did."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        body = await admin.get(ACCESS_REQUESTS, name, namespace) or {}
        usage = (body.get("status") or {}).get("usage")
        if usage is not None:
            return UsageSummary.model_validate(usage)
        await asyncio.sleep(0.1)
    return None


def _short(rule: PolicyRule) -> str:
    return f"{', '.join(rule.resources)}: {', '.join(rule.verbs)}"


def used_text(summary: UsageSummary) -> str:
    return ", ".join(f"{u.verb} {u.resource} x{u.count}" for u in summary.used) or "nothing"


def unused_text(summary: UsageSummary) -> str:
    return "; ".join(_short(r) for r in summary.unused) or "nothing"


async def advice_text(admin: Kube, policy_name: str, namespace: str) -> str:
    """What `zsp advise` would propose for the permission, from the requests recorded so far."""
    body = await admin.get(ACCESS_POLICIES, policy_name)
    if body is None:
        return "policy gone"
    policy = AccessPolicy.model_validate(body)
    requests = await admin.list(ACCESS_REQUESTS, namespace)
    proposals = [a for a in advise(policy, recorded_usage(policy_name, requests)) if a.proposed]
    if not proposals:
        return "no change"
    return "; ".join(f"{a.name} -> " + ", ".join(_short(r) for r in a.proposed or []) for a in proposals)
