"""`zsp check`, run through `zsp_operator.cli.main` with files in a temporary folder.

Covered: exit 0 allowed / 1 denied or pending / 2 bad input; the requester from --as/--as-group
or from status.requester; the catalog from --cluster-role files; persistence findings printed;
JSON output; and every kind of bad input (malformed YAML with line and column, unknown fields,
wrong types, bad durations, empty reason, missing or extra objects, bad flags) reported as a
message naming the file, the object and the field, never as a traceback.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from zsp_operator.cli import main

POLICY = """\
apiVersion: zsp.dev/v1alpha1
kind: AccessPolicy
metadata: {name: ci-deployers}
spec:
  requesters:
    - {kind: ServiceAccount, namespace: ci, name: pipeline}
  grantees:
    serviceAccounts: [{namespace: ci, name: deployer}]
  namespaces:
    names: [payments-staging]
  permissions:
    - name: deploy
      rules:
        - {apiGroups: [apps], resources: [deployments], verbs: [get, patch]}
    - name: read-only
      clusterRole: view
  maxTTL: 1h
"""

REQUEST = """\
apiVersion: zsp.dev/v1alpha1
kind: AccessRequest
metadata: {name: deploy-4711, namespace: payments-staging}
spec:
  grantee:
    serviceAccount: {namespace: ci, name: deployer}
  permission: deploy
  ttl: 10m
  reason: deploy build 4711
"""

VIEW = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: view}
rules:
  - {apiGroups: [""], resources: [pods, pods/log], verbs: [get, list, watch]}
"""

PIPELINE = "system:serviceaccount:ci:pipeline"


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def check(
    folder: Path, *extra: str, policy: str = POLICY, request: str = REQUEST, as_user: str | None = PIPELINE
) -> int:
    args = [
        "check",
        "--policy",
        write(folder, "policy.yaml", policy),
        "--request",
        write(folder, "request.yaml", request),
    ]
    if as_user is not None:
        args += ["--as", as_user]
    return main([*args, *extra])


# --- decisions ------------------------------------------------------------------------------


def test_allowed_exits_0_and_shows_the_grant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path) == 0
    out = capsys.readouterr().out
    assert out.startswith('ALLOWED by policy "ci-deployers"\n')
    assert "  ttl:         10m\n" in out
    assert "    - {verbs: [get, patch], apiGroups: [apps], resources: [deployments]}\n" in out
    assert "persistence: none found" in out
    assert (
        f"requester:   {PIPELINE} (groups: system:serviceaccounts, system:serviceaccounts:ci, system:authenticated)"
        in out
    )


def test_denied_exits_1_and_lists_every_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = REQUEST.replace("ttl: 10m", "ttl: 2h")
    assert check(tmp_path, request=request, as_user="system:serviceaccount:ci:intruder") == 1
    out = capsys.readouterr().out
    assert out.startswith('DENIED (closest policy: "ci-deployers")\n')
    assert '    - requester "system:serviceaccount:ci:intruder"' in out
    assert '    - spec.ttl 2h exceeds maxTTL 1h of policy "ci-deployers": ask for 1h or less\n' in out


def test_pending_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = POLICY + "  approval: {required: 2, approvers: [{kind: Group, name: leads}]}\n"
    assert check(tmp_path, policy=policy) == 1
    assert capsys.readouterr().out.startswith('PENDING under policy "ci-deployers": needs 2 approvals\n')


def test_requester_from_the_request_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = REQUEST + f"status:\n  requester: {{username: '{PIPELINE}'}}\n"
    assert check(tmp_path, request=request, as_user=None) == 0
    assert f"requester:   {PIPELINE}\n" in capsys.readouterr().out


def test_without_requester_the_denial_says_how_to_give_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, as_user=None) == 1
    out = capsys.readouterr().out
    assert "(none: pass --as, or set status.requester in the request file)" in out
    assert "the request has no authenticated requester" in out


def test_as_group_matches_group_requesters(tmp_path: Path) -> None:
    policy = POLICY.replace(
        "kind: ServiceAccount, namespace: ci, name: pipeline", "kind: Group, name: deployers"
    )
    assert check(tmp_path, "--as-group", "deployers", policy=policy, as_user="alice") == 0
    assert check(tmp_path, "--as-group", "others", policy=policy, as_user="alice") == 1


def test_cluster_role_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = REQUEST.replace("permission: deploy", "permission: read-only")
    assert check(tmp_path, request=request) == 1
    assert "not in the operator's catalog" in capsys.readouterr().out
    view = write(tmp_path, "view.yaml", VIEW)
    assert check(tmp_path, "--cluster-role", view, request=request) == 0
    out = capsys.readouterr().out
    assert "clusterRole: view\n" in out
    assert '    - {verbs: [get, list, watch], apiGroups: [""], resources: [pods, pods/log]}\n' in out


