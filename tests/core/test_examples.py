"""The manifests in examples/ are valid and tell the story they claim.

Covered: every document of every examples/*.yaml parses with the models (zsp.dev kinds) or has
the shape kubectl needs (other kinds); zsp kinds in subfolders parse too; the objects the
requests refer to exist; `zsp check` allows the CI request as the pipeline and explains a
denial otherwise; the AI agent's request waits for approval; the ephemeral request is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from zsp_operator.cli import main
from zsp_operator.core.constants import API_VERSION
from zsp_operator.core.errors import parse
from zsp_operator.core.models import AccessPolicy, AccessRequest, TaskGrant

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODELS: dict[str, type[AccessPolicy | AccessRequest | TaskGrant]] = {
    "AccessPolicy": AccessPolicy,
    "AccessRequest": AccessRequest,
    "TaskGrant": TaskGrant,
}
STAGING_LABELS = "team=payments,zsp.dev/environment=staging,zsp.dev/enforce=true"
PIPELINE = "system:serviceaccount:ci:pipeline"
OWN_FILES = [
    "namespaces.yaml",
    "policy-ci-deployers.yaml",
    "request-ci-bind.yaml",
    "request-ephemeral.yaml",
    "policy-break-glass.yaml",
    "policy-ai-agent.yaml",
    "request-ai-agent.yaml",
]


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def all_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(EXAMPLES.glob("*.yaml")) for d in documents(p)]


def example(name: str) -> str:
    return str(EXAMPLES / name)


@pytest.mark.parametrize("name", OWN_FILES)
def test_example_file_exists(name: str) -> None:
    assert (EXAMPLES / name).is_file()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_document_parses(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path.name} holds no objects"
    for doc in docs:
        assert doc.get("apiVersion"), f"{path.name}: apiVersion is required"
        assert doc.get("kind"), f"{path.name}: kind is required"
        assert doc.get("metadata", {}).get("name"), f"{path.name}: {doc['kind']} without metadata.name"
        model = MODELS.get(doc["kind"])
        if model is not None:
            assert doc["apiVersion"] == API_VERSION
            parse(model, doc, f"{path.name}: {doc['kind']} {doc['metadata']['name']}")


def test_zsp_objects_in_subfolders_parse() -> None:
    for path in sorted(EXAMPLES.glob("*/**/*.yaml")):
        for doc in documents(path):
            if isinstance(doc, dict) and doc.get("apiVersion") == API_VERSION and doc.get("kind") in MODELS:
                parse(MODELS[doc["kind"]], doc, f"{path}: {doc['kind']}")


def test_requests_refer_to_objects_that_exist() -> None:
    objects = all_objects()
    namespaces = {d["metadata"]["name"] for _, d in objects if d["kind"] == "Namespace"}
    accounts = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for _, d in objects
        if d["kind"] == "ServiceAccount"
    }
    policies = {d["metadata"]["name"] for _, d in objects if d["kind"] == "AccessPolicy"}
    requests = [AccessRequest.model_validate(d) for _, d in objects if d["kind"] == "AccessRequest"]
    assert {"ci", "payments-staging"} <= namespaces
    assert {("ci", "pipeline"), ("ci", "deployer")} <= accounts
    for request in requests:
        assert request.namespace in namespaces
        assert request.spec.policy in policies
        account = request.spec.grantee.service_account
        if account is not None:
            assert (account.namespace, account.name) in accounts
        if request.spec.delivery is not None:
            assert request.spec.delivery.namespace in namespaces


def test_staging_namespace_is_labelled_as_the_policies_expect() -> None:
    (staging,) = [
        d
        for _, d in all_objects()
        if d["kind"] == "Namespace" and d["metadata"]["name"] == "payments-staging"
    ]
    assert staging["metadata"]["labels"] == {
        "team": "payments",
        "zsp.dev/environment": "staging",
        "zsp.dev/enforce": "true",
    }


def run_check(request: str, *extra: str) -> int:
    policies = [example(n) for n in OWN_FILES if n.startswith("policy-")]
    return main(
        [
            "check",
            "--policy",
            *policies,
            "--request",
            example(request),
            "--namespace-labels",
            STAGING_LABELS,
            *extra,
        ]
    )


def test_ci_request_is_allowed_for_the_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check("request-ci-bind.yaml", "--as", PIPELINE) == 0
    out = capsys.readouterr().out
    assert out.startswith('ALLOWED by policy "ci-deployers"')
    assert "ttl:         10m" in out


@pytest.mark.parametrize(
    ("extra", "explanation"),
    [
        pytest.param(
            ["--as", "system:serviceaccount:ci:deployer"],
            'requester "system:serviceaccount:ci:deployer"',
            id="wrong-requester",
        ),
        pytest.param([], "the request has no authenticated requester", id="no-requester"),
    ],
)
def test_ci_request_denial_is_explained(
    extra: list[str], explanation: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_check("request-ci-bind.yaml", *extra) == 1
    out = capsys.readouterr().out
    assert out.startswith('DENIED (closest policy: "ci-deployers")')
    assert explanation in out


def test_ephemeral_request_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check("request-ephemeral.yaml", "--as", PIPELINE) == 0
    assert "kubeconfig to Secret ci/inspect-4712-kubeconfig" in capsys.readouterr().out


def test_ai_agent_request_waits_for_two_leads(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check("request-ai-agent.yaml", "--as", "system:serviceaccount:agents:sre-assistant") == 1
    out = capsys.readouterr().out
    assert out.startswith('PENDING under policy "ai-agent-readers": needs 2 approvals')
    assert "Group platform-leads" in out


def test_example_policies_hold_no_persistence_capable_rules(capsys: pytest.CaptureFixture[str]) -> None:
    for request in ("request-ci-bind.yaml", "request-ephemeral.yaml"):
        run_check(request, "--as", PIPELINE)
        assert "persistence: none found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("ttl", "code"), [pytest.param("30m", 0, id="within-cap"), pytest.param("2h", 1, id="above-cap")]
)
def test_break_glass_policy_serves_on_call_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ttl: str, code: int
) -> None:
    request = tmp_path / "incident.yaml"
    request.write_text(
        f"""\
apiVersion: zsp.dev/v1alpha1
kind: AccessRequest
metadata: {{name: incident-77, namespace: payments-staging}}
spec:
  policy: break-glass
  grantee: {{ephemeral: {{}}}}
  permission: incident-response
  ttl: {ttl}
  reason: "payments API down, incident 77"
  delivery: {{namespace: ci, secretName: incident-77-kubeconfig}}
""",
        encoding="utf-8",
    )
    args = ["--policy", example("policy-break-glass.yaml"), "--request", str(request)]
    flags = ["--namespace-labels", STAGING_LABELS, "--as", "alice", "--as-group", "platform-oncall"]
    assert main(["check", *args, *flags]) == code
    out = capsys.readouterr().out
    if code == 0:
        assert out.startswith('ALLOWED by break-glass policy "break-glass"')
    else:
        assert "exceeds maxTTL 1h" in out
