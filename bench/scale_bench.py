"""The operator at scale: thousands of live grants, a restart with half of them overdue.

A world of `--grants` N (10 000) live bind-mode grants is made while no operator runs, object by
object as the operator makes them (core/manifests.py): an AccessRequest (as admin, carrying the
webhook's requester annotation, with an Active status written through the status subresource
as the operator writes it: lifecycle.apply of the allowed decision and the issuance), then as
the operator's own ServiceAccount a TaskGrant owned by the request with the `zsp.dev/revoke`
finalizer, its Role and RoleBinding (labelled with the grant's uid, owned by it), and the
TaskGrant's status recording both with their uids. Half the grants are overdue (`expiresAt` in
the past); `--same-second` of the rest (1 000) expire within one second `--same-second-at` (60) s
after the operator starts; the others 10-30 minutes after it.

Then the operator starts (`zsp run --dev`, its own process, bench/targets.py) and this measures:

  (2) restart: process start -> every overdue RoleBinding deleted, beside the target
      0.5 x (N / the API server's RoleBinding deletes/s at concurrency 16) + 2 s, the ceiling
      measured by bench/ceiling.py in the same run before the world is built; the grants not
      overdue still there; the operator's memory once settled;
  (3) the same-second grants: RoleBinding deletion - `expiresAt` (server time of the operator's
      delete from the audit log on envtest, and the arrival of this process's watch event);
  (4) a hand-made RoleBinding carrying a live grant's labels (not the binding it recorded),
      created as admin: time until it is deleted, 5 tries;
  (5) memory (VmRSS): idle (the operator once on the empty cluster, `--skip-rss-idle` skips it),
      with the world loaded, and after the remaining grants end (`spec.done: true` on their
      requests, the time the operator takes to revoke them all);
  (6) the operator's API calls during (2)-(5), by verb and resource (the API server's count:
      audit log on envtest, request hook on sim), lists with their time since the start.

    python bench/scale_bench.py --target envtest                                  # full run
    python bench/scale_bench.py --target envtest --grants 2000 --same-second 500  # a shorter one
    python bench/scale_bench.py --quick                                           # smoke test, sim
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ceiling import ceiling_section as render_ceiling
from ceiling import in_parallel, measure_ceiling, say, summary
from lifecycle_bench import CI, TARGET, WORKERS, request_body, world
from machine import CPUS, control_plane, describe, load, machine_cpu, process_cpu
from targets import AuditLogCalls, Kubeconfig, OperatorProcess, Target, operator_identity, target

from zsp_operator.core import constants as c
from zsp_operator.core import lifecycle, manifests
from zsp_operator.core.annotations import encode_requester
from zsp_operator.core.grantindex import GrantIndex
from zsp_operator.core.lifecycle import Decided, Issued, set_condition
from zsp_operator.core.models import (
    AccessPolicy,
    AccessRequest,
    AccessRequestStatus,
    NamespacedName,
    ObjectRef,
    TaskGrant,
    TaskGrantSpec,
    UserInfo,
    format_time,
)
from zsp_operator.core.policy import Outcome, decide
from zsp_operator.engine.grant_objects import created_object
from zsp_operator.kube import AlreadyExists, Kube
from zsp_operator.kube.identity import wait_for_webhooks
from zsp_operator.kube.resources import (
    ACCESS_REQUESTS,
    BY_KIND,
    MUTATING_WEBHOOKS,
    ROLE_BINDINGS,
    ROLES,
    TASK_GRANTS,
    VALIDATING_WEBHOOKS,
    Resource,
)

TTL = timedelta(hours=1)  # every request asks for 1h (the policy's maxTTL): issuedAt = expiresAt - 1h
REQUESTER = UserInfo(
    username=f"system:serviceaccount:{CI}:pipeline",
    groups=["system:serviceaccounts", f"system:serviceaccounts:{CI}", "system:authenticated"],
)
MANAGED = f"{c.LABEL_MANAGED_BY}={c.OPERATOR_NAME}"
CEILING_CONCURRENCY = 16
HAND_MADE_TRIES = 5


# --- numbers ----------------------------------------------------------------------------------


def ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:+,.0f} ms" if signed else f"{value * 1000:,.0f} ms"


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} s"


def mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MB"


def latency_rows(label: str, values: Sequence[float]) -> list[str]:
    """p50, p99, max and min of signed seconds, as one table row in ms."""
    s = summary(values)
    if not s.get("n"):
        return [f"| {label} | 0 | | | | |"]
    cells = " | ".join(f"{s[k] * 1000:+,.0f}" for k in ("p50", "p99", "max", "min"))
    return [f"| {label} | {int(s['n'])} | {cells} |"]


LATENCY_HEAD = "| | n | p50 ms | p99 ms | max ms | min ms |\n|---|---:|---:|---:|---:|---:|"


# --- the world ----------------------------------------------------------------------------------


@dataclass
class Grant:
    """One grant of the world: which group, when it expires, and the names and uids it got."""

    index: int
    group: str  # overdue, later, same-second
    request: str  # AccessRequest and TaskGrant name
    grantee: str
    expires: float = 0.0  # epoch seconds
    binding: str = ""  # RoleBinding (and Role) name
    request_uid: str = ""
    grant_uid: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    role_ref: dict[str, Any] = field(default_factory=dict)
    subjects: list[dict[str, Any]] = field(default_factory=list)


def scale_world() -> list[dict[str, Any]]:
    """lifecycle_bench's namespaces, ServiceAccounts and policy, without the policy's limits:
    thousands of grants share 41 grantees, one requester and one policy."""
    docs = world()
    for doc in docs:
        if doc["kind"] == c.KIND_POLICY:
            doc["spec"].pop("limits", None)
    return docs


class WorldBuilder:
    """Makes grants as the operator would have made them, while no operator runs."""

    def __init__(
        self, admin: Kube, op: Kube, policy: AccessPolicy, labels: dict[str, dict[str, str]]
    ) -> None:
        self.admin = admin
        self.op = op
        self.policy = policy
        self.labels = labels
        self.index = GrantIndex()
        self.calls = 0

    async def make(self, g: Grant) -> None:
        body = request_body(g.request, ttl="1h", grantee=g.grantee)
        body["metadata"]["annotations"] = {c.ANNOTATION_REQUESTER: encode_requester(REQUESTER)}
        created = await self.admin.create(ACCESS_REQUESTS, body)
        request = AccessRequest.model_validate(created)
        request.status.requester = REQUESTER
        expires = datetime.fromtimestamp(g.expires, UTC)
        issued = expires - TTL
        decision = decide(request, [self.policy], self.index, self.labels, issued)
        if decision.outcome is not Outcome.ALLOWED or decision.ttl is None:
            raise RuntimeError(f"{g.request}: the benchmark policy does not allow it: {decision.reason}")
        identity = NamespacedName(namespace=CI, name=g.grantee)
        spec = TaskGrantSpec(
            request=ObjectRef(name=request.name, uid=request.metadata.uid),
            policy=decision.policy or "",
            mode="bind",
            identity=identity,
            permission=decision.permission,
            rules=list(decision.rules),
            cluster_role=decision.cluster_role,
            requester=REQUESTER,
            expires_at=expires,
            persistence_capable=decision.persistence_capable,
            break_glass=decision.break_glass,
        )
        grant = TaskGrant.model_validate(
            await self.op.create(TASK_GRANTS, manifests.task_grant(request, spec))
        )
        name = manifests.object_name(request)
        role = await self.op.create(ROLES, manifests.role(grant, name, spec.rules))
        ref = manifests.role_ref("Role", name)
        binding = await self.op.create(ROLE_BINDINGS, manifests.role_binding(grant, name, ref, identity))
        objects = [created_object(ROLES, role), created_object(ROLE_BINDINGS, binding)]
        ready = set_condition(
            [], c.COND_READY, "True", c.REASON_ISSUED, "privilege is live", issued, grant.metadata.generation
        )
        status = {
            "objects": [o.to_wire() for o in objects],
            "issuedAt": format_time(issued),
            "conditions": [cond.to_wire() for cond in ready],
        }
        await self.op.patch(TASK_GRANTS, grant.name, {"status": status}, grant.namespace, status=True)
        # The request's status as the operator writes it: the allowed decision with the issuance.
        generation = request.metadata.generation
        decided = Decided(
            outcome="allowed",
            reason=decision.reason,
            policy=decision.policy,
            requester=REQUESTER,
            rules=decision.rules,
            persistence_capable=decision.persistence_capable,
            break_glass=decision.break_glass,
            at=issued,
        )
        event = Issued(
            grant=ObjectRef(name=grant.name, uid=grant.metadata.uid),
            identity=identity,
            issued_at=issued,
            expires_at=expires,
        )
        active = lifecycle.apply(AccessRequestStatus(), decided, issued, generation)
        active = lifecycle.apply(active, event, issued, generation)
        if active.phase is None or active.phase.value != "Active":
            raise RuntimeError(f"{g.request}: the status built is {active.phase}, not Active")
        await self.admin.patch(
            ACCESS_REQUESTS, request.name, {"status": active.to_wire()}, TARGET, status=True
        )
        self.calls += 6
        g.binding = name
        g.request_uid = request.metadata.uid
        g.grant_uid = grant.metadata.uid
        g.labels = dict(binding["metadata"]["labels"])
        g.role_ref = dict(binding["roleRef"])
        g.subjects = list(binding["subjects"])


def plan(n: int, same_second: int) -> list[Grant]:
    overdue = n // 2
    same = min(same_second, n - overdue)
    groups = ["overdue"] * overdue + ["later"] * (n - overdue - same) + ["same-second"] * same
    return [Grant(i, group, f"scale-{i:05d}", f"worker-{i % WORKERS:02d}") for i, group in enumerate(groups)]


@dataclass
class WorldResult:
    seconds: float
    grants: int
    objects: int
    calls: int
    by_group: dict[str, float]  # group -> seconds it took
    same_second_at: float  # epoch: the second the same-second group shares (its first expiresAt)


async def build_world(
    b: WorldBuilder, grants: list[Grant], concurrency: int, same_second_after: float, rng: random.Random
) -> WorldResult:
    """Overdue grants first, then the later ones, then the same-second ones: each group's expiry
    is set when it starts, from the operator's start as the rate so far predicts it."""
    began = time.time()
    done = 0
    by_group: dict[str, float] = {}
    same_second_at = 0.0

    async def one(g: Grant) -> None:
        nonlocal done
        await b.make(g)
        done += 1
        if done % 1000 == 0:
            say(f"  world: {done} of {len(grants)} grants ({done / (time.time() - began):.0f} grants/s)")

    for group in ("overdue", "later", "same-second"):
        members = [g for g in grants if g.group == group]
        if not members:
            continue
        now = time.time()
        rate = done / (now - began) if done else 40.0
        start_estimate = now + (len(grants) - done) / rate + 3  # and the watches' start
        if group == "overdue":
            for g in members:
                g.expires = now - rng.uniform(1, 600)
        elif group == "later":
            for g in members:
                g.expires = start_estimate + rng.uniform(600, 1800)
        else:
            same_second_at = float(int(start_estimate + same_second_after) + 1)
            for i, g in enumerate(members):
                g.expires = same_second_at + 0.9 * i / len(members)
        t = time.time()
        await in_parallel(members, one, concurrency)
        by_group[group] = time.time() - t
    elapsed = time.time() - began
    return WorldResult(elapsed, len(grants), 4 * len(grants), b.calls, by_group, same_second_at)


