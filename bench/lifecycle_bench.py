"""The grant lifecycle end to end: issue latency, revocation lag at expiry, and a burst.

The operator runs as its own process (`zsp run --dev`, as its ServiceAccount with the
least-privilege RBAC of `deploy/operator-rbac.yaml`) against the API server `--target` names
(bench/targets.py): the in-memory one in this process, a real control plane built from
tests/controlplane (`envtest`), or a cluster from a kubeconfig. The benchmark's own client files
requests with the pipeline's own token (so the webhook records the requester), and checks
access with the grantee's own token (SelfSubjectAccessReview).

Scenarios:
  issue    N sequential requests per mode (bind, ephemeral): created -> Active -> the grantee's
           access review allowed, with the operator's own timestamps splitting the time; then
           `done: true` -> access refused -> Completed.
  expiry   N grants (bind and ephemeral alternating) filed 0.15 s apart with TTLs of 3-5 s:
           status.revokedAt - status.expiresAt, the RoleBinding's deletion as a watcher sees it,
           and the first refused access review (probed every 20 ms from just before expiry).
  burst    N ephemeral requests filed at once: time until all Active; then `done: true` on all
           at once. Then N more, filed four at a time, each with the TTL that makes them all
           expire within the same second, and the revocation lag of each.

Before the operator starts, bench/ceiling.py measures the API server's own figures for the same
calls as the operator's identity, and the report opens with each headline figure beside them
(`--no-ceiling` skips it).

All times are wall-clock (`time.time()`, the same clock the operator stamps status with).

    python bench/lifecycle_bench.py                    # the full run on the in-memory server
    python bench/lifecycle_bench.py --target envtest   # the same on a real control plane
    python bench/lifecycle_bench.py --quick            # a smoke test (under 30 s)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import logging
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml
from ceiling import ceiling_section, measure_ceiling, poll
from machine import control_plane, cpu_per_item, cpu_spent, cpu_times, describe, load
from targets import CallCounter, OperatorProcess, Target, target

from zsp_operator.core import constants as c
from zsp_operator.kube import AlreadyExists, Kube
from zsp_operator.kube.identity import may, request_token, wait_for_webhooks
from zsp_operator.kube.resources import (
    ACCESS_REQUESTS,
    BY_KIND,
    NAMESPACES,
    ROLE_BINDINGS,
    SECRETS,
    TASK_GRANTS,
)

CI, TARGET, POLICY = "bench-ci", "bench-target", "bench-deployers"
WORKERS = 40  # bind-mode grantees for the expiry scenario: bench-ci/worker-00..39
VERB, RESOURCE, GROUP = "patch", "deployments", "apps"

log = logging.getLogger("bench")


# --- numbers ----------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q=0.95: the value 95 % of the samples are at or below)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def row(label: str, values: Sequence[float], *, signed: bool = False) -> str:
    """A table row in milliseconds: n, median, p95, max, min."""
    if not values:
        return f"| {label} | 0 | | | | |"
    ms = [v * 1000 for v in values]
    fmt = "{:+,.0f}" if signed else "{:,.0f}"
    cells = [statistics.median(ms), quantile(ms, 0.95), max(ms), min(ms)]
    return f"| {label} | {len(ms)} | " + " | ".join(fmt.format(v) for v in cells) + " |"


TABLE_HEAD = "| | n | median ms | p95 ms | max ms | min ms |\n|---|---:|---:|---:|---:|---:|"


def parse_time(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


CALL_VERBS = ("get", "list", "create", "patch", "patch status", "update", "delete", "create token")
# The budget tracked per grant, in API calls other than Events (issue to teardown); lists: none.
BUDGET = {"bind": 10, "ephemeral": 14}


def _verb(key: str) -> tuple[str, str]:
    """`patch status accessrequests` -> (`patch status`, `accessrequests`)."""
    verb, _, resource = key.rpartition(" ")
    return verb, resource


def calls_row(label: str, before: Counter[str], after: Counter[str], grants: int, budget: float) -> str:
    """One row from detail counters (verb and resource): Events apart from the rest."""
    used = after - before
    events = sum(n for k, n in used.items() if _verb(k)[1] == "events")
    verbs: Counter[str] = Counter()
    for key, n in used.items():
        verb, resource = _verb(key)
        if resource != "events":
            verbs[verb] += n
    rest = sum(verbs.values())
    per = [verbs.get(v, 0) / grants for v in CALL_VERBS]
    other = sum(n for v, n in verbs.items() if v not in CALL_VERBS) / grants
    within = rest / grants <= budget and verbs.get("list", 0) == 0
    return (
        f"| {label} | {rest / grants:.1f} | {budget:g} | {'within' if within else 'over'} "
        f"| {events / grants:.1f} | " + " | ".join(f"{x:.1f}" for x in [*per, other]) + " |"
    )


def calls_detail_table(detail: dict[str, Counter[str]], grants: int) -> str:
    """Scenario (a)'s calls per grant by verb and resource, one column per mode."""
    if not detail:
        return ""
    modes = list(detail)
    keys = sorted(set().union(*detail.values()), key=lambda k: -sum(d.get(k, 0) for d in detail.values()))
    lines = [
        "\n\nScenario (a), per grant (issue, `done`, teardown, finalizer, sweeper, Events):\n",
        "| call | " + " | ".join(modes) + " |",
        "|---|" + "---:|" * len(modes),
    ]
    for key in keys:
        lines.append(
            f"| {key} | " + " | ".join(f"{detail[m].get(key, 0) / grants:.1f}" for m in modes) + " |"
        )
    return "\n".join(lines)


