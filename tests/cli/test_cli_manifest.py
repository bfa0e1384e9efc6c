"""`zsp request` flags to an AccessRequest manifest: grantee, permission or rules, TTL, task
references, delivery, names; every problem reported at once naming its flag; `--wait` and
`--dry-run` values that swallowed the NAME."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from zsp_operator.cli.manifest import (
    DEFAULT_WAIT,
    BadFlags,
    RequestFlags,
    build_request,
    parse_rule,
    parse_task,
    parse_task_ref,
    resolve_dry_run,
    resolve_wait,
)
from zsp_operator.core.models import AccessRequest


def flags(**overrides: Any) -> RequestFlags:
    base: dict[str, Any] = {
        "reason": "deploy build 4711",
        "name": "deploy-4711",
        "grantee_sa": "ci/deployer",
        "permission": "deploy",
    }
    base.update(overrides)
    return RequestFlags(**base)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (
            "verbs=get,list;groups=apps;resources=deployments",
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
        ),
        ("verbs=get;resources=pods", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
        ("verbs=get;groups=;resources=pods", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
        (
            " verbs = get , patch ; groups = apps,batch ; resources = deployments,jobs ; names = web ",
            {
                "apiGroups": ["apps", "batch"],
                "resources": ["deployments", "jobs"],
                "resourceNames": ["web"],
                "verbs": ["get", "patch"],
            },
        ),
        ("verbs=get;urls=/healthz", {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}),
        (
            "verbs=get;apiGroups=apps;resources=deployments;resourceNames=web",
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["get"]},
        ),
    ],
)
def test_rules_from_flags(text: str, rule: dict[str, list[str]]) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("verbs=get", "names no resources"),
        ("groups=apps;resources=deployments", "names no verbs"),
        ("verbs=get;resources=pods;colour=blue", "'colour=blue' is not KEY=VALUES"),
        ("get pods", "is not KEY=VALUES"),
    ],
)
def test_bad_rules_name_the_flag_and_the_form(text: str, message: str) -> None:
    with pytest.raises(BadFlags) as caught:
        parse_rule(text)
    assert all(m.startswith("--rule: ") for m in caught.value.messages)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        (
            "job/deploy-4711.ci",
            {"apiVersion": "batch/v1", "kind": "Job", "name": "deploy-4711", "namespace": "ci"},
        ),
        ("job/deploy-4711", {"apiVersion": "batch/v1", "kind": "Job", "name": "deploy-4711"}),
        ("Jobs/a.b.ci", {"apiVersion": "batch/v1", "kind": "Job", "name": "a.b", "namespace": "ci"}),
        (
            "pod/runner-7.agents",
            {"apiVersion": "v1", "kind": "Pod", "name": "runner-7", "namespace": "agents"},
        ),
    ],
)
def test_task_from_kind_name_namespace(text: str, ref: dict[str, str]) -> None:
    assert parse_task(text) == ref


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deploy-4711", "is not KIND/NAME[.NAMESPACE]"),
        ("job/", "is not KIND/NAME[.NAMESPACE]"),
        ("job/.ci", "has no name"),
        ("workflow/build", "name other kinds with --task-ref"),
    ],
)
def test_bad_tasks_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(BadFlags, match="--task: ") as caught:
        parse_task(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        (
            "argoproj.io/v1alpha1,Workflow,ci,build-1",
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "build-1", "namespace": "ci"},
        ),
        ("batch/v1,Job,,deploy", {"apiVersion": "batch/v1", "kind": "Job", "name": "deploy"}),
    ],
)
def test_task_ref_from_four_fields(text: str, ref: dict[str, str]) -> None:
    assert parse_task_ref(text) == ref


@pytest.mark.parametrize("text", ["batch/v1,Job,deploy", "batch/v1,,ci,deploy", "batch/v1,Job,ci,", ""])
def test_task_ref_needs_all_four_fields(text: str) -> None:
    with pytest.raises(BadFlags, match=r"--task-ref: .* is not API_VERSION,KIND,NAMESPACE,NAME"):
        parse_task_ref(text)


def test_bind_request_manifest_is_what_the_api_expects() -> None:
    manifest = build_request(
        flags(ttl="10m", policy="ci-deployers", task="job/deploy-4711.ci"), "payments-staging"
    )
    assert manifest == {
        "apiVersion": "zsp.dev/v1alpha1",
        "kind": "AccessRequest",
        "metadata": {"namespace": "payments-staging", "name": "deploy-4711"},
        "spec": {
            "policy": "ci-deployers",
            "grantee": {"serviceAccount": {"namespace": "ci", "name": "deployer"}},
            "permission": "deploy",
            "ttl": "10m",
            "reason": "deploy build 4711",
            "taskRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "deploy-4711", "namespace": "ci"},
        },
    }
    assert AccessRequest.model_validate(manifest).spec.ttl == timedelta(minutes=10)


def test_ephemeral_request_with_rules_delivery_and_generated_name() -> None:
    manifest = build_request(
        flags(
            name=None,
            generate_name="",
            grantee_sa=None,
            ephemeral=True,
            permission=None,
            rules=("verbs=get;groups=apps;resources=deployments", "verbs=list;resources=pods"),
            delivery="ci/agent-kubeconfig",
            task_ref="batch/v1,Job,,triage",
        ),
        "payments",
    )
    assert manifest["metadata"] == {"namespace": "payments", "generateName": "access-"}
    spec = manifest["spec"]
    assert spec["grantee"] == {"ephemeral": {}}
    assert [rule["resources"] for rule in spec["rules"]] == [["deployments"], ["pods"]]
    assert spec["delivery"] == {"namespace": "ci", "secretName": "agent-kubeconfig"}
    assert spec["taskRef"] == {"apiVersion": "batch/v1", "kind": "Job", "name": "triage"}


@pytest.mark.parametrize(
    ("prefix", "permission", "generated"),
    [("", "deploy", "deploy-"), ("hotfix-", "deploy", "hotfix-")],
)
def test_generated_names_take_a_prefix(prefix: str, permission: str, generated: str) -> None:
    manifest = build_request(flags(name=None, generate_name=prefix, permission=permission), "ns")
    assert manifest["metadata"]["generateName"] == generated


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": None}, "name the request: give NAME, or --generate-name"),
        ({"generate_name": "x-"}, "give either NAME or --generate-name, not both"),
        ({"ephemeral": True}, "give exactly one of --grantee-sa NS/NAME or --ephemeral"),
        ({"grantee_sa": None}, "give exactly one of --grantee-sa NS/NAME or --ephemeral"),
        ({"grantee_sa": "deployer"}, "--grantee-sa: 'deployer' is not NAMESPACE/NAME"),
        ({"grantee_sa": "ci/a/b"}, "--grantee-sa: 'ci/a/b' is not NAMESPACE/NAME"),
        ({"permission": None}, "give exactly one of --permission NAME or --rule"),
        ({"rules": ("verbs=get;resources=pods",)}, "give exactly one of --permission NAME or --rule"),
        ({"ttl": "ten minutes"}, "--ttl: 'ten minutes' is not a duration"),
        ({"ttl": "0s"}, "--ttl: must be longer than 0s"),
        ({"reason": "   "}, "--reason: say why the access is needed"),
        ({"task": "job/a", "task_ref": "batch/v1,Job,,a"}, "give either --task or --task-ref, not both"),
        ({"delivery": "ci/kubeconfig"}, "--delivery is only for --ephemeral"),
    ],
)
def test_each_flag_problem_names_its_flag(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(BadFlags) as caught:
        build_request(flags(**overrides), "ns")
    assert any(message in m for m in caught.value.messages), caught.value.messages


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(BadFlags) as caught:
        build_request(flags(name=None, grantee_sa="deployer", ttl="soon", reason=""), "ns")
    assert len(caught.value.messages) == 4, caught.value.messages


@pytest.mark.parametrize(
    ("wait", "name", "result"),
    [
        (None, "deploy-1", (None, "deploy-1")),
        ("", "deploy-1", (DEFAULT_WAIT, "deploy-1")),
        ("90s", "deploy-1", (timedelta(seconds=90), "deploy-1")),
        ("0s", "deploy-1", (timedelta(0), "deploy-1")),
        ("deploy-1", None, (DEFAULT_WAIT, "deploy-1")),  # `--wait deploy-1`: argparse took the NAME
    ],
)
def test_wait_value(wait: str | None, name: str | None, result: tuple[timedelta | None, str | None]) -> None:
    assert resolve_wait(wait, name) == result


def test_a_wait_value_that_is_no_duration_is_refused_when_the_name_is_given() -> None:
    with pytest.raises(BadFlags, match="--wait: 'soon' is not a duration"):
        resolve_wait("soon", "deploy-1")


@pytest.mark.parametrize(
    ("value", "name", "result"),
    [
        (None, "a", (None, "a")),
        ("client", "a", ("client", "a")),
        ("server", "a", ("server", "a")),
        ("a", None, ("client", "a")),  # `--dry-run a`: argparse took the NAME
    ],
)
def test_dry_run_value(value: str | None, name: str | None, result: tuple[str | None, str | None]) -> None:
    assert resolve_dry_run(value, name) == result


def test_dry_run_accepts_only_client_or_server() -> None:
    with pytest.raises(BadFlags, match="--dry-run: 'all' is neither client nor server"):
        resolve_dry_run("all", "a")