async def clear_webhooks(admin: Kube) -> list[str]:
    """Webhook configurations an earlier `zsp run --dev` registered (named after the API group)
    point at a server that is gone; with them in place no AccessRequest could be created."""
    removed = []
    for res in (VALIDATING_WEBHOOKS, MUTATING_WEBHOOKS):
        for body in await admin.list(res):
            name = body["metadata"]["name"]
            if name == c.GROUP:
                await admin.delete(res, name)
                removed.append(f"{res.kind} {name}")
            else:
                say(f"  note: {res.kind} {name} is registered (not the operator's)")
    return removed


# --- watching ------------------------------------------------------------------------------------


class Watch:
    """One kind in the target namespace, as admin, from now on (no replay of what exists):
    when this process first saw each name added and deleted."""

    def __init__(self, admin: Kube, res: Resource, selector: str | None = MANAGED) -> None:
        self.admin = admin
        self.res = res
        self.selector = selector
        self.added: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self.restarts = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pages = self.admin.list_pages(self.res, TARGET, limit=1)
        _, version = await anext(pages)
        await pages.aclose()
        self._task = asyncio.create_task(self._follow(version))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _follow(self, version: str | None) -> None:
        while True:
            try:
                async for kind, obj in self.admin.watch(
                    self.res,
                    TARGET,
                    label_selector=self.selector,
                    resource_version=version,
                    timeout_seconds=600,
                ):
                    now = time.time()
                    meta = obj.get("metadata") or {}
                    version = meta.get("resourceVersion") or version
                    if kind == "DELETED":
                        self.deleted.setdefault(meta["name"], now)
                    elif kind == "ADDED":
                        self.added.setdefault(meta["name"], now)
                    self._changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a dropped or expired watch: pick up from a fresh version
                self.restarts += 1
                say(f"  watch of {self.res.kind} restarted: {err}")
                pages = self.admin.list_pages(self.res, TARGET, limit=1)
                _, version = await anext(pages)
                await pages.aclose()

    async def until_deleted(self, names: Sequence[str], within: float, alive: Any = None) -> bool:
        """Wait until every name was seen deleted; False on timeout or when `alive()` says no."""
        deadline = time.monotonic() + within
        missing = [x for x in names if x not in self.deleted]
        while missing:
            left = deadline - time.monotonic()
            if left <= 0 or (alive is not None and not alive()):
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 1.0))
            missing = [x for x in missing if x not in self.deleted]
        return True


