"""Every folder of examples/ played as its README tells it, on every tier.

The manifests are applied as committed, with one change: each story gives them names of its
own (namespaces, policies, the `team` label value), so stories never share state. Requests are
filed with the requester's own token; every claim about access is checked by asking the API
server with the grantee's own token (or the delivered kubeconfig).

Covered:
- ci-pipeline: `pipeline-step.sh` itself runs (kubectl and `zsp`, as the pipeline): the Job
  is created suspended, the request follows it, is Active for at most 15 minutes; the
  deployer may patch Deployments only then, never delete them; the Job's completion ends
  the grant (Completed) and the script's `zsp done` finds nothing left to end;
- ai-agent: the agent's request is granted at once, for 5 minutes; it may read pods but not
  Secrets, nor write, nor look into another team's namespace; a second request in the other
  payments namespace is denied by the one-active-grant limit; `done` ends it;
- ephemeral-kubeconfig: the pipeline reads the delivered kubeconfig with its own token; the
  fresh identity may act with it, but neither it nor anybody else may read the Secret; at
  the end the token stops authenticating and the Secret is gone;
- approvals: `zsp approve` by one lead grants nothing, by a second lead grants; both are
  recorded as the API server authenticated them;
- break-glass: an on-call member is granted at once with no approval; the request's status,
  its audit records and its Events (all Warning) say break-glass; the delivered identity
  works until `done`;
- argocd: the request filed as Argo CD's controller is granted, ends with its Job, and a
  re-apply of the completed request from Git grants nothing (one-shot).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from harness import (
    Operator,
    can,
    eventually,
    job_succeeded,
    running_operator,
    token_dies,
    token_for,
    wait_for_phase,
)
from tiers import Cluster
from zsp_operator import cli
from zsp_operator.core import constants as c
from zsp_operator.kube import Forbidden, Kube, KubeError
from zsp_operator.kube.identity import may_as
from zsp_operator.kube.resources import (
    ACCESS_POLICIES,
    ACCESS_REQUESTS,
    BY_KIND,
    EVENTS,
    JOBS,
    NAMESPACES,
    SECRETS,
    TASK_GRANTS,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Example:
    """One folder of examples/, renamed for one story; `ns("ci")` is the story's `ci`."""

    folder: str
    cluster: Cluster
    admin: Kube
    suffix: str
    names: dict[str, str] = field(default_factory=dict)

    def ns(self, name: str) -> str:
        return self.names[name]

    def user(self, namespace: str, account: str) -> str:
        return f"system:serviceaccount:{self.ns(namespace)}:{account}"

    def rename(self, docs: Any) -> Any:
        text = json.dumps(docs)
        for old, new in self.names.items():
            text = text.replace(f'"{old}"', f'"{new}"').replace(f":{old}:", f":{new}:")
        return json.loads(text)

    def load(self, name: str) -> list[dict[str, Any]]:
        path = EXAMPLES / self.folder / name
        return self.rename([d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d])

    def request(self, name: str = "request.yaml") -> dict[str, Any]:
        (body,) = self.load(name)
        return dict(body)

    async def apply(self, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            await self.admin.create(BY_KIND[doc["kind"]], doc)

    async def token(self, namespace: str, account: str) -> str:
        return await token_for(self.admin, self.ns(namespace), account)

    def kubeconfig_file(self, tmp_path: Path, who: str, token: str) -> Path:
        path = tmp_path / f"{who}.kubeconfig"
        path.write_text(yaml.safe_dump(self.cluster.kubeconfig(token)), encoding="utf-8")
        return path

    async def file_as(self, token: str, body: dict[str, Any]) -> None:
        async with await Kube.from_dict(self.cluster.kubeconfig(token)) as kube:
            await kube.create(ACCESS_REQUESTS, body)


@contextlib.asynccontextmanager
async def example(cluster: Cluster, folder: str, *extra_names: str) -> AsyncIterator[Example]:
    """The folder's setup and policy applied under the story's names; all removed afterwards."""
    suffix = uuid.uuid4().hex[:6]
    admin = await Kube.from_dict(cluster.kubeconfig())
    ex = Example(folder, cluster, admin, suffix)
    raw = [
        d
        for name in ("setup.yaml", "policy.yaml")
        if (EXAMPLES / folder / name).exists()
        for d in yaml.safe_load_all((EXAMPLES / folder / name).read_text(encoding="utf-8"))
        if d
    ]
    originals = [d["metadata"]["name"] for d in raw if d["kind"] in ("Namespace", "AccessPolicy")]
    ex.names = {name: f"{name}-{suffix}" for name in [*originals, *extra_names]}
    docs = ex.rename(raw)
    try:
        await ex.apply(docs)
        yield ex
    finally:
        for namespace in [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]:
            for request in await admin.list(ACCESS_REQUESTS, namespace):
                with contextlib.suppress(KubeError):
                    await admin.delete(ACCESS_REQUESTS, request["metadata"]["name"], namespace)
        for doc in docs:
            if doc["kind"] == "AccessPolicy":
                with contextlib.suppress(KubeError):
                    await admin.delete(ACCESS_POLICIES, doc["metadata"]["name"])
        for doc in docs:
            if doc["kind"] == "Namespace":
                with contextlib.suppress(KubeError):
                    await admin.delete(NAMESPACES, doc["metadata"]["name"])
        await admin.close()


def lasts(status: dict[str, Any], wanted: timedelta) -> bool:
    """The grant ends `wanted` after it was decided (issuedAt follows the decision closely)."""

    def when(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return abs(when(status["expiresAt"]) - when(status["issuedAt"]) - wanted) < timedelta(seconds=5)


async def zsp(kubeconfig: Path, *argv: str) -> int:
    """`zsp ARGV` as the identity of `kubeconfig` (the verbs run their own event loop)."""

    def run() -> int:
        try:
            return cli.main([*argv, "--kubeconfig", str(kubeconfig)])
        except SystemExit as exit_:
            return int(exit_.code or 0)

    return await asyncio.to_thread(run)


async def delivered(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    secret = await kube.get(SECRETS, name, namespace)
    assert secret is not None, f"Secret {namespace}/{name} not delivered"
    config: dict[str, Any] = yaml.safe_load(base64.b64decode(secret["data"][c.DELIVERY_KEY]))
    return config


async def may_read_secret(cluster: Cluster, token: str, namespace: str, name: str) -> bool:
    async with await Kube.from_dict(cluster.kubeconfig(token)) as kube:
        try:
            return await kube.get(SECRETS, name, namespace) is not None
        except Forbidden:
            return False


# --- ci-pipeline ------------------------------------------------------------------------------


async def test_ci_pipeline_step_deploys_within_its_job(cluster: Cluster, tmp_path: Path) -> None:
    async with example(cluster, "ci-pipeline", "payments") as ex, running_operator(cluster):
        ci, target, build = ex.ns("ci"), ex.ns("payments-staging"), "4711"  # namespaces are the story's own
        name = f"deploy-{build}"
        deployer = await ex.token("ci", "deployer")
        pipeline = ex.kubeconfig_file(tmp_path, "pipeline", await ex.token("ci", "pipeline"))
        assert await can(cluster, deployer, "patch", "deployments", target, "apps") is False
        step = asyncio.ensure_future(_pipeline_step(ex, pipeline, build))

        # The Job controller's part: the Job runs once the pipeline resumes it.
        async def resumed() -> bool:
            if step.done():
                step.result()  # raises, or says the step ended early
                raise AssertionError("the pipeline step ended before it resumed its Job")
            job = await ex.admin.get(JOBS, name, ci)
            return job is not None and not (job.get("spec") or {}).get("suspend")

        await eventually(resumed, within=60)
        active = await wait_for_phase(ex.admin, target, name, "Active")
        assert active["spec"]["taskRef"]["name"] == name
        assert lasts(active["status"], timedelta(minutes=15))
        assert await can(cluster, deployer, "patch", "deployments", target, "apps") is True
        assert await can(cluster, deployer, "delete", "deployments", target, "apps") is False
        await ex.admin.patch(JOBS, name, job_succeeded(), ci, status=True)

        await asyncio.wait_for(step, timeout=90)
        ended = await wait_for_phase(ex.admin, target, name, "Completed")
        assert name in ended["status"]["endReason"], ended["status"]["endReason"]
        await eventually(lambda: _refused(cluster, deployer, "patch", "deployments", target, "apps"))


async def _pipeline_step(ex: Example, kubeconfig: Path, build: str) -> None:
    """pipeline-step.sh as the pipeline. kubectl sends no bearer token over plain HTTP (the
    in-memory server's): there the script's own steps are taken with `zsp` and the client."""
    ci, target, name = ex.ns("ci"), ex.ns("payments-staging"), f"deploy-{build}"
    kubectl = shutil.which("kubectl")
    if kubectl is not None and ex.cluster.server.startswith("https:"):
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "BUILD": build,
            "TARGET_NAMESPACE": target,
            "CI_NAMESPACE": ci,
            "POLICY": ex.ns("ci-deployers"),
            "KUBECTL": kubectl,
            "ZSP": f"{sys.executable} -m zsp_operator",
            "JOB_TIMEOUT": "60s",
        }
        script = await asyncio.create_subprocess_exec(
            str(EXAMPLES / "ci-pipeline" / "pipeline-step.sh"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        stdout, _ = await script.communicate()
        assert script.returncode == 0, stdout.decode()
        assert f"deployed build {build}" in stdout.decode()
        return
    job = ex.load("job.yaml")[0]
    job["metadata"]["name"] = name
    token = await ex.token("ci", "pipeline")
    async with await Kube.from_dict(ex.cluster.kubeconfig(token)) as as_pipeline:
        await as_pipeline.create(JOBS, job)
        flags = [
            "--policy",
            ex.ns("ci-deployers"),
            "--grantee-sa",
            f"{ci}/deployer",
            "--permission",
            "deploy",
        ]
        flags += ["--ttl", "15m", "--reason", f"deploy build {build}", "--task", f"job/{name}.{ci}"]
        assert await zsp(kubeconfig, "request", name, "-n", target, *flags, "--wait=60s") == 0
        await as_pipeline.patch(JOBS, name, {"spec": {"suspend": False}}, ci)

        async def complete() -> bool:
            body = await as_pipeline.get(JOBS, name, ci) or {}
            conditions = (body.get("status") or {}).get("conditions") or []
            return any(x["type"] == "Complete" and x["status"] == "True" for x in conditions)

        await eventually(complete, within=60)
    assert await zsp(kubeconfig, "done", name, "-n", target) == 0


async def _refused(
    cluster: Cluster, token: str, verb: str, resource: str, namespace: str, group: str = ""
) -> bool:
    return await can(cluster, token, verb, resource, namespace, group) is False


# --- ai-agent ---------------------------------------------------------------------------------


async def test_ai_agent_reads_one_payments_namespace_for_five_minutes(cluster: Cluster) -> None:
    async with example(cluster, "ai-agent", "payments", "billing") as ex, running_operator(cluster):
        agent = await ex.token("agents", "sre-assistant")
        api, ledger, billing = ex.ns("payments-api"), ex.ns("payments-ledger"), ex.ns("billing")
        assert await can(cluster, agent, "list", "pods", api) is False

        await ex.file_as(agent, ex.request())
        active = await wait_for_phase(ex.admin, api, "investigate-latency", "Active")
        assert active["status"]["approvals"] == [], "auto-approved"
        assert lasts(active["status"], timedelta(minutes=5))
        assert await can(cluster, agent, "list", "pods", api) is True
        assert await can(cluster, agent, "watch", "deployments", api, "apps") is True
        for verb, resource, where in (
            ("get", "secrets", api),
            ("delete", "pods", api),
            ("list", "pods", billing),
        ):
            assert await can(cluster, agent, verb, resource, where) is False, (verb, resource, where)

        second = ex.request()
        second["metadata"].update(name="investigate-ledger", namespace=ledger)
        await ex.file_as(agent, second)
        denied = await wait_for_phase(ex.admin, ledger, "investigate-ledger", "Denied")
        assert "activePerGrantee" in denied["status"]["decision"]["reason"], denied["status"]["decision"]
        assert await can(cluster, agent, "list", "pods", ledger) is False

        await ex.admin.patch(ACCESS_REQUESTS, "investigate-latency", {"spec": {"done": True}}, api)
        await wait_for_phase(ex.admin, api, "investigate-latency", "Completed")
        await eventually(lambda: _refused(cluster, agent, "list", "pods", api))


# --- ephemeral-kubeconfig ---------------------------------------------------------------------


async def test_ephemeral_kubeconfig_is_delivered_to_the_requester_alone(cluster: Cluster) -> None:
    async with example(cluster, "ephemeral-kubeconfig", "payments") as ex, running_operator(cluster):
        ci, target = ex.ns("ci"), ex.ns("payments-staging")
        pipeline = await ex.token("ci", "pipeline")
        await ex.file_as(pipeline, ex.request())
        active = await wait_for_phase(ex.admin, target, "inspect-4712", "Active")
        secret = "inspect-4712-kubeconfig"

        async with await Kube.from_dict(cluster.kubeconfig(pipeline)) as as_pipeline:
            config = await delivered(as_pipeline, ci, secret)
        assert await may_as(config, "patch", "deployments", target, "apps") is True
        assert await may_as(config, "list", "pods", target) is True
        assert await may_as(config, "delete", "deployments", target, "apps") is False
        fresh = config["users"][0]["user"]["token"]
        identity = active["status"]["identity"]
        assert identity["name"] not in ("pipeline", "deployer"), "a fresh ServiceAccount"
        assert not await may_read_secret(cluster, fresh, ci, secret), "the grantee cannot read it"
        assert not await may_read_secret(cluster, cluster.user_token("dave"), ci, secret)

        await ex.admin.patch(ACCESS_REQUESTS, "inspect-4712", {"spec": {"done": True}}, target)
        await wait_for_phase(ex.admin, target, "inspect-4712", "Completed")
        await token_dies(cluster, fresh, "patch", "deployments", target, group="apps")
        await eventually(lambda: _secret_gone(ex.admin, ci, secret))


async def _secret_gone(admin: Kube, namespace: str, name: str) -> bool:
    return await admin.get(SECRETS, name, namespace) is None


# --- approvals --------------------------------------------------------------------------------


async def test_production_needs_two_leads_each_with_zsp_approve(cluster: Cluster, tmp_path: Path) -> None:
    async with example(cluster, "approvals", "payments") as ex, running_operator(cluster):
        target, name = ex.ns("payments-production"), "release-2024-11"
        deployer = await ex.token("ci", "deployer")
        await ex.file_as(await ex.token("ci", "release"), ex.request())
        await wait_for_phase(ex.admin, target, name, "Pending")

        alice = ex.kubeconfig_file(tmp_path, "alice", cluster.user_token("alice"))
        bob = ex.kubeconfig_file(tmp_path, "bob", cluster.user_token("bob"))
        assert await zsp(alice, "approve", name, "-n", target, "--comment", "CHG-311") == 0
        await eventually(lambda: _approvals(ex.admin, target, name, 1))
        assert (await wait_for_phase(ex.admin, target, name, "Pending"))["status"]["phase"] == "Pending"
        assert await can(cluster, deployer, "patch", "deployments", target, "apps") is False

        assert await zsp(bob, "approve", name, "-n", target, "--comment", "CHG-311") == 0
        active = await wait_for_phase(ex.admin, target, name, "Active")
        assert [a["username"] for a in active["status"]["approvals"]] == ["alice", "bob"]
        assert await can(cluster, deployer, "patch", "deployments", target, "apps") is True

        release = ex.kubeconfig_file(tmp_path, "release", await ex.token("ci", "release"))
        assert await zsp(release, "done", name, "-n", target) == 0
        await wait_for_phase(ex.admin, target, name, "Completed")
        await eventually(lambda: _refused(cluster, deployer, "patch", "deployments", target, "apps"))


async def _approvals(admin: Kube, namespace: str, name: str, count: int) -> bool:
    body = await admin.get(ACCESS_REQUESTS, name, namespace) or {}
    annotation = (body.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_APPROVALS, "[]")
    return len(json.loads(annotation)) == count


# --- break-glass ------------------------------------------------------------------------------


async def test_break_glass_grants_at_once_and_says_so_everywhere(cluster: Cluster) -> None:
    async with example(cluster, "break-glass", "payments") as ex, running_operator(cluster) as op:
        target, oncall, name = ex.ns("payments-production"), ex.ns("oncall"), "incident-77"
        erin = cluster.user_token("erin")
        await ex.file_as(erin, ex.request())
        active = await wait_for_phase(ex.admin, target, name, "Active")
        status = active["status"]
        assert status["breakGlass"] is True
        assert status["approvals"] == []
        assert status["requester"]["username"] == "erin"
        assert "platform-oncall" in status["requester"]["groups"]

        async with await Kube.from_dict(cluster.kubeconfig(erin)) as as_erin:
            config = await delivered(as_erin, oncall, "incident-77-kubeconfig")
        assert await may_as(config, "patch", "deployments", target, "apps") is True
        assert await may_as(config, "get", "secrets", target) is False

        events = await eventually(lambda: _events_with(ex.admin, target, name, c.EVENT_GRANT_ISSUED))
        assert {e["type"] for e in events} == {"Warning"}, "every break-glass Event is a Warning"
        await ex.admin.patch(ACCESS_REQUESTS, name, {"spec": {"done": True}}, target)
        await wait_for_phase(ex.admin, target, name, "Completed")
        await token_dies(cluster, config["users"][0]["user"]["token"], "patch", "deployments", target, "apps")
        await _audit_trail_says_break_glass(op, name, target)


async def _events_with(admin: Kube, namespace: str, name: str, reason: str) -> list[dict[str, Any]] | None:
    events = await admin.list(EVENTS, namespace, field_selector=f"involvedObject.name={name}")
    return events if any(e["reason"] == reason for e in events) else None


async def _audit_trail_says_break_glass(op: Operator, name: str, namespace: str) -> None:
    records = await eventually(
        lambda: (r := op.records_for(name, namespace)) and any(x["event"] == "revoked" for x in r) and r
    )
    events = [r["event"] for r in records]
    assert events[0] == "requested", events
    assert "issued" in events, events
    assert events[-1] == "revoked", events
    issued = next(r for r in records if r["event"] == "issued")
    assert issued["breakGlass"] is True
    assert issued["requester"]["username"] == "erin"
    assert all(r.get("breakGlass") for r in records if r["event"] in ("issued", "revoked")), records
    text = json.dumps(records)
    assert 'kubeconfig":' not in text, "no kubeconfig in the trail"
    assert 'token":' not in text, "no token in the trail"


# --- argocd -----------------------------------------------------------------------------------


async def test_argocd_request_is_one_shot_so_git_may_keep_it(cluster: Cluster) -> None:
    names = ("ci", "payments-staging", "argocd", "gitops-deployers")
    async with example(cluster, "argocd", *names) as ex, running_operator(cluster):
        ci, target = ex.ns("ci"), ex.ns("payments-staging")
        controller = "argocd-application-controller"
        setup = [
            *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ex.ns(n)}} for n in names[:3]),
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": controller, "namespace": ex.ns("argocd")},
            },
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer", "namespace": ci}},
            *_may_file(target, ex.ns("argocd"), controller),
        ]
        await ex.apply(setup)
        try:
            await ex.apply(ex.load("policy-gitops.yaml"))
            # The Sync hook (the Job) before the request here: a task that does not exist ends its grant.
            await ex.apply(ex.load("requests/job.yaml"))
            argocd = await ex.token("argocd", controller)
            request = ex.request("requests/accessrequest.yaml")
            await ex.file_as(argocd, request)
            await wait_for_phase(ex.admin, target, "payments-deploy", "Active")
            deployer = await ex.token("ci", "deployer")
            assert await can(cluster, deployer, "patch", "deployments", target, "apps") is True
            await ex.admin.patch(JOBS, "payments-deploy", job_succeeded(), ci, status=True)
            await wait_for_phase(ex.admin, target, "payments-deploy", "Completed")
            await eventually(lambda: _refused(cluster, deployer, "patch", "deployments", target, "apps"))

            # Self-heal re-applies the manifest from Git: the request is terminal, so nothing happens.
            async with await Kube.from_dict(cluster.kubeconfig(argocd)) as as_argocd:
                with contextlib.suppress(KubeError):  # whether or not the webhook refuses it
                    await as_argocd.patch(
                        ACCESS_REQUESTS,
                        "payments-deploy",
                        {
                            "metadata": {"labels": {"app.kubernetes.io/instance": "payments-deploy"}},
                            "spec": request["spec"],
                        },
                        target,
                    )
            await asyncio.sleep(1)
            again = await wait_for_phase(ex.admin, target, "payments-deploy", "Completed")
            assert again["status"]["phase"] == "Completed"
            assert await ex.admin.get(TASK_GRANTS, "payments-deploy", target) is None
            assert await can(cluster, deployer, "patch", "deployments", target, "apps") is False
        finally:
            with contextlib.suppress(KubeError):
                await ex.admin.delete(ACCESS_REQUESTS, "payments-deploy", target)
            with contextlib.suppress(KubeError):
                await ex.admin.delete(ACCESS_POLICIES, ex.ns("gitops-deployers"))
            for namespace in names[:3]:
                with contextlib.suppress(KubeError):
                    await ex.admin.delete(NAMESPACES, ex.ns(namespace))


def _may_file(namespace: str, sa_namespace: str, sa_name: str) -> list[dict[str, Any]]:
    meta = {"namespace": namespace, "name": "zsp-requester"}
    rules = [
        {
            "apiGroups": [c.GROUP],
            "resources": [c.PLURAL_REQUEST],
            "verbs": ["create", "get", "list", "watch", "patch"],
        }
    ]
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "zsp-requester"},
            "subjects": [{"kind": "ServiceAccount", "namespace": sa_namespace, "name": sa_name}],
        },
    ]
