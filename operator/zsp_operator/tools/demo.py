"""`zsp demo`: the whole story on the built-in in-memory API server (or a real cluster).

It applies the ci-pipeline and ephemeral-kubeconfig examples (examples/, shipped inside the
package and read through importlib.resources), runs the operator in-process as its own least-privilege identity,
and prints a timeline: request, decision, issuance, the grant working (asked of the API
server with the grantee's own token), the end (task done, TTL), the identity refused,
and nothing left behind. It exits 0 only if every step behaved.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TextIO

import yaml

from zsp_operator.core import constants as c
from zsp_operator.core.manifests import MANAGED_SELECTOR
from zsp_operator.engine.controller import Controller
from zsp_operator.kube import AlreadyExists, Kube, KubeError
from zsp_operator.kube.identity import may_as, request_token, wait_for_webhooks
from zsp_operator.kube.resources import (
    ACCESS_POLICIES,
    ACCESS_REQUESTS,
    BY_KIND,
    PODS,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    TASK_GRANTS,
    Resource,
)
from zsp_operator.process.runner import run_operator
from zsp_operator.settings import Settings
from zsp_operator.tools.bundled import documents, example, operator_rbac
from zsp_operator.tools.crdgen import build_crds
from zsp_operator.tools.demo_evidence import (
    Evidence,
    advice_text,
    evidence_files,
    recorded,
    unused_text,
    used_text,
)

TARGET, CI = "payments-staging", "ci"
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
BIND_POLICY, EPHEMERAL_POLICY = "ci-deployers", "ci-inspectors"


class StepFailed(Exception):
    pass


@dataclass
class Timeline:
    """Prints each step with the seconds since the start; remembers whether all behaved."""

    out: TextIO
    started: float = field(default_factory=time.monotonic)
    steps: int = 0

    def say(self, tag: str, text: str) -> None:
        self.steps += 1
        print(f"[{time.monotonic() - self.started:6.2f}s] {tag:<9} {text}", file=self.out, flush=True)

    def check(self, ok: bool, tag: str, text: str) -> None:
        if not ok:
            print(
                f"[{time.monotonic() - self.started:6.2f}s] FAILED    {tag}: {text}",
                file=self.out,
                flush=True,
            )
            raise StepFailed(f"{tag}: {text}")
        self.say(tag, text)


async def _apply(kube: Kube, docs: list[dict[str, Any]]) -> None:
    """Create each object; one that exists already is left as it is."""
    for doc in docs:
        res = BY_KIND[doc["kind"]]
        with contextlib.suppress(AlreadyExists):
            await kube.create(res, doc)


async def _phase(kube: Kube, name: str, *phases: str, within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        body = await kube.get(ACCESS_REQUESTS, name, TARGET) or {}
        if (body.get("status") or {}).get("phase") in phases:
            return body
        if time.monotonic() > deadline:
            raise StepFailed(f"{name} never reached {'/'.join(phases)}; status: {body.get('status')}")
        await asyncio.sleep(0.05)


async def _until(check: Callable[[], Any], within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def _leftovers(kube: Kube) -> list[str]:
    found = []
    for res in (ROLE_BINDINGS, ROLES, SERVICE_ACCOUNTS, SECRETS, TASK_GRANTS):
        for namespace in (TARGET, CI):
            for obj in await kube.list(res, namespace, label_selector=MANAGED_SELECTOR):
                found.append(f"{res.kind} {namespace}/{obj['metadata']['name']}")
    return found


def _request(file: Traversable, **spec: Any) -> dict[str, Any]:
    """The example's request with `spec` changed; a None value removes that field."""
    body = documents(file)[0]
    body["spec"].update(spec)
    body["spec"] = {key: value for key, value in body["spec"].items() if value is not None}
    return body


@contextlib.asynccontextmanager
async def _operator(
    admin: Kube, kubeconfig: Callable[[str], dict[str, Any]], audit: TextIO, evidence: Evidence | None
) -> AsyncIterator[None]:
    """The operator in this process, as ServiceAccount zsp-system/zsp-operator."""
    await _apply(admin, documents(operator_rbac()))
    token = await request_token(admin, "zsp-system", "zsp-operator", seconds=3600)
    kube = await Kube.from_dict(kubeconfig(token))
    settings = Settings(
        dev=True,
        webhook_port=0,
        metrics_port=0,
        health_port=0,
        **(evidence.operator_settings() if evidence is not None else {}),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_operator(
            settings, controller=Controller.build(kube, settings, audit_stream=audit), stop_flag=stop
        )
    )
    try:
        await wait_for_webhooks(admin)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await kube.close()