class Memory:
    """The operator's VmRSS and CPU time, and the machine's busy CPU time, every half second."""

    def __init__(self, operator: OperatorProcess) -> None:
        self.operator = operator
        self.samples: list[tuple[float, float]] = []  # (time, RSS MB)
        self.cpu: list[tuple[float, float, float, float]] = []  # (time, operator CPU s, busy s, all s)
        # CPU seconds of the other processes on the machine that matter, by name: (time, seconds).
        self.others: dict[str, list[tuple[float, float]]] = {}
        self._pids = {"this benchmark": os.getpid(), **control_plane()}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        async def sample() -> None:
            while True:
                now, rss = time.time(), self.operator.rss_mb()
                if rss is not None:
                    self.samples.append((now, rss))
                used = process_cpu(self.operator.pid)
                if used is not None:
                    self.cpu.append((now, used, *machine_cpu()))
                for name, pid in self._pids.items():
                    other = process_cpu(pid)
                    if other is not None:
                        self.others.setdefault(name, []).append((now, other))
                await asyncio.sleep(0.5)

        self._task = asyncio.create_task(sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def peak(self, since: float = 0.0, until: float = float("inf")) -> float | None:
        values = [rss for t, rss in self.samples if since <= t <= until]
        return max(values) if values else None

    def load(self, since: float, until: float) -> tuple[float, float] | None:
        """(operator CPU in cores, the machine's busy share) between two times."""
        inside = [x for x in self.cpu if since <= x[0] <= until]
        if len(inside) < 2:
            return None
        (t0, op0, busy0, all0), (t1, op1, busy1, all1) = inside[0], inside[-1]
        return (op1 - op0) / max(t1 - t0, 1e-9), (busy1 - busy0) / max(all1 - all0, 1e-9)

    def other_load(self, since: float, until: float) -> dict[str, float]:
        """CPU in cores of the other processes between two times."""
        found = {}
        for name, samples in self.others.items():
            inside = [x for x in samples if since <= x[0] <= until]
            if len(inside) >= 2:
                found[name] = (inside[-1][1] - inside[0][1]) / max(inside[-1][0] - inside[0][0], 1e-9)
        return found


class TimedOperator(OperatorProcess):
    """The operator process, with the moment it was launched."""

    launched: float = 0.0

    def _launch(self, command: list[str]) -> None:
        self.launched = time.time()
        super()._launch(command)


# --- the audit log (envtest): server-side times of the operator's calls ------------------------


@dataclass
class AuditTimes:
    deletes: dict[str, float] = field(default_factory=dict)  # RoleBinding name -> the delete completed
    lists: list[tuple[float, str]] = field(default_factory=list)  # (completed, request URI)


def _stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["stageTimestamp"].replace("Z", "+00:00")).timestamp()