CALLS_HEAD = (
    "| operator's API calls per grant | all but Events | budget | vs budget | Events | "
    + " | ".join(CALL_VERBS)
    + " | other |\n|---|---:|---:|---|---:|"
    + "---:|" * (len(CALL_VERBS) + 1)
)


# --- watching what happens --------------------------------------------------------------------


@dataclass
class Seen:
    """When this process first saw each phase of a request, and the request's latest body."""

    phases: dict[str, float] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Recorder:
    """Watches AccessRequests and managed RoleBindings in the target namespace (as admin)."""

    def __init__(self, admin: Kube) -> None:
        self.admin = admin
        self.requests: dict[str, Seen] = {}
        self.bindings_gone: dict[str, float] = {}  # request uid -> when its RoleBinding's deletion was seen
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(ACCESS_REQUESTS, None, self._on_request)),
            asyncio.create_task(
                self._follow(ROLE_BINDINGS, f"{c.LABEL_MANAGED_BY}={c.OPERATOR_NAME}", self._on_binding)
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(
        self, res: Any, selector: str | None, handle: Callable[[str, dict[str, Any], float], None]
    ) -> None:
        version: str | None = None
        while True:
            try:
                async for kind, obj in self.admin.watch(
                    res, TARGET, label_selector=selector, resource_version=version, timeout_seconds=600
                ):
                    now = time.time()
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if kind != "BOOKMARK":
                        handle(kind, obj, now)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("watch of %s restarted: %s", res.kind, err)
                version = None
                await asyncio.sleep(0.1)

    def _on_request(self, kind: str, obj: dict[str, Any], now: float) -> None:
        seen = self.requests.setdefault(obj["metadata"]["name"], Seen())
        if kind == "DELETED":
            return
        seen.body = obj
        phase = (obj.get("status") or {}).get("phase")
        if phase:
            seen.phases.setdefault(phase, now)
        seen.changed.set()

    def _on_binding(self, kind: str, obj: dict[str, Any], now: float) -> None:
        if kind == "DELETED":
            uid = (obj["metadata"].get("labels") or {}).get(c.LABEL_REQUEST_UID)
            if uid:
                self.bindings_gone.setdefault(uid, now)

    async def phase(self, name: str, *phases: str, within: float = 30) -> tuple[str, float, dict[str, Any]]:
        """Wait until the request reached one of `phases`; (phase, first seen, latest body)."""
        seen = self.requests.setdefault(name, Seen())
        deadline = time.monotonic() + within
        while True:
            for phase in phases:
                if phase in seen.phases:
                    return phase, seen.phases[phase], seen.body
            left = deadline - time.monotonic()
            if left <= 0:
                status = (seen.body or {}).get("status")
                raise TimeoutError(f"{name} never reached {'/'.join(phases)} within {within}s: {status}")
            seen.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.changed.wait(), timeout=left)


# --- the world --------------------------------------------------------------------------------


def _namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def _service_account(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": CI, "name": name}}


def world(limit: int = 1000) -> list[dict[str, Any]]:
    """Namespaces, the pipeline (asks), the deployer and workers (receive), the policy."""
    meta = {"namespace": TARGET, "name": "zsp-requester-pipeline"}
    rules = [
        {
            "apiGroups": [c.GROUP],
            "resources": [c.PLURAL_REQUEST],
            "verbs": ["create", "get", "list", "watch", "patch"],
        }
    ]
    workers = [f"worker-{i:02d}" for i in range(WORKERS)]
    policy = {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_POLICY,
        "metadata": {"name": POLICY},
        "spec": {
            "requesters": [{"kind": "ServiceAccount", "namespace": CI, "name": "pipeline"}],
            "grantees": {
                "serviceAccounts": [{"namespace": CI, "name": n} for n in ["deployer", *workers]],
                "ephemeral": {"enabled": True, "deliveryNamespaces": [CI]},
            },
            "namespaces": {"names": [TARGET]},
            "permissions": [
                {
                    "name": "deploy",
                    "rules": [
                        {
                            "apiGroups": [GROUP],
                            "resources": [RESOURCE],
                            "verbs": ["get", "list", "patch", "update"],
                        }
                    ],
                }
            ],
            "defaultTTL": "15m",
            "maxTTL": "1h",
            # Raised so that a burst of a few hundred grants fits under one pipeline and policy.
            "limits": {
                "activePerGrantee": 1,
                "activePerRequester": limit,
                "activePerPolicy": limit,
                "exclusiveEnvironments": True,
            },
        },
    }
    return [
        _namespace(CI),
        _namespace(TARGET, {c.LABEL_ENVIRONMENT: "staging", "team": "bench"}),
        *(_service_account(n) for n in ["pipeline", "deployer", *workers]),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
            "subjects": [{"kind": "ServiceAccount", "namespace": CI, "name": "pipeline"}],
        },
        policy,
    ]