async def play(
    admin: Kube,
    kubeconfig: Callable[[str | None], dict[str, Any]],
    out: TextIO,
    evidence: Evidence | None = None,
) -> None:
    """The story. Raises StepFailed at the first step that does not behave.

    With `evidence` (the in-memory API server sends its audit events to the operator), the
    ephemeral grant's use is recorded and shown, and what `zsp advise` would cut.
    """
    line = Timeline(out)
    for situation in ("ci-pipeline", "ephemeral-kubeconfig"):
        await _apply(admin, documents(example(situation, "setup.yaml")))
        await _apply(admin, documents(example(situation, "policy.yaml")))
    line.say("setup", "namespaces ci and payments-staging, ServiceAccounts ci/pipeline and ci/deployer")
    line.say(
        "setup", "AccessPolicy ci-deployers: the pipeline may ask for `deploy` in payments-staging, max 15m"
    )
    line.say("setup", "AccessPolicy ci-inspectors: or for a fresh identity, its kubeconfig delivered to ci")
    audit = io.StringIO()
    async with _operator(admin, kubeconfig, audit, evidence):
        line.say(
            "operator", "running as zsp-system/zsp-operator (least privilege); admission webhooks answer"
        )

        deployer = kubeconfig(await request_token(admin, CI, "deployer"))
        pipeline = await Kube.from_dict(kubeconfig(await request_token(admin, CI, "pipeline")))
        allowed = await may_as(deployer, "patch", "deployments", TARGET, "apps")
        line.check(
            allowed is False,
            "before",
            "ci/deployer may patch deployments in payments-staging? no: nothing standing",
        )

        # --- bind mode: an existing identity gets privilege for one task -------------------
        # The example follows its deploy Job (taskRef); here the pipeline ends it with `done`.
        async with pipeline:
            await pipeline.create(
                ACCESS_REQUESTS, _request(example("ci-pipeline", "request.yaml"), taskRef=None)
            )
        line.say(
            "request", 'deploy-4711 filed by the pipeline\'s own token: "deploy build 4711 (pipeline run 88)"'
        )
        active = await _phase(admin, "deploy-4711", "Active", "Denied", "Failed")
        status = active["status"]
        line.check(status["phase"] == "Active", "decision", status["decision"]["reason"])
        line.say(
            "requester", f"recorded by the webhook from the API server: {status['requester']['username']}"
        )
        grant = await admin.get(TASK_GRANTS, "deploy-4711", TARGET) or {}
        objects = ", ".join(
            f"{o['kind']} {o['name']}" for o in (grant.get("status") or {}).get("objects", [])
        )
        line.say("issued", f"TaskGrant deploy-4711 with {objects}; expires {status['expiresAt']}")
        allowed = await may_as(deployer, "patch", "deployments", TARGET, "apps")
        line.check(
            allowed is True, "works", "ci/deployer, with its own token, may now patch deployments: yes"
        )
        allowed = await may_as(deployer, "delete", "deployments", TARGET, "apps")
        line.check(allowed is False, "scoped", "...but not delete them: no (only what the permission names)")

        await admin.patch(ACCESS_REQUESTS, "deploy-4711", {"spec": {"done": True}}, TARGET)
        line.say("done", "the pipeline's task is finished: spec.done = true")
        ended = await _phase(admin, "deploy-4711", "Completed")
        line.say("revoked", f"Completed at {ended['status']['revokedAt']}: {ended['status']['endReason']}")
        refused = await _until(lambda: _refused(deployer))
        line.check(refused, "refused", "ci/deployer may patch deployments: no")

        # --- ephemeral mode: a fresh identity, its kubeconfig delivered, dead at expiry -----
        async with await Kube.from_dict(kubeconfig(await request_token(admin, CI, "pipeline"))) as pipeline:
            await pipeline.create(
                ACCESS_REQUESTS, _request(example("ephemeral-kubeconfig", "request.yaml"), ttl="4s")
            )
        line.say(
            "request", "inspect-4712 filed: a fresh identity for 4s (demo TTL), kubeconfig delivered to ci"
        )
        active = await _phase(admin, "inspect-4712", "Active", "Denied", "Failed")
        status = active["status"]
        line.check(status["phase"] == "Active", "decision", status["decision"]["reason"])
        identity = status["identity"]
        line.say(
            "issued",
            f"ServiceAccount {identity['namespace']}/{identity['name']}, token jti {status['tokenCredentialId']}",
        )
        secret = await admin.get(SECRETS, "inspect-4712-kubeconfig", CI) or {}
        delivered = yaml.safe_load(base64.b64decode(secret.get("data", {}).get(c.DELIVERY_KEY, "")))
        allowed = await may_as(delivered, "patch", "deployments", TARGET, "apps")
        line.check(allowed is True, "works", "the delivered kubeconfig may patch deployments: yes")
        if evidence is not None:
            async with await Kube.from_dict(delivered) as inspector:
                await inspector.list(PODS, TARGET)
                await inspector.get(DEPLOYMENTS, "checkout", TARGET)
            line.say("task", "with it the task lists pods and reads one deployment, nothing else")
        expired = await _phase(admin, "inspect-4712", "Expired", within=15)
        lag = expired["status"].get("revocationLagSeconds")
        line.check(
            lag is not None and lag < 1,
            "expired",
            f"TTL reached; privilege removed {lag:+.3f}s from expiresAt",
        )
        dead = await _until(lambda: _dead(delivered))
        line.check(
            dead, "refused", "the delivered token no longer authenticates (its ServiceAccount is gone)"
        )
        if evidence is not None:
            usage = await recorded(admin, "inspect-4712", TARGET)
            line.check(
                usage is not None and bool(usage.used),
                "evidence",
                f"the API server's audit events say it used: {used_text(usage) if usage else 'nothing recorded'}",
            )
            line.say("unused", f"never exercised: {unused_text(usage) if usage else '?'}")
            advice = await advice_text(admin, EPHEMERAL_POLICY, TARGET)
            line.say("advise", f"zsp advise {EPHEMERAL_POLICY} would keep only: {advice}")

        # --- a hand-made binding dressed up as the operator's: standing privilege, removed ----
        await admin.create(ROLE_BINDINGS, _forged_binding())
        line.say("forged", "someone binds ci/deployer to `edit` by hand, copying the operator's labels")
        removed = await _until(lambda: _binding_gone(admin, "zsp-handmade"), within=5)
        line.check(removed, "swept", "the binding is removed: no live grant backs it")

        clean = await _until(lambda: _clean(admin))
        line.check(
            clean,
            "clean",
            "nothing the operator created remains: no TaskGrant, Role, RoleBinding, ServiceAccount or Secret",
        )
        records = [r for r in audit.getvalue().splitlines() if r.strip()]
        line.say("audit", f"{len(records)} audit records written (JSON lines, no secret material)")
    print(f"\nall {line.steps} steps behaved.", file=out)