def test_persistence_is_printed_even_when_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = (
        POLICY.replace("verbs: [get, patch]", "verbs: [get, patch, create]")
        .replace("resources: [deployments]", "resources: [deployments, serviceaccounts/token]")
        .replace("apiGroups: [apps]", 'apiGroups: [apps, ""]')
        + "  allowPersistence: true\n"
    )
    assert check(tmp_path, policy=policy) == 0
    out = capsys.readouterr().out
    assert '  persistence (can outlive revocation):\n    ! rule 0 of permission "deploy"' in out
    assert "mint ServiceAccount tokens" in out


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path, "-o", "json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["outcome"] == "allowed"
    assert result["policy"] == "ci-deployers"
    assert result["ttl"] == "10m"
    assert result["rules"][0]["resources"] == ["deployments"]
    assert result["mismatches"] == []


def test_policy_files_may_hold_other_kinds_and_several_documents(tmp_path: Path) -> None:
    other = POLICY.replace("name: ci-deployers", "name: other").replace(
        "names: [payments-staging]", "names: [x]"
    )
    mixed = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ci}\n---\n" + POLICY + "---\n" + other
    assert check(tmp_path, policy=mixed) == 0


def test_namespace_from_the_flag(tmp_path: Path) -> None:
    request = REQUEST.replace(", namespace: payments-staging", "")
    assert check(tmp_path, "-n", "payments-staging", request=request) == 0


def test_namespace_labels_feed_the_selector(tmp_path: Path) -> None:
    policy = POLICY.replace("names: [payments-staging]", "selector: {matchLabels: {team: payments}}")
    assert check(tmp_path, policy=policy) == 1
    assert (
        check(tmp_path, "--namespace-labels", "team=payments,zsp.dev/environment=staging", policy=policy) == 0
    )


# --- bad input ------------------------------------------------------------------------------

BAD_POLICIES = [
    pytest.param("kind: [unclosed\n", "policy.yaml: line 2, column 1: malformed YAML", id="malformed-yaml"),
    pytest.param(
        POLICY.replace("requesters:", "requestors:"),
        "AccessPolicy ci-deployers: spec.requestors: unknown field",
        id="unknown-field",
    ),
    pytest.param(
        POLICY + "  approval: {required: two}\n",
        "AccessPolicy ci-deployers: spec.approval.required: Input should be a valid integer",
        id="wrong-type",
    ),
    pytest.param(
        POLICY.replace("maxTTL: 1h", "maxTTL: 1 hour"),
        "AccessPolicy ci-deployers: spec.maxTTL: '1 hour' is not a duration",
        id="bad-duration",
    ),
    pytest.param(
        POLICY.replace("maxTTL: 1h", "maxTTL: 5m"),
        "spec: defaultTTL (15m) is longer than maxTTL (5m)",
        id="inconsistent-ttls",
    ),
    pytest.param(
        POLICY.replace("zsp.dev/v1alpha1", "zsp.dev/v1"),
        "AccessPolicy ci-deployers: apiVersion: expected zsp.dev/v1alpha1, got zsp.dev/v1",
        id="api-version",
    ),
    pytest.param(
        POLICY.replace("metadata: {name: ci-deployers}", "metadata: {}"),
        "AccessPolicy (unnamed): metadata.name: this field is required",
        id="unnamed",
    ),
    pytest.param(
        POLICY + "---\n" + POLICY, "AccessPolicy ci-deployers: defined more than once", id="duplicate"
    ),
    pytest.param(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ci}\n", "no AccessPolicy found", id="no-policy"
    ),
    pytest.param(
        "- just\n- a list\n",
        "policy.yaml: document 1: expected a Kubernetes object (a mapping), got list",
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("policy", "message"), BAD_POLICIES)
def test_bad_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str, message: str
) -> None:
    assert check(tmp_path, policy=policy) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


BAD_REQUESTS = [
    pytest.param(
        REQUEST.replace("reason: deploy build 4711", 'reason: "  "'),
        "AccessRequest deploy-4711: spec.reason: reason must say why",
        id="blank-reason",
    ),
    pytest.param(
        REQUEST.replace("reason: deploy build 4711", 'reason: ""'),
        "AccessRequest deploy-4711: spec.reason: reason must say why",
        id="empty-reason",
    ),
    pytest.param(
        REQUEST.replace("  reason: deploy build 4711\n", ""),
        "spec.reason: this field is required",
        id="no-reason",
    ),
    pytest.param(
        REQUEST.replace("ttl: 10m", "ttl: soon"),
        "AccessRequest deploy-4711: spec.ttl: 'soon' is not a duration",
        id="bad-ttl",
    ),
    pytest.param(
        REQUEST.replace("permission: deploy", "permision: deploy"), "spec.permision: unknown field", id="typo"
    ),
    pytest.param(
        REQUEST.replace(", namespace: payments-staging", ""),
        "metadata.namespace: an AccessRequest lives in the namespace",
        id="no-namespace",
    ),
    pytest.param(
        POLICY, "request.yaml: holds no AccessRequest: give exactly one to --request", id="no-request"
    ),
    pytest.param(
        REQUEST + "---\n" + REQUEST.replace("deploy-4711", "deploy-4712"),
        "holds 2 AccessRequests (deploy-4711, deploy-4712)",
        id="two-requests",
    ),
    pytest.param("spec: {ttl: [1, 2}\n", "request.yaml: line 1, column ", id="malformed-yaml"),
]