def request_body(name: str, *, ttl: str, grantee: str | None = None) -> dict[str, Any]:
    """A request for `deploy` in the target namespace; `grantee` None is an ephemeral identity."""
    spec: dict[str, Any] = {"permission": "deploy", "ttl": ttl, "reason": f"benchmark {name}"}
    if grantee is None:
        spec["grantee"] = {"ephemeral": {}}
        spec["delivery"] = {"namespace": CI, "secretName": f"{name}-kubeconfig"}
    else:
        spec["grantee"] = {"serviceAccount": {"namespace": CI, "name": grantee}}
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_REQUEST,
        "metadata": {"name": name, "namespace": TARGET},
        "spec": spec,
    }


def ttl_text(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


@dataclass
class Bench:
    admin: Kube
    pipeline: Kube
    recorder: Recorder
    kubeconfig: Callable[[str | None], dict[str, Any]]
    tokens: dict[str, str]  # ServiceAccount name in CI -> token
    calls: CallCounter  # the operator's API calls, as the API server counts them
    operator_pid: int | None = None
    call_rows: list[str] = field(default_factory=list)  # operator API calls per grant, by scenario
    call_detail: dict[str, Counter[str]] = field(default_factory=dict)  # mode -> calls per grant

    async def grantee_client(self, body: dict[str, Any]) -> Kube:
        """A client authenticated as the grant's identity: its own token, or the delivered kubeconfig."""
        spec = body["spec"]
        if "serviceAccount" in spec["grantee"]:
            return await Kube.from_dict(
                self.kubeconfig(self.tokens[spec["grantee"]["serviceAccount"]["name"]])
            )
        name = spec["delivery"]["secretName"]
        secret = None
        for _ in range(200):
            secret = await self.admin.get(SECRETS, name, CI)
            if secret is not None:
                break
            await asyncio.sleep(0.01)
        if secret is None:
            raise TimeoutError(f"delivery Secret {CI}/{name} never appeared")
        config = yaml.safe_load(base64.b64decode(secret["data"][c.DELIVERY_KEY]))
        return await Kube.from_dict(config)

    async def wait_clean(self, within: float = 60) -> None:
        """Until no TaskGrant is left (the previous scenario's grants are fully torn down)."""
        deadline = time.monotonic() + within
        while await self.admin.list(TASK_GRANTS, TARGET):
            if time.monotonic() > deadline:
                raise TimeoutError("TaskGrants still present")
            await asyncio.sleep(0.05)


async def allowed(kube: Kube) -> bool | None:
    return await may(kube, VERB, RESOURCE, TARGET, GROUP)


# --- scenario (a): issue latency --------------------------------------------------------------


@dataclass
class IssueSample:
    mode: str
    start: float
    created: float
    decided: float
    issued: float
    active: float
    ready: float  # the grantee's client exists (ephemeral: built from the delivered kubeconfig)
    allowed: float
    done_refused: float
    done_completed: float


async def issue_one(b: Bench, name: str, grantee: str | None) -> IssueSample:
    """One request from filing to Active to allowed, then `done` to refused and Completed.

    A bind-mode grantee's client exists before the request (a deployer's client is long-lived;
    its first review, refused, opens the connection); an ephemeral grantee's client can only be
    built from the delivered kubeconfig once the request is Active.
    """
    grantee_kube = None
    if grantee is not None:
        grantee_kube = await Kube.from_dict(b.kubeconfig(b.tokens[grantee]))
        if await allowed(grantee_kube):
            raise RuntimeError(f"{name}: {grantee} is allowed before any grant (standing privilege)")
    try:
        start = time.time()
        await b.pipeline.create(ACCESS_REQUESTS, request_body(name, ttl="10m", grantee=grantee))
        created = time.time()
        phase, active, body = await b.recorder.phase(name, "Active", "Denied", "Failed")
        if phase != "Active":
            raise RuntimeError(f"{name} is {phase}: {body.get('status')}")
        status = body["status"]
        if grantee_kube is None:
            grantee_kube = await b.grantee_client(body)
        ready = time.time()
        kube = grantee_kube
        allowed_at = await poll(lambda: _is(allowed(kube), True), 0.005, 10)
        if allowed_at is None:
            raise RuntimeError(f"{name}: Active, but the grantee is never allowed")
        done = time.time()
        await b.pipeline.patch(ACCESS_REQUESTS, name, {"spec": {"done": True}}, TARGET)
        refused_at = await poll(lambda: _refused(kube), 0.01, 10)
        _, completed, _ = await b.recorder.phase(name, "Completed", within=15)
    finally:
        if grantee_kube is not None:
            await grantee_kube.close()
    if refused_at is None:
        raise RuntimeError(f"{name}: done, but the grantee is still allowed")
    return IssueSample(
        mode="bind" if grantee else "ephemeral",
        start=start,
        created=created,
        decided=parse_time(status["decision"]["at"]) or 0,
        issued=parse_time(status["issuedAt"]) or 0,
        active=active,
        ready=ready,
        allowed=allowed_at,
        done_refused=refused_at - done,
        done_completed=completed - done,
    )


async def _is(value: Awaitable[bool | None], expected: bool) -> bool:
    return (await value) is expected


async def _refused(kube: Kube) -> bool:
    return (await allowed(kube)) is not True  # False: not authorised; None: no longer authenticates


async def scenario_issue(b: Bench, n: int) -> list[IssueSample]:
    samples = []
    for mode, grantee in (("bind", "deployer"), ("ephemeral", None)):
        began = time.monotonic()
        detail = b.calls.detail()
        for i in range(n):
            samples.append(await issue_one(b, f"issue-{mode}-{i:03d}", grantee))
            await b.wait_clean()
        b.call_detail[mode] = b.calls.detail() - detail
        b.call_rows.append(
            calls_row(f"(a) issue, then `done` ({mode})", detail, b.calls.detail(), n, BUDGET[mode])
        )
        say(f"  issue, {mode}: {n} requests in {time.monotonic() - began:.1f}s")
    return samples


def issue_table(samples: Sequence[IssueSample]) -> str:
    lines = []
    for mode in ("bind", "ephemeral"):
        s = [x for x in samples if x.mode == mode]
        lines += [
            f"\n**{mode} mode** ({len(s)} sequential requests)\n",
            TABLE_HEAD,
            row("created → phase Active (seen by a watch)", [x.active - x.start for x in s]),
            row("created → grantee's access review allowed", [x.allowed - x.start for x in s]),
            row("  create call (admission webhooks)", [x.created - x.start for x in s]),
            row("  stored → decided (`decision.at`)", [x.decided - x.created for x in s]),
            row("  decided → issued (`issuedAt`)", [x.issued - x.decided for x in s]),
            row("  issued → Active seen", [x.active - x.issued for x in s]),
            row("  Active seen → grantee's client ready", [x.ready - x.active for x in s]),
            row("  client ready → access review allowed", [x.allowed - x.ready for x in s]),
            row("`done: true` → access review refused", [x.done_refused for x in s]),
            row("`done: true` → phase Completed seen", [x.done_completed for x in s]),
        ]
    return "\n".join(lines)


# --- scenario (b): revocation lag at expiry ---------------------------------------------------


@dataclass
class ExpirySample:
    mode: str
    expires: float
    revoked: float
    lag_status: float | None
    binding_gone: float | None
    last_allowed: float | None
    refused: float | None
    expired_seen: float


async def expire_one(
    b: Bench, name: str, grantee: str | None, ttl: float, probe: bool, every: float
) -> ExpirySample:
    await b.pipeline.create(ACCESS_REQUESTS, request_body(name, ttl=ttl_text(ttl), grantee=grantee))
    phase, _, body = await b.recorder.phase(name, "Active", "Denied", "Failed", within=120)
    if phase != "Active":
        raise RuntimeError(f"{name} is {phase}: {body.get('status')}")
    expires = parse_time(body["status"]["expiresAt"]) or 0
    uid = body["metadata"]["uid"]
    last_allowed = refused = None
    if probe:
        kube = await b.grantee_client(body)
        try:
            await asyncio.sleep(max(0.0, expires - 0.6 - time.time()))
            deadline = expires + 10
            while time.time() < deadline:
                result = await allowed(kube)
                now = time.time()
                if result is True:
                    last_allowed = now
                else:
                    refused = now
                    break
                await asyncio.sleep(every)
        finally:
            await kube.close()
    phase, expired_seen, final = await b.recorder.phase(
        name, "Expired", "Revoked", "Failed", within=max(0.0, expires - time.time()) + 60
    )
    status = final["status"]
    if phase != "Expired":
        raise RuntimeError(f"{name} ended {phase}: {status}")
    return ExpirySample(
        mode="bind" if grantee else "ephemeral",
        expires=expires,
        revoked=parse_time(status.get("revokedAt")) or 0,
        lag_status=status.get("revocationLagSeconds"),
        binding_gone=b.recorder.bindings_gone.get(uid),
        last_allowed=last_allowed,
        refused=refused,
        expired_seen=expired_seen,
    )


async def scenario_expiry(b: Bench, n: int, base_ttl: float) -> list[ExpirySample]:
    async def one(i: int) -> ExpirySample:
        await asyncio.sleep(i * 0.15)
        grantee = f"worker-{i:02d}" if i % 2 == 0 else None
        ttl = base_ttl + (i % 5) * 0.5
        return await expire_one(b, f"expiry-{i:03d}", grantee, ttl, probe=True, every=0.02)

    began = time.monotonic()
    before = b.calls.detail()
    samples = list(await asyncio.gather(*(one(i) for i in range(n))))
    say(f"  expiry: {n} grants in {time.monotonic() - began:.1f}s")
    await b.wait_clean()
    budget = (BUDGET["bind"] * ((n + 1) // 2) + BUDGET["ephemeral"] * (n // 2)) / n
    b.call_rows.append(
        calls_row("(b) issue, then expiry (bind and ephemeral)", before, b.calls.detail(), n, budget)
    )
    return samples


def expiry_rows(samples: Sequence[ExpirySample], suffix: str = "") -> list[str]:
    return [
        row(f"`revokedAt - expiresAt`{suffix}", [x.revoked - x.expires for x in samples], signed=True),
        row(
            f"RoleBinding deletion seen - `expiresAt`{suffix}",
            [x.binding_gone - x.expires for x in samples if x.binding_gone],
            signed=True,
        ),
        row(
            f"first refused access review - `expiresAt`{suffix}",
            [x.refused - x.expires for x in samples if x.refused],
            signed=True,
        ),
        row(
            f"last allowed access review - `expiresAt`{suffix}",
            [x.last_allowed - x.expires for x in samples if x.last_allowed],
            signed=True,
        ),
        row(
            f"phase Expired seen - `expiresAt`{suffix}",
            [x.expired_seen - x.expires for x in samples],
            signed=True,
        ),
    ]


def expiry_table(samples: Sequence[ExpirySample]) -> str:
    lines = [TABLE_HEAD, *expiry_rows(samples)]
    for mode in ("bind", "ephemeral"):
        lines.append(
            row(
                f"`revokedAt - expiresAt`, {mode} only",
                [x.revoked - x.expires for x in samples if x.mode == mode],
                signed=True,
            )
        )
    return "\n".join(lines)


# --- scenario (c): burst ----------------------------------------------------------------------


@dataclass
class BurstResult:
    n: int
    filed: float  # all creates returned, seconds after the start
    to_issued: list[float]  # per request: start -> status.issuedAt
    to_active_seen: list[float]  # per request: start -> phase Active seen by this process's watch
    done_to_revoked: list[float]  # per request: `done` patches sent -> status.revokedAt
    done_all_seen: float  # `done` patches sent -> the last Completed seen by the watch
    expiry: list[ExpirySample]
    expiry_spread: float
    probed: int
    # admission answers (a dry-run create through both webhooks) while the engine works
    admission_issuing: list[float]
    admission_revoking: list[float]
    # CPU seconds of each process (operator, API server, etcd, this benchmark) while issuing
    # (filing included) and while revoking (`done` patches included)
    issuing_cpu: dict[str, float]
    revoking_cpu: dict[str, float]


class AdmissionProbe:
    """A dry-run AccessRequest create every 100 ms: the webhooks' answer time, under load."""

    def __init__(self, b: Bench) -> None:
        self.b = b
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        for i in itertools.count():
            body = request_body(f"admission-probe-{i}", ttl="10m")
            t0 = time.perf_counter()
            await self.b.pipeline.create(ACCESS_REQUESTS, body, dry_run=True)
            self.samples.append(time.perf_counter() - t0)
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self.samples = []
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return list(self.samples)


async def scenario_burst(b: Bench, n: int, probes: int, issue_estimate: float) -> BurstResult:
    names = [f"burst-{i:04d}" for i in range(n)]
    before = b.calls.detail()
    probe = AdmissionProbe(b)
    pids = {"operator": b.operator_pid, **control_plane()}
    cpu_before = cpu_times(pids)
    start = time.time()
    await asyncio.gather(*(b.pipeline.create(ACCESS_REQUESTS, request_body(x, ttl="10m")) for x in names))
    filed = time.time() - start
    probe.start()  # from here the engine issues, and only the probe asks admission
    reached = await asyncio.gather(
        *(b.recorder.phase(x, "Active", "Denied", "Failed", within=300) for x in names)
    )
    admission_issuing = await probe.stop()
    issuing_cpu = cpu_spent(cpu_before, cpu_before := cpu_times(pids))
    bad = [(x, r[0]) for x, r in zip(names, reached, strict=True) if r[0] != "Active"]
    if bad:
        raise RuntimeError(f"burst requests not Active: {bad[:5]}")
    to_active_seen = [r[1] - start for r in reached]
    to_issued = [(parse_time(r[2]["status"].get("issuedAt")) or 0) - start for r in reached]
    say(f"  burst: {n} Active after {max(to_issued):.1f}s")

    done = time.time()
    await asyncio.gather(
        *(b.pipeline.patch(ACCESS_REQUESTS, x, {"spec": {"done": True}}, TARGET) for x in names)
    )
    probe.start()
    completed = await asyncio.gather(*(b.recorder.phase(x, "Completed", within=300) for x in names))
    admission_revoking = await probe.stop()
    revoking_cpu = cpu_spent(cpu_before, cpu_times(pids))
    done_all_seen = max(r[1] for r in completed) - done
    done_to_revoked = [(parse_time(r[2]["status"].get("revokedAt")) or 0) - done for r in completed]
    await b.wait_clean(within=300)
    say(f"  burst: {n} revoked {max(done_to_revoked):.1f}s after done")
    b.call_rows.append(
        calls_row(
            "(c) burst issue, then `done` on all (ephemeral)",
            before,
            b.calls.detail(),
            n,
            BUDGET["ephemeral"],
        )
    )

    # The same number again, expiring within one second. A TTL counts from issuance, so they
    # cannot all be filed at once: four lanes file one request at a time each, every one with
    # the TTL that puts its expiresAt at `target`, given how long issuance has been taking.
    # The target leaves the time the burst above needed to issue them all, and a margin.
    before = b.calls.detail()
    began = time.time()
    target = began + max(to_issued) * 1.3 + min(3.0, 1 + n / 50)
    every = max(1, n // probes) if probes else 0
    tasks: list[asyncio.Task[ExpirySample]] = []
    latencies: list[float] = []
    pending = iter(range(n))

    async def lane() -> None:
        for i in pending:
            name = f"expire-all-{i:04d}"
            guess = statistics.median(latencies[-10:]) if latencies else issue_estimate
            ttl = max(1.0, target - time.time() - guess)
            probe = bool(every) and i % every == 0
            t0 = time.time()
            tasks.append(asyncio.create_task(expire_one(b, name, None, ttl, probe=probe, every=0.1)))
            await b.recorder.phase(name, "Active", "Denied", "Failed", within=120)
            issued = parse_time((b.recorder.requests[name].body.get("status") or {}).get("issuedAt"))
            if issued:
                latencies.append(issued - t0)

    await asyncio.gather(*(lane() for _ in range(4)))
    say(f"  burst: {n} filed for one expiry second in {time.time() - began:.1f}s")
    expiry = list(await asyncio.gather(*tasks))
    await b.wait_clean(within=300)
    b.call_rows.append(
        calls_row(
            "(c) issue, then expiry in the same second", before, b.calls.detail(), n, BUDGET["ephemeral"]
        )
    )
    stamps = [x.expires for x in expiry]
    return BurstResult(
        n=n,
        filed=filed,
        to_issued=to_issued,
        to_active_seen=to_active_seen,
        done_to_revoked=done_to_revoked,
        done_all_seen=done_all_seen,
        expiry=expiry,
        expiry_spread=max(stamps) - min(stamps),
        probed=sum(1 for x in expiry if x.refused or x.last_allowed),
        admission_issuing=admission_issuing,
        admission_revoking=admission_revoking,
        issuing_cpu=issuing_cpu,
        revoking_cpu=revoking_cpu,
    )


def burst_table(r: BurstResult) -> str:
    all_issued = max(r.to_issued)
    x = r.expiry
    return "\n".join(
        [
            f"\n**{r.n} ephemeral requests filed at once** (TTL 10m), then `done: true` on all at once\n",
            "| | seconds |\n|---|---:|",
            f"| all {r.n} creates returned (admission included) | {r.filed:.2f} |",
            f"| first issued (`issuedAt`) | {min(r.to_issued):.2f} |",
            f"| all {r.n} issued (`issuedAt`) | {all_issued:.2f} |",
            f"| issuance rate | {r.n / all_issued:.1f} grants/s |",
            f"| all {r.n} Active, as this process's watch saw it | {max(r.to_active_seen):.2f} |",
            f"| `done: true` on all → last `revokedAt` | {max(r.done_to_revoked):.2f} |",
            f"| `done: true` on all → last Completed seen by the watch | {r.done_all_seen:.2f} |",
            "",
            TABLE_HEAD,
            row("filed → issued (`issuedAt`), per request", r.to_issued),
            row("`done: true` on all → `revokedAt`, per request", r.done_to_revoked),
            row("admission answer (dry-run create) while the engine issues", r.admission_issuing),
            row("admission answer (dry-run create) while the engine revokes", r.admission_revoking),
            f"\nCPU per grant, from /proc: filed → all Active: {cpu_per_item(r.issuing_cpu, r.n)}; "
            f"`done` → all Completed seen: {cpu_per_item(r.revoking_cpu, r.n)}",
            f"\n**{r.n} grants expiring within the same second** (`expiresAt` spread "
            f"{r.expiry_spread * 1000:.0f} ms; access reviews every 100 ms for {r.probed} of them)\n",
            TABLE_HEAD,
            row("`revokedAt - expiresAt`", [e.revoked - e.expires for e in x], signed=True),
            row(
                "first refused access review - `expiresAt`",
                [e.refused - e.expires for e in x if e.refused],
                signed=True,
            ),
            row(
                "last allowed access review - `expiresAt`",
                [e.last_allowed - e.expires for e in x if e.last_allowed],
                signed=True,
            ),
            row(
                "phase Expired seen by the watch - `expiresAt`",
                [e.expired_seen - e.expires for e in x],
                signed=True,
            ),
        ]
    )


# --- baseline ---------------------------------------------------------------------------------


async def baseline(b: Bench, n: int) -> str:
    """Round trips of the in-memory API server itself, for scale."""
    gets, reviews = [], []
    async with await Kube.from_dict(b.kubeconfig(b.tokens["deployer"])) as deployer:
        for _ in range(n):
            t = time.time()
            await b.admin.get(NAMESPACES, TARGET)
            gets.append(time.time() - t)
            t = time.time()
            await allowed(deployer)
            reviews.append(time.time() - t)
    return "\n".join(
        [
            TABLE_HEAD,
            row("GET a Namespace (admin)", gets),
            row("SelfSubjectAccessReview (grantee's token)", reviews),
        ]
    )


# --- beside the API server's ceiling ---------------------------------------------------------


def _p(values: Sequence[float], q: float) -> float | None:
    """p50 as the median (as the ceiling reports it), others nearest-rank."""
    if not values:
        return None
    return statistics.median(values) if q == 0.5 else quantile(values, q)


def _ratio_row(label: str, operator: float | None, ceiling: float | None, unit: str) -> str:
    if operator is None or ceiling is None:
        return f"| {label} | | | |"
    scale, fmt = (1000, "{:,.0f} ms") if unit == "ms" else (1, "{:,.1f} grants/s")
    ratio = f"{operator / ceiling:.2f}" if ceiling else ""
    return f"| {label} | {fmt.format(operator * scale)} | {fmt.format(ceiling * scale)} | {ratio} |"


def versus_ceiling(
    issue: Sequence[IssueSample] | None, burst: BurstResult | None, ceiling: dict[str, Any]
) -> str:
    """Each headline figure beside the API server's own for the same calls, and their ratio."""
    lines = [
        "| measure | operator | ceiling | operator ÷ ceiling |",
        "|---|---:|---:|---:|",
    ]
    one = ceiling["one_at_a_time"]
    for mode in ("bind", "ephemeral") if issue else ():
        s = [x for x in issue or () if x.mode == mode]
        allowed = [x.allowed - x.start for x in s]
        refused = [x.done_refused for x in s]
        for q, key in ((0.5, "p50"), (0.99, "p99")):
            lines.append(
                _ratio_row(
                    f"{mode}: issue, one at a time, {key} (created → grantee allowed)",
                    _p(allowed, q),
                    one[mode]["issue"].get(key),
                    "ms",
                )
            )
        for q, key in ((0.5, "p50"), (0.99, "p99")):
            lines.append(
                _ratio_row(
                    f"{mode}: `done` → refused, {key} (ceiling: delete RoleBinding → refused)",
                    _p(refused, q),
                    one[mode]["refused"].get(key),
                    "ms",
                )
            )
    found = {(b["mode"], b["n"]): b for b in ceiling["burst"]}
    eph, bind = (
        found.get(("ephemeral", burst.n)) if burst else None,
        found.get(("bind", burst.n)) if burst else None,
    )
    if burst is not None:
        issued = burst.n / max(burst.to_issued)
        revoked = burst.n / max(burst.done_to_revoked)
        lines += [
            _ratio_row(
                f"burst of {burst.n}: issuance (ceiling: ephemeral-like creates)",
                issued,
                eph and eph["create_grants_per_s"],
                "rate",
            ),
            _ratio_row(
                f"burst of {burst.n}: issuance (ceiling: bind-like creates)",
                issued,
                bind and bind["create_grants_per_s"],
                "rate",
            ),
            _ratio_row(
                f"burst of {burst.n}: revocation, to the last `revokedAt` (ceiling: RoleBindings deleted)",
                revoked,
                eph and eph["cut_grants_per_s"],
                "rate",
            ),
            _ratio_row(
                f"burst of {burst.n}: revocation, to the last `revokedAt` (ceiling: all objects deleted)",
                revoked,
                eph and eph["delete_grants_per_s"],
                "rate",
            ),
        ]
    concurrency = ceiling["burst"][0]["concurrency"] if ceiling["burst"] else None
    lines.append(
        "\nLatencies: operator ÷ ceiling is how many times longer the operator takes; rates: the "
        "share of the ceiling's rate the operator reaches. p99 is nearest-rank (the slowest "
        f"sample below 100). The operator's burst is of ephemeral grants (revocation rows: the "
        "ceiling's ephemeral-like burst, same size); the ceiling's runs "
        f"{concurrency} concurrent workers. The operator's calls per grant are below; the "
        "ceiling's: " + ", ".join(f"{m} {v['sent']:.0f}" for m, v in ceiling["calls_per_grant"].items()) + "."
    )
    return "\n".join(lines)


# --- running ----------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, where: Target, operator: OperatorProcess) -> str:
    kubeconfig = where.kubeconfig
    ceiling: dict[str, Any] | None = None
    if not args.no_ceiling:
        # First, with no operator running: the API server's own figures for the same calls.
        t = time.monotonic()
        ceiling = await measure_ceiling(
            where,
            n=args.ceiling_n,
            concurrency=args.concurrency,
            bursts=(args.burst,) if "burst" in args.only else (),
        )
        say(f"  ceiling measured in {time.monotonic() - t:.0f}s")
    await operator.start()
    async with await Kube.from_dict(kubeconfig(None)) as admin:
        await wait_for_webhooks(admin, within=60)
        for doc in world(max(1000, args.burst)):
            with contextlib.suppress(AlreadyExists):
                await admin.create(BY_KIND[doc["kind"]], doc)
        # The policy must be in the operator's view before the first request is decided.
        await asyncio.sleep(0.5)
        tokens = {
            name: await request_token(admin, CI, name, seconds=3600)
            for name in ["pipeline", "deployer", *(f"worker-{i:02d}" for i in range(WORKERS))]
        }
        recorder = Recorder(admin)
        recorder.start()
        async with await Kube.from_dict(kubeconfig(tokens["pipeline"])) as pipeline:
            b = Bench(admin, pipeline, recorder, kubeconfig, tokens, where.calls, operator.pid)
            sections = [f"### API server round trips (baseline)\n\n{await baseline(b, 50)}"]
            issue: list[IssueSample] | None = None
            burst: BurstResult | None = None
            try:
                if "issue" in args.only:
                    t = time.monotonic()
                    issue = await scenario_issue(b, args.issue)
                    sections.append(
                        f"### (a) Issue latency ({time.monotonic() - t:.0f}s)\n{issue_table(issue)}"
                    )
                if "expiry" in args.only:
                    t = time.monotonic()
                    expiry = await scenario_expiry(b, args.expiry, args.ttl)
                    sections.append(
                        f"### (b) Revocation lag at expiry, {len(expiry)} grants, TTL "
                        f"{args.ttl:g}-{args.ttl + 2:g}s, filed 0.15 s apart "
                        f"({time.monotonic() - t:.0f}s)\n\n{expiry_table(expiry)}"
                    )
                if "burst" in args.only:
                    t = time.monotonic()
                    estimate = 0.2
                    if "issue" in args.only:
                        eph = [x.active - x.start for x in issue or [] if x.mode == "ephemeral"]
                        estimate = statistics.median(eph) if eph else estimate
                    burst = await scenario_burst(b, args.burst, args.probes, estimate)
                    sections.append(f"### (c) Burst ({time.monotonic() - t:.0f}s)\n{burst_table(burst)}")
            finally:
                await recorder.stop()
            if ceiling is not None:
                sections[:0] = [
                    f"### The operator beside the API server's ceiling, same run\n\n"
                    f"{versus_ceiling(issue, burst, ceiling)}",
                    ceiling_section(ceiling),
                ]
            if where.counted:
                sections.append(
                    "### API calls made by the operator\n\n"
                    + "\n".join([CALLS_HEAD, *b.call_rows])
                    + calls_detail_table(b.call_detail, args.issue)
                )
            else:
                sections.append("### API calls made by the operator\n\nNot counted on this target.")
        forbidden = getattr(where.calls, "forbidden", None)
        if forbidden is not None:
            refused = forbidden()
            sections.append(
                "Operator requests refused by RBAC (403, from the audit log): "
                + (", ".join(f"{k} ({n})" for k, n in refused.most_common()) or "none")
            )
        rss = operator.rss_mb()
        sections.append(f"Operator process memory (RSS) at the end: {rss:.0f} MB" if rss else "")
        if not operator.alive:
            raise RuntimeError(operator.failure())
    return "\n\n".join(sections)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, a smoke test (under 30 s)")
    parser.add_argument("--issue", type=int, help="sequential requests per mode (default 50)")
    parser.add_argument("--expiry", type=int, help="grants expiring one after another (default 30)")
    parser.add_argument("--ttl", type=float, help="shortest TTL in the expiry scenario, s (default 3)")
    parser.add_argument("--burst", type=int, help="requests filed at once (default 200)")
    parser.add_argument("--probes", type=int, help="grants probed with access reviews at mass expiry (20)")
    parser.add_argument(
        "--no-ceiling", action="store_true", help="skip the API server's ceiling (bench/ceiling.py)"
    )
    parser.add_argument("--ceiling-n", type=int, help="ceiling: grants one at a time per mode (30)")
    parser.add_argument("--concurrency", type=int, default=16, help="ceiling: workers in its burst (16)")
    parser.add_argument(
        "--target",
        default="sim",
        help="sim (in-memory), envtest (a real control plane from KUBEBUILDER_ASSETS) or an admin kubeconfig file",
    )
    parser.add_argument(
        "--only", default="issue,expiry,burst", help="comma-separated scenarios: issue,expiry,burst"
    )
    args = parser.parse_args(argv)
    quick = {"issue": 3, "expiry": 4, "ttl": 2.0, "burst": 12, "probes": 3, "ceiling_n": 3}
    full = {"issue": 50, "expiry": 30, "ttl": 3.0, "burst": 200, "probes": 20, "ceiling_n": 30}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not 1 <= args.burst <= 1000:
        parser.error("--burst is between 1 and 1000")
    if args.expiry > WORKERS * 2:
        parser.error(f"--expiry is at most {WORKERS * 2} (bind-mode grantees available: {WORKERS})")

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    machine = describe()
    began = time.monotonic()
    with target(args.target) as where:
        operator = OperatorProcess(where.kubeconfig, where.calls)
        try:
            report = asyncio.run(run(args, where, operator))
        finally:
            operator.stop()
    elapsed = time.monotonic() - began
    print(machine)
    print(f"- tier: {where.name}; the operator as its own process (`zsp run --dev`)")
    print(
        f"- scenarios: issue N={args.issue} per mode, expiry N={args.expiry}, burst N={args.burst}"
        + (
            ""
            if args.no_ceiling
            else f"; ceiling N={args.ceiling_n} per mode, concurrency {args.concurrency}"
        )
        + "; "
        f"wall time {elapsed:.0f}s; load average at the end: {load()}\n"
    )
    print(report)
    print(f"\n### Operator warnings\n\n{operator.warnings()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
