"""Run the real operator against a test cluster, and the small steps stories are made of.

The operator runs in the test's own event loop with `--dev` webhooks on 127.0.0.1, so
the API server (in-memory or real) calls it exactly as it would in a cluster. Every check
of authorisation is made with the issued identity's own token, never as admin.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tier_report import observe
from tiers import Cluster
from zsp_operator.core import constants as c
from zsp_operator.engine.clock import Clock, utcnow
from zsp_operator.engine.controller import Controller
from zsp_operator.kube import AlreadyExists, Kube
from zsp_operator.kube.identity import may_as, request_token, wait_for_webhooks
from zsp_operator.kube.resources import (
    ACCESS_POLICIES,
    ACCESS_REQUESTS,
    BY_KIND,
    CLUSTER_ROLE_BINDINGS,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    TASK_GRANTS,
    Resource,
)
from zsp_operator.observe.metrics import Metrics
from zsp_operator.process.runner import run_operator
from zsp_operator.settings import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PIPELINE = "system:serviceaccount:ci:pipeline"


@dataclass
class Operator:
    controller: Controller
    kube: Kube
    audit: io.StringIO
    task: asyncio.Future[None] | concurrent.futures.Future[None]

    def audit_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit.getvalue().splitlines() if line.strip()]

    def records_for(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """Audit records about one request (other stories' requests may share its name)."""
        return [
            record
            for record in self.audit_records()
            if (record.get("request") or {}).get("name") == name
            and (record.get("request") or {}).get("namespace") == namespace
        ]


class StoryClock:
    """The operator's clock in a story: the real time, plus whatever time the story lets pass at once.

    Moving it forward stands for the operator being away that long, without the story waiting.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def _settings(overrides: dict[str, Any]) -> Settings:
    """Webhooks on loopback, no fixed ports: many operators may run side by side."""
    return Settings(
        **{
            "dev": True,
            "webhook_port": 0,
            "metrics_port": 0,
            "health_port": 0,
            **overrides,
        }
    )


@contextlib.asynccontextmanager
async def running_operator(
    cluster: Cluster,
    *,
    wrap: Callable[[Kube], Kube] | None = None,
    clock: Clock = utcnow,
    **overrides: Any,
) -> AsyncIterator[Operator]:
    """Start the operator (webhooks included) and stop it cleanly afterwards.

    `wrap` puts a client of the story's own (faults, `Sweeps`) between the operator and the
    API server; `clock` is the operator's source of time (`StoryClock`).
    """
    settings = _settings(overrides)
    kube = await Kube.from_dict(cluster.kubeconfig(await operator_token(cluster)))
    if wrap is not None:
        kube = wrap(kube)
    audit = io.StringIO()
    controller = Controller.build(kube, settings, clock=clock, audit_stream=audit)
    stop = asyncio.Event()
    task = asyncio.create_task(run_operator(settings, controller=controller, stop_flag=stop))
    try:
        await _wait_for_webhooks(cluster, task)
        yield Operator(controller, kube, audit, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await kube.close()


@contextlib.asynccontextmanager
async def replica(cluster: Cluster, *, ready: bool = True, **overrides: Any) -> AsyncIterator[Operator]:
    """The operator in a thread and event loop of its own, like one replica of a Deployment.

    Separate loops matter: kopf cancels every task of its loop when it stops, which
    would take a second operator sharing the loop down with it. `ready=False`
    returns without waiting for webhooks (a standby serves none). What stopped the
    replica is raised on the way out.
    """
    settings = _settings(overrides)
    token = await operator_token(cluster)
    audit = io.StringIO()
    started: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event, Controller, Kube]]
    started = concurrent.futures.Future()

    async def main() -> None:
        async with await Kube.from_dict(cluster.kubeconfig(token)) as kube:
            controller = Controller.build(kube, settings, audit_stream=audit)
            stop = asyncio.Event()
            started.set_result((asyncio.get_running_loop(), stop, controller, kube))
            await run_operator(settings, controller=controller, stop_flag=stop)

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="replica") as pool:
        finished = pool.submit(asyncio.run, main())
        ended = asyncio.wrap_future(finished)
        await asyncio.wait({asyncio.wrap_future(started), ended}, return_when="FIRST_COMPLETED")
        if not started.done():
            ended.result()  # raises why it could not start
        loop, stop, controller, kube = started.result()
        try:
            if ready:
                await _wait_for_webhooks(cluster, ended)
            yield Operator(controller, kube, audit, finished)
        finally:
            if not finished.done():
                loop.call_soon_threadsafe(stop.set)
            await asyncio.wait_for(ended, timeout=30)


class Sweeps(Kube):
    """The operator's client (`running_operator(..., wrap=Sweeps)`), telling a story when sweeps run.

    Every full sweep opens with its one listing of all ClusterRoleBindings (engine/sweeper.py
    lists the bindings before anything else) and ends by counting itself in
    `zsp_sweeps_total`. `held()` keeps sweeps from running, so that only watch events act.
    """

    def __init__(self, inner: Kube) -> None:
        super().__init__(inner.api)
        self.begun = 0  # sweeps opened so far
        self.waiting = False  # a sweep is held at its opening
        self._open = asyncio.Event()
        self._open.set()
        self._metrics: Metrics | None = None
        self._done_at_opening: dict[int, float] = {}  # sweep number -> sweeps completed when it opened

    @classmethod
    def of(cls, op: Operator) -> Sweeps:
        assert isinstance(op.kube, cls), "start the operator with wrap=Sweeps"
        op.kube._metrics = op.controller.observer.metrics
        return op.kube

    def completed(self) -> float:
        """Full sweeps the operator counted as done (`zsp_sweeps_total`, every mode)."""
        assert self._metrics is not None, "get the wrapper with Sweeps.of(op)"
        return sum(
            sample.value
            for metric in self._metrics.sweeps.collect()
            for sample in metric.samples
            if sample.name == "zsp_sweeps_total"
        )

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        if res is CLUSTER_ROLE_BINDINGS and label_selector is None and field_selector is None:
            self.begun += 1
            if self._metrics is not None:
                self._done_at_opening[self.begun] = self.completed()
            if not self._open.is_set():
                self.waiting = True
                try:
                    await self._open.wait()
                finally:
                    self.waiting = False
        return await super().list(
            res, namespace, label_selector=label_selector, field_selector=field_selector
        )

    async def one_passes(self, within: float = 10) -> None:
        """Return once a whole sweep ran after the call: sweeps run one after another, so once
        the operator counts the first one opened after the call as done, that one ran whole."""
        wanted = self.begun + 1

        def done() -> bool:
            # The first completion counted after sweep `wanted` opened is its own (or, had it
            # failed, a later one's): a whole sweep either way.
            before = self._done_at_opening.get(wanted)
            return before is not None and self.completed() > before

        try:
            await eventually(done, within=within)
        except AssertionError:
            raise AssertionError(f"no whole sweep ran within {within}s (is resync short?)") from None

    @contextlib.asynccontextmanager
    async def held(self, within: float = 10) -> AsyncIterator[None]:
        """No sweep runs inside the block: the one under way ends first, the next one waits at
        its opening until the block ends."""
        self._open.clear()
        try:
            await eventually(lambda: self.waiting, within=within)
            yield
        finally:
            self._open.set()


OPERATOR_RBAC = Path(__file__).resolve().parent.parent / "deploy" / "operator-rbac.yaml"
OPERATOR_USER = "system:serviceaccount:zsp-system:zsp-operator"


async def operator_token(cluster: Cluster) -> str:
    """Install the operator's own identity and least-privilege RBAC; return a token for it.

    The operator never runs as admin in a story: a permission missing from
    deploy/operator-rbac.yaml fails the story that needs it.
    """
    async with await Kube.from_dict(cluster.kubeconfig()) as admin:
        for doc in yaml.safe_load_all(OPERATOR_RBAC.read_text()):
            res = BY_KIND[doc["kind"]]
            with contextlib.suppress(AlreadyExists):
                await admin.create(res, doc)
        return await token_for(admin, "zsp-system", "zsp-operator", seconds=3600)


async def _wait_for_webhooks(cluster: Cluster, task: asyncio.Future[None], within: float = 30) -> None:
    """Ready when the webhooks answer; fail at once if the operator stopped instead."""
    async with await Kube.from_dict(cluster.kubeconfig()) as admin:
        waiting = asyncio.ensure_future(wait_for_webhooks(admin, within))
        done, _ = await asyncio.wait({waiting, task}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiting.cancel()
        task.result()  # raises what stopped the operator
        raise RuntimeError("the operator exited before it was ready")
    waiting.result()


# --- manifests ------------------------------------------------------------------------------


def example(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


def renamed_namespaces(docs: Iterable[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """Give a story its own namespaces (`ci` -> `ci-<suffix>`), so stories never share state."""
    text = json.dumps(list(docs))
    for ns in ("payments-staging", "ci"):
        text = text.replace(f'"{ns}"', f'"{ns}-{suffix}"').replace(f":{ns}:", f":{ns}-{suffix}:")
    result: list[dict[str, Any]] = json.loads(text)
    return result


RESOURCES = {
    r.kind: r
    for r in (
        NAMESPACES,
        SERVICE_ACCOUNTS,
        SECRETS,
        ROLES,
        ROLE_BINDINGS,
        ACCESS_POLICIES,
        ACCESS_REQUESTS,
        TASK_GRANTS,
    )
}


async def apply(kube: Kube, docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    created = []
    for doc in docs:
        res = RESOURCES.get(doc["kind"])
        if res is None:
            raise KeyError(f"no resource known for kind {doc['kind']}")
        created.append(await kube.create(res, doc))
    return created


# --- waiting and checking -------------------------------------------------------------------


async def eventually(check: Callable[[], Any], *, within: float = 10, every: float = 0.05) -> Any:
    """Await `check()` until it returns something truthy; return it, or fail with the last value."""
    deadline = time.monotonic() + within
    value: Any = None
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(every)


async def phase_of(kube: Kube, namespace: str, name: str) -> str | None:
    body = await kube.get(ACCESS_REQUESTS, name, namespace)
    return ((body or {}).get("status") or {}).get("phase")


async def wait_for_phase(
    kube: Kube, namespace: str, name: str, *phases: str, within: float = 15
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        body = await kube.get(ACCESS_REQUESTS, name, namespace)
        phase = ((body or {}).get("status") or {}).get("phase")
        return body if phase in phases else None

    try:
        result: dict[str, Any] = await eventually(reached, within=within)
    except AssertionError:
        body = await kube.get(ACCESS_REQUESTS, name, namespace)
        raise AssertionError(
            f"{namespace}/{name} never reached {phases}; status: {(body or {}).get('status')}"
        ) from None
    observe("phase", f"{name} {result['status']['phase']}")
    return result


async def token_for(kube: Kube, namespace: str, name: str, seconds: int = 600) -> str:
    """A fresh token for an existing ServiceAccount (the grantee's own credentials)."""
    return await request_token(kube, namespace, name, seconds)


async def can(
    cluster: Cluster, token: str, verb: str, resource: str, namespace: str, group: str = ""
) -> bool | None:
    """Ask the API server, *as the bearer of `token`*, whether it may do this.

    None means the token no longer authenticates at all (its identity is gone).
    """
    return await may_as(cluster.kubeconfig(token), verb, resource, namespace, group)


async def token_dies(
    cluster: Cluster,
    token: str,
    verb: str,
    resource: str,
    namespace: str,
    group: str = "",
    within: float = 15,
) -> None:
    """Return once `token` no longer authenticates; fail at once if it is allowed meanwhile.

    A real API server may take a few seconds to stop accepting a token whose ServiceAccount was
    deleted (it caches what it authenticated); the privilege itself must be gone all along.
    """

    async def dead() -> bool:
        answer = await can(cluster, token, verb, resource, namespace, group)
        assert answer is not True, f"{verb} {resource} in {namespace} allowed again"
        return answer is None

    await eventually(dead, within=within)


async def managed_objects(kube: Kube, namespaces: Iterable[str]) -> list[str]:
    """Everything the operator made that still exists in these namespaces (`Kind ns/name`)."""
    found = []
    for namespace in namespaces:
        for res in (ROLE_BINDINGS, ROLES, SERVICE_ACCOUNTS, SECRETS, TASK_GRANTS):
            for obj in await kube.list(
                res, namespace, label_selector=f"{c.LABEL_MANAGED_BY}={c.OPERATOR_NAME}"
            ):
                found.append(f"{res.kind} {namespace}/{obj['metadata']['name']}")
    return found


async def as_user(cluster: Cluster, token: str) -> Kube:
    return await Kube.from_dict(cluster.kubeconfig(token))


def lag_seconds(record: dict[str, Any]) -> float:
    return float(record["status"]["revocationLagSeconds"])


def short(seconds: float) -> str:
    return f"{int(timedelta(seconds=seconds).total_seconds())}s"


def resource(kind: str) -> Resource:
    return RESOURCES[kind]


def job(name: str, namespace: str, **meta: Any) -> dict[str, Any]:
    """A one-pod Job to name as a task (`taskRef`); nothing runs it on either tier."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "deploy", "image": "busybox"}]}
            }
        },
    }


def job_succeeded() -> dict[str, Any]:
    """The status the Job controller writes when its one pod succeeded.

    The API server refuses `Complete=True` without `SuccessCriteriaMet=True`, `startTime`
    and `completionTime` (the strict Job status rules of Kubernetes 1.31+).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    started = (now - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    finished = now.isoformat().replace("+00:00", "Z")
    conditions = [
        {"type": kind, "status": "True", "reason": "CompletionsReached", "lastTransitionTime": finished}
        for kind in ("SuccessCriteriaMet", "Complete")
    ]
    return {
        "status": {
            "startTime": started,
            "completionTime": finished,
            "succeeded": 1,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": conditions,
        }
    }