def audit_files(calls: Any) -> list[Path]:
    """Every file of the audit log, oldest first: kube-apiserver rotates it at 100 MB (its default
    size limit), keeping the old ones beside it (`audit-<time>.log`), so one file is not all."""
    if not isinstance(calls, AuditLogCalls) or not calls.path.exists():
        return []
    return sorted(calls.path.parent.glob("audit*.log"), key=lambda x: x.stat().st_mtime)


def audit_times(calls: Any, since: float) -> AuditTimes | None:
    """The operator's RoleBinding deletes and lists after `since`, from kube-apiserver's audit log."""
    files = audit_files(calls)
    if not files:
        return None
    found = AuditTimes()
    for path in files:
        with path.open("rb") as log:
            for line in log:
                if not line.endswith(b"\n"):
                    break
                event = json.loads(line)
                if event.get("stage") != "ResponseComplete" or event.get("verb") not in ("delete", "list"):
                    continue
                at = _stamp(event)
                if at < since:
                    continue
                ref = event.get("objectRef") or {}
                if event["verb"] == "list":
                    found.lists.append((at, event.get("requestURI", "")))
                elif (
                    ref.get("resource") == "rolebindings"
                    and (event.get("responseStatus") or {}).get("code", 200) < 300
                ):
                    found.deletes.setdefault(ref.get("name", ""), at)
    found.lists.sort()
    return found


class WindowCalls(AuditLogCalls):
    """targets.AuditLogCalls' count, of one audit file, for the requests completed in a time window."""

    def __init__(self, path: Path, since: float, until: float) -> None:
        super().__init__(path)
        self.since, self.until = since, until

    def _count(self, event: dict[str, Any]) -> None:
        if event.get("stage") == "ResponseComplete" and self.since <= _stamp(event) <= self.until:
            super()._count(event)


def calls_between(calls: Any, since: float, until: float) -> tuple[Counter[str], Counter[str]] | None:
    """The operator's calls by verb, and by verb and resource, between two times (envtest)."""
    files = audit_files(calls)
    if not files:
        return None
    by_verb: Counter[str] = Counter()
    detail: Counter[str] = Counter()
    for path in files:
        window = WindowCalls(path, since, until)
        by_verb += window.snapshot()
        detail += window.detail()
    return by_verb, detail


_KOPF_LINE = re.compile(r"^(?P<date>\S+ \S+) INFO kopf\S*: Activity 'start' succeeded")


