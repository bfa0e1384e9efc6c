"""The manifests in examples/ are valid and tell the story they claim, offline.

examples/ holds one folder per situation (tests/stories/test_examples_play.py plays each on
both tiers). Covered here: every situation has its README, setup, policy and request; every
document of every examples/**/*.yaml parses with the models (zsp.dev kinds) or has the shape
kubectl needs (other kinds); within a situation, what the request names (namespace, policy,
grantee, delivery, task) is in its own manifests, so `kubectl apply -f examples/<situation>/`
works alone; `zsp check` decides each request as its README says (the CI request as the
pipeline, with the denial explained otherwise; the agent's at once, for 5 minutes; production
pending two leads; break-glass at once, capped); no example grants a persistence-capable rule;
the pipeline step script is valid bash; the package ships the examples and the operator's RBAC
that `zsp demo` reads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from zsp_operator.cli import main
from zsp_operator.core.constants import API_VERSION
from zsp_operator.core.errors import parse
from zsp_operator.core.models import AccessPolicy, AccessRequest, TaskGrant
from zsp_operator.tools.bundled import bundled, operator_rbac

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MODELS: dict[str, type[AccessPolicy | AccessRequest | TaskGrant]] = {
    "AccessPolicy": AccessPolicy,
    "AccessRequest": AccessRequest,
    "TaskGrant": TaskGrant,
}
PLAYED = ["ci-pipeline", "ai-agent", "ephemeral-kubeconfig", "approvals", "break-glass"]
# Conditions read the clock: their story is played with an injected one in
# tests/stories/test_policy_conditions.py; here they are decided offline at given times.
SITUATIONS = [*PLAYED, "argocd", "conditions"]


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def situation(name: str) -> list[dict[str, Any]]:
    return [doc for path in sorted((EXAMPLES / name).rglob("*.yaml")) for doc in documents(path)]


def labels_of(name: str, namespace: str) -> str:
    (found,) = [d for d in situation(name) if d["kind"] == "Namespace" and d["metadata"]["name"] == namespace]
    return ",".join(f"{k}={v}" for k, v in (found["metadata"].get("labels") or {}).items())


def check(name: str, *flags: str, request: Path | None = None) -> int:
    folder = EXAMPLES / name
    request = request or folder / "request.yaml"
    target = yaml.safe_load(request.read_text(encoding="utf-8"))["metadata"]["namespace"]
    labels = labels_of(name, target)
    argv = ["check", "--policy", str(folder / "policy.yaml"), "--request", str(request)]
    return main([*argv, *(["--namespace-labels", labels] if labels else []), *flags])


def test_examples_are_one_folder_per_situation() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == sorted(SITUATIONS)
    assert [p.name for p in EXAMPLES.iterdir() if p.is_file()] == ["README.md"]


@pytest.mark.parametrize("name", SITUATIONS)
def test_every_situation_has_a_readme_that_says_how_to_run_it(name: str) -> None:
    readme = (EXAMPLES / name / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# "), "a title first"
    assert "```" in readme, "the commands to run"
    assert name in (EXAMPLES / "README.md").read_text(encoding="utf-8"), "listed in examples/README.md"


@pytest.mark.parametrize("name", PLAYED)
def test_every_played_situation_has_setup_policy_and_request(name: str) -> None:
    kinds = {p.name: [d["kind"] for d in documents(p)] for p in (EXAMPLES / name).glob("*.yaml")}
    assert kinds["policy.yaml"] == ["AccessPolicy"]
    assert kinds["request.yaml"] == ["AccessRequest"]
    assert "Namespace" in kinds["setup.yaml"]


# Argo CD's health-check fixtures are not manifests: tests/test_argocd_health.py reads them.
MANIFESTS = [p for p in sorted(EXAMPLES.rglob("*.yaml")) if "health" not in p.relative_to(EXAMPLES).parts]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_document_parses(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path.name} holds no objects"
    for doc in docs:
        assert doc.get("apiVersion"), f"{path}: apiVersion is required"
        assert doc.get("kind"), f"{path}: kind is required"
        assert doc.get("metadata", {}).get("name") or doc["kind"] == "Kustomization", f"{path}: no name"
        model = MODELS.get(doc["kind"])
        if model is not None:
            assert doc["apiVersion"] == API_VERSION
            parse(model, doc, f"{path}: {doc['kind']} {doc['metadata']['name']}")


@pytest.mark.parametrize("name", PLAYED)
def test_a_situation_applies_alone(name: str) -> None:
    objects = situation(name)
    namespaces = {d["metadata"]["name"] for d in objects if d["kind"] == "Namespace"}
    accounts = {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in objects if d["kind"] == "ServiceAccount"
    }
    policies = {
        d["metadata"]["name"]: AccessPolicy.model_validate(d) for d in objects if d["kind"] == "AccessPolicy"
    }
    for doc in objects:
        if doc["metadata"].get("namespace"):
            assert doc["metadata"]["namespace"] in namespaces, f"{doc['kind']} {doc['metadata']['name']}"
    for request in (AccessRequest.model_validate(d) for d in objects if d["kind"] == "AccessRequest"):
        assert request.spec.policy in policies
        account = request.spec.grantee.service_account
        if account is not None:
            assert (account.namespace, account.name) in accounts
        if request.spec.delivery is not None:
            assert request.spec.delivery.namespace in namespaces
        task = request.spec.task_ref
        if task is not None:
            assert any(d["kind"] == task.kind and d["metadata"]["name"] == task.name for d in objects)


@pytest.mark.parametrize(
    ("name", "flags", "opening", "detail"),
    [
        pytest.param(
            "ci-pipeline",
            ["--as", "system:serviceaccount:ci:pipeline"],
            'ALLOWED by policy "ci-deployers"',
            "ttl:         15m",
            id="ci-pipeline",
        ),
        pytest.param(
            "ai-agent",
            ["--as", "system:serviceaccount:agents:sre-assistant"],
            'ALLOWED by policy "ai-agent-diagnostics"',
            "ttl:         5m",
            id="ai-agent",
        ),
        pytest.param(
            "ephemeral-kubeconfig",
            ["--as", "system:serviceaccount:ci:pipeline"],
            'ALLOWED by policy "ci-inspectors"',
            "kubeconfig to Secret ci/inspect-4712-kubeconfig",
            id="ephemeral-kubeconfig",
        ),
        pytest.param(
            "approvals",
            ["--as", "system:serviceaccount:ci:release"],
            'PENDING under policy "production-deployers": needs 2 approvals',
            "Group platform-leads",
            id="approvals",
        ),
        pytest.param(
            "break-glass",
            ["--as", "erin", "--as-group", "platform-oncall"],
            'ALLOWED by break-glass policy "break-glass"',
            "persistence: none found",
            id="break-glass",
        ),
    ],
)
def test_zsp_check_decides_each_request_as_its_readme_says(
    name: str, flags: list[str], opening: str, detail: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = check(name, *flags)
    out = capsys.readouterr().out
    assert out.startswith(opening), out
    assert detail in out
    assert code == (0 if opening.startswith("ALLOWED") else 1)


@pytest.mark.parametrize(
    ("flags", "explanation"),
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
    flags: list[str], explanation: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check("ci-pipeline", *flags) == 1
    out = capsys.readouterr().out
    assert out.startswith('DENIED (closest policy: "ci-deployers")')
    assert explanation in out


@pytest.mark.parametrize("name", ["ci-pipeline", "ai-agent", "ephemeral-kubeconfig"])
def test_example_policies_hold_no_persistence_capable_rules(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    who = {"ai-agent": "system:serviceaccount:agents:sre-assistant"}.get(
        name, "system:serviceaccount:ci:pipeline"
    )
    check(name, "--as", who)
    assert "persistence: none found" in capsys.readouterr().out


def test_break_glass_is_capped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = yaml.safe_load((EXAMPLES / "break-glass" / "request.yaml").read_text(encoding="utf-8"))
    request["spec"]["ttl"] = "2h"
    path = tmp_path / "incident.yaml"
    path.write_text(yaml.safe_dump(request), encoding="utf-8")
    assert check("break-glass", "--as", "erin", "--as-group", "platform-oncall", request=path) == 1
    assert "exceeds maxTTL 1h" in capsys.readouterr().out


def test_the_pipeline_step_is_valid_bash() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script = EXAMPLES / "ci-pipeline" / "pipeline-step.sh"
    subprocess.run([bash, "-n", str(script)], check=True)
    assert script.stat().st_mode & 0o111, "executable"


def test_the_package_carries_what_the_demo_reads() -> None:
    """importlib.resources sees the same files as the source tree (a wheel holds copies)."""
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_file():
            shipped = bundled("examples", *path.relative_to(EXAMPLES).parts)
            assert shipped.read_bytes() == path.read_bytes(), path
    assert operator_rbac().read_text(encoding="utf-8") == (REPO / "deploy" / "operator-rbac.yaml").read_text(
        encoding="utf-8"
    )


@pytest.mark.parametrize(
    ("now", "task", "unmet"),
    [
        pytest.param("2027-01-05T10:00:00Z", "job.yaml", None, id="tuesday-morning"),
        pytest.param("2027-01-05T19:30:00Z", "job.yaml", "working-hours", id="tuesday-evening"),
        pytest.param("2027-01-09T10:00:00Z", "job.yaml", "working-hours", id="saturday"),
        pytest.param("2027-01-05T10:00:00Z", None, "company-registry", id="no-job"),
    ],
)
def test_the_conditions_example_decides_by_context(
    now: str, task: str | None, unmet: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--as", "system:serviceaccount:ci:pipeline", "--now", now, "-o", "json"]
    if task is not None:
        flags += ["--task", str(EXAMPLES / "conditions" / task)]
    code = check("conditions", *flags)
    result = json.loads(capsys.readouterr().out)
    assert code == (0 if unmet is None else 1), result["reason"]
    assert (result["unmetCondition"] or {}).get("name") == unmet