def _forged_binding() -> dict[str, Any]:
    labels = {c.LABEL_MANAGED_BY: c.OPERATOR_NAME, c.LABEL_GRANT: "deploy-4711", c.LABEL_GRANT_UID: "made-up"}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "zsp-handmade", "namespace": TARGET, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "namespace": CI, "name": "deployer"}],
    }


async def _binding_gone(kube: Kube, name: str) -> bool:
    return await kube.get(ROLE_BINDINGS, name, TARGET) is None


async def _refused(kubeconfig: dict[str, Any]) -> bool:
    return await may_as(kubeconfig, "patch", "deployments", TARGET, "apps") is False


async def _dead(kubeconfig: dict[str, Any]) -> bool:
    return await may_as(kubeconfig, "patch", "deployments", TARGET, "apps") in (None, False)


async def _clean(kube: Kube) -> bool:
    return not await _leftovers(kube)


@contextlib.contextmanager
def _in_memory() -> Iterator[tuple[dict[str, Any], Callable[[str | None], dict[str, Any]], str, Evidence]]:
    from zsp_operator.sim import serve_in_thread  # the test double is loaded only here

    with evidence_files() as evidence, serve_in_thread(crds=build_crds(), **evidence.sim_options()) as sim:
        where = f"in-memory API server at {sim.url}, its audit events sent to the operator"
        yield sim.kubeconfig(), lambda token: sim.kubeconfig(token), where, evidence


async def _against(
    config: dict[str, Any],
    for_token: Callable[[str | None], dict[str, Any]],
    out: TextIO,
    evidence: Evidence | None = None,
) -> int:
    async with await Kube.from_dict(config) as admin:
        try:
            await play(admin, for_token, out, evidence)
        except (StepFailed, KubeError, TimeoutError) as err:
            print(f"\nthe demo stopped: {err}", file=out)
            return 1
        finally:
            for name in ("deploy-4711", "inspect-4712"):
                with contextlib.suppress(KubeError):
                    await admin.delete(ACCESS_REQUESTS, name, TARGET)
            for policy in (BIND_POLICY, EPHEMERAL_POLICY):
                with contextlib.suppress(KubeError):
                    await admin.delete(ACCESS_POLICIES, policy)
    return 0


def run_demo(kubeconfig: str | None, out: TextIO) -> int:
    print("zsp demo: zero standing privilege, as it happens\n", file=out)
    if kubeconfig is None:
        with _in_memory() as (config, for_token, where, evidence):
            print(f"  API server: {where} (no cluster needed)\n", file=out)
            return asyncio.run(_against(config, for_token, out, evidence))
    config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
    print(f"  API server: from {kubeconfig}\n", file=out)
    return asyncio.run(_against(config, lambda token: _with_token(config, token), out))


def _with_token(config: dict[str, Any], token: str | None) -> dict[str, Any]:
    """The same cluster and context, authenticated by `token` instead (None: unchanged)."""
    if token is None:
        return config
    context_name = config.get("current-context")
    context = next(ctx for ctx in config["contexts"] if ctx["name"] == context_name)["context"]
    cluster = next(cl for cl in config["clusters"] if cl["name"] == context["cluster"])
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "zsp-demo", "user": {"token": token}}],
        "contexts": [{"name": "zsp-demo", "context": {"cluster": cluster["name"], "user": "zsp-demo"}}],
        "current-context": "zsp-demo",
    }