def started_at(operator: OperatorProcess) -> float | None:
    """When the operator's start-up finished (its `start` activity: overdue grants cut, the rest
    re-armed, its informers started), from its log."""
    for line in operator.log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _KOPF_LINE.match(line)
        if match:
            return datetime.strptime(match["date"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


# --- the run --------------------------------------------------------------------------------------


@dataclass
class Report:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # measure, result, target, ceiling
    sections: list[str] = field(default_factory=list)
    audit: AuditTimes | None = None  # the operator's deletes and lists after its start (envtest)
    startup_done: float | None = None  # when its start-up finished, from its log

    def add(self, measure: str, result: str, target: str = "", ceiling: str = "") -> None:
        self.rows.append((measure, result, target, ceiling))


async def idle_rss(kubeconfig: Kubeconfig, where: Target) -> float | None:
    """The operator on the empty cluster: its memory once its webhooks answer and it has settled."""
    operator = OperatorProcess(kubeconfig, where.calls)
    try:
        await operator.start()
        async with await Kube.from_dict(kubeconfig(None)) as admin:
            await wait_for_webhooks(admin, within=120)
        await asyncio.sleep(5)
        samples = []
        for _ in range(6):
            samples.append(operator.rss_mb())
            await asyncio.sleep(0.5)
        if not operator.alive:
            raise RuntimeError(operator.failure())
        values = [x for x in samples if x is not None]
        return max(values) if values else None
    finally:
        operator.stop()


async def run(args: argparse.Namespace, where: Target, report: Report, operator: TimedOperator) -> None:
    kubeconfig = where.kubeconfig
    rng = random.Random(7)
    n = args.grants

    # (5) idle: the operator once on the empty cluster.
    rss_idle = None
    if not args.skip_rss_idle:
        rss_idle = await idle_rss(kubeconfig, where)
        say(f"  idle operator: {mb(rss_idle)}")

    # The ceiling, before the world, with no operator running.
    t = time.monotonic()
    ceiling = await measure_ceiling(
        where,
        n=args.ceiling_n,
        concurrency=CEILING_CONCURRENCY,
        bursts=(args.ceiling_burst,),
        burst_modes=("bind",),
    )
    cut_rate = next(b for b in ceiling["burst"] if b["mode"] == "bind")["cut_grants_per_s"]
    say(
        f"  ceiling: {cut_rate:.0f} RoleBinding deletes/s at concurrency {CEILING_CONCURRENCY} ({time.monotonic() - t:.0f}s)"
    )

    async with await Kube.from_dict(kubeconfig(None)) as admin:
        removed = await clear_webhooks(admin)
        for doc in scale_world():
            with contextlib.suppress(AlreadyExists):
                await admin.create(BY_KIND[doc["kind"]], doc)
        policy = AccessPolicy.model_validate(next(d for d in scale_world() if d["kind"] == c.KIND_POLICY))
        labels = {
            d["metadata"]["name"]: d["metadata"].get("labels") or {}
            for d in scale_world()
            if d["kind"] == "Namespace"
        }
        op_token = await operator_identity(admin, where.calls)
        grants = plan(n, args.same_second)
        async with await Kube.from_dict(kubeconfig(op_token)) as op:
            builder = WorldBuilder(admin, op, policy, labels)
            w = await build_world(builder, grants, args.concurrency, args.same_second_at, rng)
        say(
            f"  world: {n} grants in {w.seconds:.0f}s ({n / w.seconds:.0f} grants/s, {w.calls / w.seconds:.0f} calls/s)"
        )
        report.sections.append(world_section(w, args, removed))

        bindings, task_grants = Watch(admin, ROLE_BINDINGS), Watch(admin, TASK_GRANTS)
        await bindings.start()
        await task_grants.start()
        before_calls, before_detail = where.calls.snapshot(), where.calls.detail()
        memory = Memory(operator)
        spy: subprocess.Popen[bytes] | None = None
        try:
            await operator.start()
            memory.start()
            if args.py_spy:
                spy = profile(args.py_spy, operator.pid)
            await measure(
                args,
                where,
                report,
                admin,
                operator,
                memory,
                bindings,
                task_grants,
                grants,
                w,
                cut_rate,
                rss_idle,
            )
            calls, detail = where.calls.snapshot() - before_calls, where.calls.detail() - before_detail
            counted = calls_between(where.calls, operator.launched, time.time())
            if counted is not None:
                calls, detail = counted
            report.sections.append(calls_section(where, report, operator.launched, calls, detail, n))
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
                report.sections.append(
                    f"Profiled with py-spy at {SPY_RATE} Hz while measuring: {args.py_spy}"
                )
            await memory.stop()
            await bindings.stop()
            await task_grants.stop()
    report.sections.append(render_ceiling(ceiling))


async def measure(
    args: argparse.Namespace,
    where: Target,
    report: Report,
    admin: Kube,
    operator: TimedOperator,
    memory: Memory,
    bindings: Watch,
    task_grants: Watch,
    grants: list[Grant],
    w: WorldResult,
    cut_rate: float,
    rss_idle: float | None,
) -> None:
    n = len(grants)
    overdue = [g for g in grants if g.group == "overdue"]
    later = [g for g in grants if g.group == "later"]
    same = [g for g in grants if g.group == "same-second"]
    launched = operator.launched

    # (2) restart with half overdue.
    say(f"  operator started; waiting for {len(overdue)} overdue RoleBindings to go")
    gone = await bindings.until_deleted(
        [g.binding for g in overdue], within=args.timeout, alive=lambda: operator.alive
    )
    if not operator.alive:
        raise RuntimeError(operator.failure())
    if not gone:
        left = sum(1 for g in overdue if g.binding not in bindings.deleted)
        raise TimeoutError(f"{left} overdue RoleBindings still there {args.timeout:.0f}s after the start")
    seen = [bindings.deleted[g.binding] - launched for g in overdue]
    say(f"  all overdue RoleBindings gone {max(seen):.1f}s after the start (as the watch saw it)")
    # Their TaskGrants go at the end of each revocation: that is when the operator has settled.
    await task_grants.until_deleted(
        [g.request for g in overdue], within=args.timeout, alive=lambda: operator.alive
    )
    overdue_done = time.time()
    present = {b["metadata"]["name"] for b in await admin.list(ROLE_BINDINGS, TARGET, label_selector=MANAGED)}
    live_grants = {
        g["metadata"]["name"]
        for g in await admin.list(TASK_GRANTS, TARGET)
        if not g["metadata"].get("deletionTimestamp")
    }
    waiting = [g for g in later + same if g.expires > time.time()]
    kept_bindings = sum(1 for g in waiting if g.binding in present)
    kept_grants = sum(1 for g in waiting if g.request in live_grants)
    wrongly = sum(1 for g in later if g.binding in bindings.deleted)
    settle = min(5.0, max(0.0, (w.same_second_at - 3) - time.time())) if same else 5.0
    await asyncio.sleep(settle)
    rss_settled, live_then = operator.rss_mb(), len(waiting)
    ahead = w.same_second_at - launched

    # (3) same-second expiry.
    if same:
        say(f"  waiting for {len(same)} grants expiring {ahead:.0f}s after the start")
        await bindings.until_deleted(
            [g.binding for g in same], within=max(0.0, w.same_second_at - time.time()) + args.timeout,
            alive=lambda: operator.alive,
        )  # fmt: skip
        if not operator.alive:
            raise RuntimeError(operator.failure())

    # (4) hand-made bindings with a live grant's labels.
    hand_made: list[tuple[str, float, float, float | None]] = []  # name, sent, returned, seen deleted
    for i, g in enumerate(rng_pick(later, HAND_MADE_TRIES)):
        name = f"hand-made-{i}-{int(time.time())}"
        body = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": TARGET, "labels": dict(g.labels)},
            "roleRef": g.role_ref,
            "subjects": g.subjects,
        }
        sent = time.time()
        await admin.create(ROLE_BINDINGS, body)
        returned = time.time()
        await bindings.until_deleted([name], within=15)
        hand_made.append((name, sent, returned, bindings.deleted.get(name)))
        await asyncio.sleep(0.5)
    still_kept = sum(1 for g in later if g.binding not in bindings.deleted)
    rss_world_peak = memory.peak(launched)

    # (5) end the rest: `spec.done: true` on their requests.
    ending = [g for g in later if g.request not in task_grants.deleted]
    say(f"  ending {len(ending)} grants with spec.done: true")
    began_end = time.time()

    async def done(g: Grant) -> None:
        await admin.patch(ACCESS_REQUESTS, g.request, {"spec": {"done": True}}, TARGET)

    patched = await in_parallel(ending, done, args.concurrency)
    ended = await task_grants.until_deleted(
        [g.request for g in ending], within=args.timeout, alive=lambda: operator.alive
    )
    if not operator.alive:
        raise RuntimeError(operator.failure())
    last_grant = max((task_grants.deleted.get(g.request, 0.0) for g in ending), default=began_end)
    last_binding = max((bindings.deleted.get(g.binding, 0.0) for g in ending), default=began_end)
    end_seconds = last_grant - began_end
    await asyncio.sleep(10)
    rss_after = operator.rss_mb()

    # Server-side times from the audit log (envtest).
    audit = audit_times(where.calls, launched - 1)
    startup_done = started_at(operator)

    def deleted_at(g: Grant) -> float | None:
        if audit is not None and g.binding in audit.deletes:
            return audit.deletes[g.binding]
        return bindings.deleted.get(g.binding)

    server = audit is not None
    overdue_gone = [deleted_at(g) for g in overdue]
    overdue_last = max(x for x in overdue_gone if x is not None) - launched
    target2 = 0.5 * (n / cut_rate) + 2
    first_delete = min(x for x in overdue_gone if x is not None) - launched
    op_rate = len(overdue) / max(1e-9, overdue_last - first_delete)

    report.add(
        f"(2) restart, {len(overdue):,} of {n:,} overdue: process start → last overdue RoleBinding deleted"
        + (" (server time)" if server else " (watch)"),
        seconds(overdue_last),
        f"≤ {seconds(target2)} (0.5 x N ÷ ceiling + 2 s)",
        f"{cut_rate:,.0f} RoleBinding deletes/s",
    )
    report.add(
        "(2) the operator's overdue RoleBinding deletes/s (first → last)",
        f"{op_rate:,.0f}/s",
        "",
        f"{cut_rate:,.0f}/s",
    )
    report.add(
        f"(2) grants not overdue still live after it ({len(waiting):,} not yet due)",
        f"{kept_bindings:,} RoleBindings, {kept_grants:,} TaskGrants; {wrongly} later grants' bindings deleted",
        f"{len(waiting):,}, 0 deleted",
    )
    lag = [(deleted_at(g) or 0) - g.expires for g in same if deleted_at(g) is not None]
    lag_seen = [bindings.deleted[g.binding] - g.expires for g in same if g.binding in bindings.deleted]
    s = summary(lag)
    if same:
        report.add(
            f"(3) {len(same):,} grants in one second, RoleBinding deleted - `expiresAt`, p50 / p99 / max"
            + (" (server time)" if server else " (watch)"),
            " / ".join(ms(s.get(k), signed=True) for k in ("p50", "p99", "max")) if s.get("n") else "n/a",
            "p99 ≤ 0",
        )
    hm = [(deleted_at_name(audit, name) or seen_at) - sent for name, sent, _, seen_at in hand_made if seen_at]
    hm_seen = [seen_at - sent for _, sent, _, seen_at in hand_made if seen_at]
    hs = summary(hm)
    report.add(
        f"(4) hand-made binding with a live grant's labels: create sent → deleted, p50 / max ({len(hm)} of "
        f"{len(hand_made)} deleted)",
        " / ".join(ms(hs.get(k)) for k in ("p50", "max")) if hs.get("n") else "not deleted",
        "< 200 ms",
    )
    report.add("(5) RSS idle (empty cluster)", mb(rss_idle) if rss_idle else "skipped", "")
    report.add(
        f"(5) RSS peak, from the start with {n:,} grants loaded through (4)", mb(rss_world_peak), "< 150 MB"
    )
    report.add(f"(5) RSS settled after the restart ({live_then:,} live grants)", mb(rss_settled), "< 150 MB")
    report.add(
        f"(5) `spec.done: true` on {len(ending):,} → last TaskGrant gone", f"{seconds(end_seconds)} "
        f"({len(ending) / max(end_seconds, 1e-9):,.0f} grants/s)", "", f"{cut_rate:,.0f} RoleBinding deletes/s",
    )  # fmt: skip
    report.add(
        "(5) RSS 10 s after all grants ended",
        mb(rss_after),
        f"near idle ({mb(rss_idle)})" if rss_idle else "near idle",
    )

    # The detail sections.
    lines = [
        f"### (2) Restart with {len(overdue):,} of {n:,} grants overdue\n",
        "| | seconds after the process start |\n|---|---:|",
        f"| start-up finished (kopf's `start` activity, operator log) | {seconds(startup_done - launched) if startup_done else 'n/a'} |",
        f"| first overdue RoleBinding deleted{' (server)' if server else ''} | {seconds(first_delete)} |",
        f"| last overdue RoleBinding deleted{' (server)' if server else ''} | {seconds(overdue_last)} |",
        f"| last overdue RoleBinding deletion seen by the watch | {seconds(max(seen))} |",
        f"| last overdue TaskGrant gone (revocation finished), seen by the watch | {seconds(overdue_done - launched)} |",
        f"\nTarget 0.5 x {n:,} ÷ {cut_rate:,.0f} + 2 = {target2:.1f} s (the ceiling: bind-like RoleBinding deletes "
        f"at concurrency {CEILING_CONCURRENCY}, same run). After it: {kept_bindings:,} of {len(waiting):,} not-due "
        f"grants' RoleBindings and {kept_grants:,} TaskGrants still there; {still_kept:,} of {len(later):,} later "
        f"grants' RoleBindings were still there after (4).",
    ]
    report.sections.append("\n".join(lines))
    if same:
        delay = (
            [bindings.deleted[g.binding] - audit.deletes[g.binding] for g in same if g.binding in audit.deletes and g.binding in bindings.deleted]
            if audit is not None
            else []
        )  # fmt: skip
        lines = [
            f"### (3) {len(same):,} grants expiring within one second, {ahead:.0f} s after the start\n",
            f"`expiresAt` spread {0.9 * 1000:.0f} ms. Deletion: "
            + (
                "the operator's delete call completing in kube-apiserver's audit log (server), and "
                if server
                else ""
            )
            + "this process's RoleBinding watch event.\n",
            LATENCY_HEAD,
            *(latency_rows("RoleBinding deleted (server) - `expiresAt`", lag) if server else []),
            *latency_rows("RoleBinding DELETED seen by the watch - `expiresAt`", lag_seen),
            *latency_rows("the watch's own delay (seen - server)", delay),
        ]
        report.sections.append("\n".join(lines))
    hm_server = [
        (deleted_at_name(audit, name) or 0) - sent
        for name, sent, _, seen in hand_made
        if deleted_at_name(audit, name)
    ]
    lines = [
        f"### (4) Hand-made RoleBinding with a live grant's labels, {len(hand_made)} tries, {len(later):,} grants live\n",
        "Labels, roleRef and subjects of a live grant's binding, another name; created as admin.\n",
        LATENCY_HEAD,
        *latency_rows("create sent → create returned", [r - s for _, s, r, _ in hand_made]),
        *(latency_rows("create sent → operator's delete completed (server)", hm_server) if server else []),
        *latency_rows("create sent → DELETED seen by the watch", hm_seen),
    ]
    report.sections.append("\n".join(lines))
    lines = [
        "### (5) Memory and ending the rest\n",
        "| | |\n|---|---:|",
        f"| RSS idle, empty cluster | {mb(rss_idle) if rss_idle else 'skipped'} |",
        f"| RSS peak from the start through (4) | {mb(rss_world_peak)} |",
        f"| RSS settled after the restart | {mb(rss_settled)} |",
        f"| RSS 10 s after all grants ended | {mb(rss_after)} |",
        f"| `spec.done: true` patches on {len(ending):,} requests (admin, concurrency {args.concurrency}, "
        f"through the webhooks) | {seconds(patched)} |",
        f"| first patch → last RoleBinding deleted (watch) | {seconds(last_binding - began_end)} |",
        f"| first patch → last TaskGrant gone (watch) | {seconds(end_seconds)} |",
        f"| revocation rate | {len(ending) / max(end_seconds, 1e-9):,.0f} grants/s |",
        f"| all ended | {'yes' if ended else 'no'} |",
    ]
    if memory.samples:
        marks = [("start", launched), ("overdue gone", launched + overdue_last), ("end", time.time())]
        lines.append(
            "\nRSS over time (s after the start → MB): "
            + ", ".join(
                f"{t - launched:.0f}→{rss:.0f}"
                for t, rss in memory.samples[:: max(1, len(memory.samples) // 24)]
            )
            + "; marks: "
            + ", ".join(f"{k} {v - launched:.0f}s" for k, v in marks)
        )
    report.sections.append("\n".join(lines))
    same_last = max((bindings.deleted.get(g.binding, 0.0) for g in same), default=0.0)
    phases = [
        ("(2) process start → last overdue RoleBinding deleted", launched, launched + overdue_last),
        ("(2) process start → every overdue TaskGrant gone", launched, overdue_done),
        ("(3) 15 s before the same second → its last RoleBinding deleted", w.same_second_at - 15, same_last),
        ("(5) first `done` patch → last TaskGrant gone", began_end, last_grant),
    ]
    lines = [
        "### CPU during the phases\n",
        f"The machine has {CPUS} CPUs, shared by the API server, etcd, the controller manager, the operator, "
        "this process (its watches) and whatever else runs there (CPU time from /proc).\n",
    ]
    names = sorted(memory.others)
    lines += [
        "| phase | seconds | operator CPU (cores) | "
        + " | ".join(f"{x} (cores)" for x in names)
        + " | everything else on the machine (cores) | machine busy |",
        "|---|---:|---:|" + "---:|" * len(names) + "---:|---:|",
    ]
    for label, t0, t1 in phases:
        used = memory.load(t0, t1) if t1 > t0 else None
        others = memory.other_load(t0, t1) if t1 > t0 else {}
        cells = " | ".join(f"{others[x]:.2f}" if x in others else "n/a" for x in names)
        mine = f"{used[0]:.2f}" if used else "n/a"
        busy = f"{used[1]:.0%}" if used else "n/a"
        known = sum(others.values()) + (used[0] if used else 0.0)
        rest = f"{max(0.0, used[1] * CPUS - known):.2f}" if used else "n/a"
        lines.append(f"| {label} | {max(0.0, t1 - t0):.1f} | {mine} | {cells} | {rest} | {busy} |")
    report.sections.append("\n".join(lines))
    report.audit, report.startup_done = audit, startup_done


SPY_RATE = 20


def profile(output: str, pid: int | None) -> subprocess.Popen[bytes]:
    """py-spy sampling the operator (collapsed stacks, one line per stack) until interrupted."""
    command = ["py-spy", "record", "--pid", str(pid), "--rate", str(SPY_RATE), "--nonblocking"]
    command += ["--format", "raw", "--output", output]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def deleted_at_name(audit: AuditTimes | None, name: str) -> float | None:
    return audit.deletes.get(name) if audit is not None else None


def rng_pick(items: Sequence[Grant], k: int) -> list[Grant]:
    return random.Random(11).sample(list(items), min(k, len(items)))


def world_section(w: WorldResult, args: argparse.Namespace, removed: list[str]) -> str:
    groups = ", ".join(f"{k} {v:.0f} s" for k, v in w.by_group.items())
    return "\n".join(
        [
            "### (1) The world, made with no operator running\n",
            f"{w.grants:,} bind-mode grants ({w.grants // 2:,} overdue, {args.same_second:,} in one second, the "
            f"rest 10-30 min out), {w.objects:,} objects (AccessRequest, TaskGrant, Role, RoleBinding each), "
            f"{w.calls:,} calls (per grant: create and status patch of the request as admin; TaskGrant, Role, "
            f"RoleBinding and the TaskGrant's status as the operator's ServiceAccount), concurrency "
            f"{args.concurrency}: **{w.seconds:.0f} s**, {w.grants / w.seconds:,.0f} grants/s, "
            f"{w.objects / w.seconds:,.0f} objects/s, {w.calls / w.seconds:,.0f} calls/s ({groups}). "
            f"Webhook configurations left by an earlier run, removed first: {', '.join(removed) or 'none'}.",
        ]
    )


def calls_section(
    where: Target, report: Report, launched: float, calls: Counter[str], detail: Counter[str], n: int
) -> str:
    if not where.counted:
        return "### (6) The operator's API calls\n\nNot counted on this target."
    lines = [
        f"### (6) The operator's API calls, (2)-(5), {n:,} grants revoked\n",
        "| call | count | per grant |\n|---|---:|---:|",
    ]
    for key, count in sorted(detail.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {key} | {count:,} | {count / n:.2f} |")
    total = sum(detail.values())
    events = sum(v for k, v in detail.items() if k.endswith(" events"))
    lines.append(f"| **all** | {total:,} | {total / n:.2f} |")
    lines.append(f"| all but Events | {total - events:,} | {(total - events) / n:.2f} |")
    lines.append("\nBy verb: " + ", ".join(f"{k} {v:,}" for k, v in calls.most_common()))
    audit, startup_done = report.audit, report.startup_done
    if audit is not None:
        cut = startup_done or launched
        early = [(t, u) for t, u in audit.lists if t <= cut]
        late = [(t, u) for t, u in audit.lists if t > cut]
        lines.append(
            f"\n**Lists**: {len(early)} pages during start-up (up to {cut - launched:.1f} s), {len(late)} "
            "after it: the informers' first listing of each kind and the sweeper's first sweep, 500 "
            "a page, then only the sweeper's resync (every 5 min by default) and listings again after "
            "a watch's 410 Gone"
        )
        for label, found in (("during start-up", early), ("after start-up", late)):
            if not found:
                continue
            grouped: Counter[str] = Counter(_list_path(u) for _, u in found)
            lines += ["", f"| list {label} | pages | first at s | last at s |", "|---|---:|---:|---:|"]
            for path, count in grouped.most_common():
                times = [t - launched for t, u in found if _list_path(u) == path]
                lines.append(f"| `{path}` | {count} | {min(times):.1f} | {max(times):.1f} |")
    forbidden = getattr(where.calls, "forbidden", None)
    if forbidden is not None:
        refused = forbidden()
        lines.append(
            "\nOperator requests refused by RBAC (403, whole run): "
            + (", ".join(f"{k} ({v})" for k, v in refused.most_common()) or "none")
        )
    return "\n".join(lines)


def _list_path(uri: str) -> str:
    path, _, query = uri.partition("?")
    keep = [q for q in query.split("&") if q.startswith("labelSelector=")]
    return path + ("?" + "&".join(keep) if keep else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=10_000, help="live grants in the world (10 000)")
    parser.add_argument("--same-second", type=int, default=1000, help="grants expiring in one second (1 000)")
    parser.add_argument(
        "--same-second-at",
        type=float,
        default=60.0,
        help="when they expire, s after the operator's start (60)",
    )
    parser.add_argument(
        "--target",
        default="sim",
        help="sim (in-memory), envtest (KUBEBUILDER_ASSETS) or an admin kubeconfig file",
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="workers building the world and ending grants (32)"
    )
    parser.add_argument(
        "--skip-rss-idle", action="store_true", help="do not start the operator on the empty cluster"
    )
    parser.add_argument(
        "--ceiling-n", type=int, default=10, help="ceiling: grants one at a time per mode (10)"
    )
    parser.add_argument(
        "--ceiling-burst", type=int, default=1000, help="ceiling: bind-like burst size (1 000)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for any step, s (900)")
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="record the operator with py-spy (on PATH) into FILE, collapsed stacks",
    )
    parser.add_argument(
        "--quick", action="store_true", help="200 grants, 50 in one second 20 s out: a smoke test"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.grants, args.same_second, args.same_second_at = 200, 50, 20.0
        args.ceiling_n, args.ceiling_burst = 3, 100
    if args.grants < 2 or not 0 <= args.same_second <= args.grants // 2:
        parser.error("--grants is at least 2 and --same-second at most half of it")
    machine = describe()
    began = time.monotonic()
    report = Report()
    with target(args.target) as where:
        operator = TimedOperator(where.kubeconfig, where.calls)
        try:
            asyncio.run(run(args, where, report, operator))
        finally:
            operator.stop()
            say(f"operator log: {operator.log}")
    elapsed = time.monotonic() - began
    print(f"## Scale: {args.grants:,} live grants, a restart with half overdue\n")
    print(machine)
    print(f"- tier: {where.name}; the operator as its own process (`zsp run --dev`)")
    print(
        f"- grants {args.grants:,}, same second {args.same_second:,} at +{args.same_second_at:g} s, concurrency "
        f"{args.concurrency}, ceiling at concurrency {CEILING_CONCURRENCY} (burst {args.ceiling_burst:,} bind-like); "
        f"wall time {elapsed:.0f}s; load average at the end: {load()}\n"
    )
    print("### Results\n")
    print("| measure | result | target | API server ceiling |\n|---|---:|---|---:|")
    for measure_, result, target_, ceiling_ in report.rows:
        print(f"| {measure_} | {result} | {target_} | {ceiling_} |")
    for section in report.sections:
        print(f"\n{section}")
    print(f"\n### Operator warnings\n\n{operator.warnings()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