@pytest.mark.parametrize(("request_text", "message"), BAD_REQUESTS)
def test_bad_request_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], request_text: str, message: str
) -> None:
    assert check(tmp_path, request=request_text) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err


BAD_FLAGS = [
    pytest.param(["--namespace-labels", "team"], "--namespace-labels: 'team' is not KEY=VALUE", id="labels"),
    pytest.param(["--now", "yesterday"], "--now: 'yesterday' is not an RFC 3339 time", id="now"),
    pytest.param(
        ["--break-glass-max-ttl", "forever"], "--break-glass-max-ttl: 'forever' is not a duration", id="cap"
    ),
    pytest.param(
        ["--cluster-role", "/nonexistent/view.yaml"],
        "/nonexistent/view.yaml: cannot read: No such file",
        id="missing-file",
    ),
    pytest.param(
        ["-n", "elsewhere"],
        "metadata.namespace is 'payments-staging' but --namespace is 'elsewhere'",
        id="namespace-conflict",
    ),
]


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS)
def test_bad_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert check(tmp_path, *flags) == 2
    assert message in capsys.readouterr().err


def test_as_group_needs_as(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path, "--as-group", "deployers", as_user=None) == 2
    assert "--as-group needs --as" in capsys.readouterr().err


def test_bad_cluster_role(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    role = write(tmp_path, "view.yaml", VIEW.replace("verbs: [get, list, watch]", "verbs: []"))
    assert check(tmp_path, "--cluster-role", role) == 2
    assert "view.yaml: ClusterRole view: rules[0].verbs: needs at least one item" in capsys.readouterr().err


def test_all_problems_are_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = POLICY.replace("maxTTL: 1h", "maxTTL: 1 hour")
    request = REQUEST.replace("ttl: 10m", "ttl: soon")
    assert check(tmp_path, "--now", "x", policy=policy, request=request) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 3
    assert all(line.startswith("zsp check: ") for line in err.splitlines())


def test_missing_required_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--request", "r.yaml"])
    assert exit_info.value.code == 2
    assert "--policy" in capsys.readouterr().err


CONDITIONS = """\
  conditions:
    - name: working-hours
      expression: now.getHours() >= 9 && now.getHours() < 17
      message: only between 09:00 and 17:00 UTC, outside them use the break-glass policy
    - name: company-registry
      expression: task == null || task.spec.template.spec.containers.all(c, c.image.startsWith("registry.example.com/"))
      message: the Job must run images from registry.example.com
"""

JOB = """\
apiVersion: batch/v1
kind: Job
metadata: {name: deploy-4711, namespace: payments-staging}
spec:
  template:
    spec:
      containers: [{name: deploy, image: docker.io/library/busybox}]
"""


@pytest.mark.parametrize(
    ("now", "task", "code", "unmet"),
    [
        ("2026-03-02T10:00:00Z", False, 0, None),
        ("2026-03-02T18:30:00Z", False, 1, "working-hours"),
        ("2026-03-02T10:00:00Z", True, 1, "company-registry"),
    ],
)
def test_conditions_are_evaluated_offline_at_the_given_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], now: str, task: bool, code: int, unmet: str | None
) -> None:
    extra = ["--now", now, "-o", "json"]
    if task:
        extra += ["--task", write(tmp_path, "job.yaml", JOB)]
    assert check(tmp_path, *extra, policy=POLICY + CONDITIONS) == code
    result = json.loads(capsys.readouterr().out)
    if unmet is None:
        assert result["unmetCondition"] is None
        return
    assert result["unmetCondition"]["name"] == unmet
    assert f'condition "{unmet}"' in result["reason"]
    assert result["unmetCondition"]["message"] in result["reason"]


def test_a_condition_that_does_not_compile_is_bad_input_with_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = POLICY + "  conditions:\n    - {name: hours, expression: 'now + 1'}\n"
    assert check(tmp_path, policy=broken) == 2
    err = capsys.readouterr().err
    assert "spec.conditions[0]" in err
    assert "condition 'hours': expression at line 1, column 5" in err
    assert "Traceback" not in err
