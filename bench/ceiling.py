"""The API server's own ceiling for a grant's work: the same calls, with no operator involved.

A client authenticated as the operator's ServiceAccount (`zsp-system/zsp-operator`, with the
RBAC of `deploy/operator-rbac.yaml`, applied here) makes the objects the operator makes for one
grant, in the operator's order, and nothing else: no AccessRequest, no TaskGrant, no status,
no Events, no reads. Its requests go through the same API Priority and Fairness level and the
same RBAC escalation checks as the operator's, so each operator figure can be given as a ratio
to the figure measured here, on the same target and in the same run.

  bind-like       create Role, create RoleBinding (subject: an existing grantee ServiceAccount);
  ephemeral-like  create ServiceAccount, Role, RoleBinding, TokenRequest, delivery Secret (a
                  kubeconfig of the operator's format holding the new token).

Revocation deletes the RoleBinding first, then the ServiceAccount, the Role and the Secret
(the operator's teardown order), each with a uid precondition as the operator sends them.
The Role carries the benchmark policy's rules (`get, list, patch, update` on apps/deployments)
when the ServiceAccount holds `escalate` on Roles; without it the Role may only hold rules the
ServiceAccount itself holds, so it gets `get, list` on pods instead (the report says which).
The objects carry labels like the operator's but no ownerReferences (there is no TaskGrant to
own them, and the garbage collector would delete objects owned by a missing uid).

Measured:
  (a) one at a time (`--n`, 30 per mode): the creates, then the grantee's own
      SelfSubjectAccessReview polled every 5 ms until allowed (ephemeral: with the new token);
  (b) revocation one at a time: delete the RoleBinding, access review polled every 10 ms until
      refused; and the sequential deletes of all the grant's objects;
  (c) throughput (`--concurrency` 16 workers, each doing one grant's calls in order): `--burst`
      grants created (200 and 1 000), then their RoleBindings deleted (privilege gone), then
      the rest: grants/s, objects/s, calls/s;
  (d) API calls per grant: what this client sends (it knows them), and on a target that counts
      the operator's calls (sim, envtest) the count the API server recorded for its identity.

The grantee's access reviews are its own (not the operator's identity) and are not counted.
Namespaces `zsp-ceiling-target` and `zsp-ceiling-ci` are created and kept (a second run reuses
them); every other object is deleted.

    python bench/ceiling.py --target envtest            # real control plane
    python bench/ceiling.py --target sim --quick        # smoke test
    python bench/ceiling.py --target ~/.kube/config     # a cluster from an admin kubeconfig
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from machine import THIS, control_plane, cpu_per_item, cpu_spent, cpu_times, describe, load
from targets import OPERATOR_USER, Target, install_operator_rbac, operator_identity, target

from zsp_operator.core import constants as c
from zsp_operator.core import manifests
from zsp_operator.kube import AlreadyExists, Kube
from zsp_operator.kube.identity import may, request_token
from zsp_operator.kube.resources import NAMESPACES, ROLE_BINDINGS, ROLES, SECRETS, SERVICE_ACCOUNTS, Resource

TARGET_NS, DELIVERY_NS, GRANTEE = "zsp-ceiling-target", "zsp-ceiling-ci", "deployer"
MANAGED = "zsp-ceiling"  # the labels' managed-by value: not the operator's, so it never touches them
RBAC_GROUP = "rbac.authorization.k8s.io"
# The benchmark policy's permission, as lifecycle_bench grants it; the fallback without escalate.
POLICY_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "patch", "update"]}
]
POLICY_PROBE = ("patch", "deployments", "apps")
HELD_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
HELD_PROBE = ("list", "pods", "")
MODES = ("bind", "ephemeral")
# Calls per grant this client makes as the operator's identity.
CALLS = {
    "bind": {
        "issue": ["create roles", "create rolebindings"],
        "revoke": ["delete rolebindings", "delete roles"],
    },
    "ephemeral": {
        "issue": [
            "create serviceaccounts",
            "create roles",
            "create rolebindings",
            "create token serviceaccounts",
            "create secrets",
        ],
        "revoke": ["delete rolebindings", "delete serviceaccounts", "delete roles", "delete secrets"],
    },
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- numbers ----------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q=0.99: the value 99 % of the samples are at or below)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Seconds: n, p50 (median), p99 (nearest rank: the slowest below 100 samples), max, min, mean."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p99": quantile(values, 0.99),
        "max": max(values),
        "min": min(values),
        "mean": statistics.fmean(values),
    }


TABLE_HEAD = "| | n | p50 ms | p99 ms | max ms | min ms |\n|---|---:|---:|---:|---:|---:|"


def row(label: str, s: dict[str, float]) -> str:
    if not s.get("n"):
        return f"| {label} | 0 | | | | |"
    cells = [s[k] * 1000 for k in ("p50", "p99", "max", "min")]
    return f"| {label} | {int(s['n'])} | " + " | ".join(f"{v:,.0f}" for v in cells) + " |"


# --- one grant's objects ----------------------------------------------------------------------


@dataclass
class Made:
    """What one grant created, in creation order: (resource, namespace, name, uid)."""

    objects: list[tuple[Resource, str, str, str]] = field(default_factory=list)
    token: str | None = None

    def add(self, res: Resource, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        self.objects.append((res, meta["namespace"], meta["name"], meta.get("uid", "")))


def _meta(name: str, namespace: str, grant_uid: str) -> dict[str, Any]:
    """Labels of the operator's shape and size (its managed-by value replaced)."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            c.LABEL_MANAGED_BY: MANAGED,
            c.LABEL_GRANT: name,
            c.LABEL_GRANT_UID: grant_uid,
            c.LABEL_REQUEST_UID: str(uuid.uuid4()),
        },
    }


@dataclass
class Grants:
    """Makes and removes grant-shaped objects as the operator's identity."""

    op: Kube
    rules: list[dict[str, Any]]
    sent: Counter[str] = field(default_factory=Counter)  # calls sent, by verb and resource

    async def _create(self, res: Resource, body: dict[str, Any], made: Made, key: str) -> None:
        made.add(res, await self.op.create(res, body))
        self.sent[key] += 1

    async def issue(self, mode: str, name: str) -> Made:
        """The operator's order: [ServiceAccount], Role, RoleBinding, [TokenRequest, Secret]."""
        made, grant_uid = Made(), str(uuid.uuid4())
        if mode == "ephemeral":
            sa = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(name, TARGET_NS, grant_uid),
                "automountServiceAccountToken": False,
            }
            await self._create(SERVICE_ACCOUNTS, sa, made, "create serviceaccounts")
            subject = {"kind": "ServiceAccount", "name": name, "namespace": TARGET_NS}
        else:
            subject = {"kind": "ServiceAccount", "name": GRANTEE, "namespace": DELIVERY_NS}
        role = {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "Role",
            "metadata": _meta(name, TARGET_NS, grant_uid),
            "rules": self.rules,
        }
        await self._create(ROLES, role, made, "create roles")
        binding = {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "RoleBinding",
            "metadata": _meta(name, TARGET_NS, grant_uid),
            "roleRef": manifests.role_ref("Role", name),
            "subjects": [subject],
        }
        await self._create(ROLE_BINDINGS, binding, made, "create rolebindings")
        if mode == "ephemeral":
            body = manifests.token_request(c.TOKEN_MIN_SECONDS)
            result = await self.op.post(SERVICE_ACCOUNTS, name, "token", body, TARGET_NS)
            self.sent["create token serviceaccounts"] += 1
            made.token = result["status"]["token"]
            conn = self.op.connection
            config = manifests.kubeconfig(
                conn.server, conn.ca_data(), made.token, TARGET_NS, f"{TARGET_NS}/{name}"
            )
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    **_meta(f"{name}-kubeconfig", DELIVERY_NS, grant_uid),
                    "annotations": {"zsp.dev/expires-at": "2099-01-01T00:00:00+00:00"},
                },
                "stringData": {c.DELIVERY_KEY: config},
            }
            await self._create(SECRETS, secret, made, "create secrets")
        return made

    async def cut(self, made: Made) -> None:
        """Delete the grant's RoleBinding (by uid): the privilege is gone."""
        for res, namespace, name, uid in made.objects:
            if res is ROLE_BINDINGS:
                await self.op.delete(res, name, namespace, uid=uid)
                self.sent["delete rolebindings"] += 1

    async def rest(self, made: Made) -> None:
        """Delete the rest in the operator's teardown order: ServiceAccount, Role, Secret."""
        for kind in (SERVICE_ACCOUNTS, ROLES, SECRETS):
            for res, namespace, name, uid in made.objects:
                if res is kind:
                    await self.op.delete(res, name, namespace, uid=uid)
                    self.sent[f"delete {res.plural}"] += 1


# --- (a) and (b): one at a time ---------------------------------------------------------------


async def poll(check: Callable[[], Awaitable[bool]], every: float, within: float) -> float | None:
    """The time the check first held (polling every `every` s), or None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return time.time()
        await asyncio.sleep(every)
    return None


@dataclass
class Probe:
    verb: str
    resource: str
    group: str

    async def allowed(self, kube: Kube) -> bool:
        return await may(kube, self.verb, self.resource, TARGET_NS, self.group) is True


@dataclass
class OneSample:
    creates: float  # the issuing calls, back to back
    issue: float  # first create sent -> grantee's access review allowed
    client: float  # ephemeral: building the new identity's client from its token
    cut_call: float  # the RoleBinding delete call
    refused: float  # delete sent -> grantee's access review refused
    teardown: float  # all deletes, back to back (the RoleBinding's included)


async def one_grant(
    g: Grants, mode: str, name: str, probe: Probe, grantee: Kube | None, config: Any
) -> OneSample:
    if grantee is not None and await probe.allowed(grantee):
        raise RuntimeError(f"{name}: the grantee is allowed before any grant (standing privilege)")
    start = time.time()
    made = await g.issue(mode, name)
    created = time.time()
    client = grantee
    if client is None:  # ephemeral: the new identity's own client, from its token
        assert made.token is not None
        client = await Kube.from_dict(config(made.token))
    ready = time.time()
    try:
        kube = client
        allowed_at = await poll(lambda: probe.allowed(kube), 0.005, 10)
        if allowed_at is None:
            raise RuntimeError(f"{name}: created, but the grantee is never allowed")
        t = time.time()
        await g.cut(made)
        cut_done = time.time()
        refused_at = await poll(lambda: _not(probe.allowed(kube)), 0.01, 10)
        if refused_at is None:
            raise RuntimeError(f"{name}: RoleBinding deleted, but the grantee is still allowed")
    finally:
        if grantee is None:
            await client.close()
    r = time.time()
    await g.rest(made)
    rest = time.time() - r
    return OneSample(
        creates=created - start,
        issue=allowed_at - start,
        client=ready - created,
        cut_call=cut_done - t,
        refused=refused_at - t,
        teardown=cut_done - t + rest,
    )


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


# --- (c): throughput --------------------------------------------------------------------------


async def in_parallel(
    items: Sequence[Any], work: Callable[[Any], Awaitable[None]], concurrency: int
) -> float:
    """Run `work` on every item with `concurrency` workers; the seconds it took."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await work(item)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)))))
    return time.perf_counter() - start


async def burst(g: Grants, mode: str, n: int, concurrency: int) -> dict[str, Any]:
    names = [f"c{mode[0]}-{n}-{i:04d}" for i in range(n)]
    made: dict[str, Made] = {}

    async def issue(name: str) -> None:
        made[name] = await g.issue(mode, name)

    async def cut(name: str) -> None:
        await g.cut(made[name])

    async def rest(name: str) -> None:
        await g.rest(made[name])

    pids = control_plane()
    before = cpu_times(pids)
    created = await in_parallel(names, issue, concurrency)
    middle = cpu_times(pids)
    cut_s = await in_parallel(names, cut, concurrency)
    rest_s = await in_parallel(names, rest, concurrency)
    after = cpu_times(pids)
    create_cpu, delete_cpu = cpu_spent(before, middle), cpu_spent(middle, after)
    issue_calls = len(CALLS[mode]["issue"])
    objects = sum(len(m.objects) for m in made.values()) // n
    deleted = cut_s + rest_s
    return {
        "mode": mode,
        "n": n,
        "concurrency": concurrency,
        "objects_per_grant": objects,
        "create_seconds": created,
        "create_grants_per_s": n / created,
        "create_objects_per_s": n * objects / created,
        "create_calls_per_s": n * issue_calls / created,
        "cut_seconds": cut_s,
        "cut_grants_per_s": n / cut_s,
        "delete_seconds": deleted,
        "delete_grants_per_s": n / deleted,
        "delete_objects_per_s": n * objects / deleted,
        # This client's own CPU time over the wall time: near 1.0, the client bounds the rate.
        "create_client_cpu": create_cpu[THIS] / created,
        "delete_client_cpu": delete_cpu[THIS] / deleted,
        # CPU seconds of every process (API server, etcd, this client) in each phase.
        "create_cpu": create_cpu,
        "delete_cpu": delete_cpu,
    }


# --- the run ----------------------------------------------------------------------------------


async def _namespaces_and_grantee(admin: Kube) -> None:
    for ns in (TARGET_NS, DELIVERY_NS):
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        with contextlib.suppress(AlreadyExists):
            await admin.create(NAMESPACES, body)
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": GRANTEE, "namespace": DELIVERY_NS},
    }
    with contextlib.suppress(AlreadyExists):
        await admin.create(SERVICE_ACCOUNTS, sa)


async def _leftovers(admin: Kube) -> int:
    """Delete what an interrupted run left behind (by label); how many there were."""
    gone = 0
    for ns in (TARGET_NS, DELIVERY_NS):
        for res in (ROLE_BINDINGS, SERVICE_ACCOUNTS, ROLES, SECRETS):
            for obj in await admin.list(res, ns, label_selector=f"{c.LABEL_MANAGED_BY}={MANAGED}"):
                gone += await admin.delete(res, obj["metadata"]["name"], ns)
    return gone


async def _until(check: Callable[[], Awaitable[bool]], what: str, within: float = 30) -> None:
    if await poll(check, 0.05, within) is None:
        raise TimeoutError(f"{what} within {within:.0f}s")


async def measure_ceiling(
    where: Target,
    *,
    n: int = 30,
    concurrency: int = 16,
    bursts: Sequence[int] = (200, 1000),
    burst_modes: Sequence[str] = MODES,
    warmup: int = 3,
) -> dict[str, Any]:
    """The API server's figures for the operator's work on `where`; times in seconds.

    Applies deploy/operator-rbac.yaml (as the operator's own start does) and works as the
    operator's ServiceAccount. Run it while no operator runs, or the two share the server.
    """
    began = time.monotonic()
    async with await Kube.from_dict(where.kubeconfig(None)) as admin:
        await install_operator_rbac(admin)
        await _namespaces_and_grantee(admin)
        leftovers = await _leftovers(admin)
        op_token = await operator_identity(admin, where.calls)
        grantee_token = await request_token(admin, DELIVERY_NS, GRANTEE, seconds=3600)
    async with (
        await Kube.from_dict(where.kubeconfig(op_token)) as op,
        await Kube.from_dict(where.kubeconfig(grantee_token)) as grantee,
    ):
        user = (await op.whoami()).get("username")
        if user != OPERATOR_USER:
            raise RuntimeError(f"the ceiling's client is {user}, not {OPERATOR_USER}")
        # A ClusterRoleBinding just made takes a moment to reach the authorizer.
        await _until(
            lambda: _is_true(may(op, "create", "rolebindings", TARGET_NS, RBAC_GROUP)), "RBAC not in effect"
        )
        escalate = await may(op, "escalate", "roles", TARGET_NS, RBAC_GROUP) is True
        if escalate:
            rules, probe = POLICY_RULES, Probe(*POLICY_PROBE)
        else:
            rules, probe = HELD_RULES, Probe(*HELD_PROBE)
            if not await may(op, probe.verb, probe.resource, TARGET_NS, probe.group):
                raise RuntimeError(f"without escalate, the operator's identity must hold {HELD_RULES}")
        g = Grants(op, rules)

        result: dict[str, Any] = {
            "tier": where.name,
            "identity": user,
            "escalate": escalate,
            "rules": rules,
            "probe": f"{probe.verb} {probe.resource}" + (f".{probe.group}" if probe.group else ""),
            "leftovers_deleted": leftovers,
            "one_at_a_time": {},
            "burst": [],
            "calls_per_grant": {},
        }
        for mode in MODES:
            client = grantee if mode == "bind" else None
            for i in range(warmup):
                await one_grant(g, mode, f"c{mode[0]}-warm-{i:02d}", probe, client, where.kubeconfig)
            sent, counted = Counter(g.sent), where.calls.detail()
            t = time.monotonic()
            samples = [
                await one_grant(g, mode, f"c{mode[0]}-one-{i:03d}", probe, client, where.kubeconfig)
                for i in range(n)
            ]
            say(f"  ceiling, {mode}: {n} grants one at a time in {time.monotonic() - t:.1f}s")
            result["one_at_a_time"][mode] = {
                "n": n,
                "creates": summary([x.creates for x in samples]),
                "issue": summary([x.issue for x in samples]),
                "client": summary([x.client for x in samples]),
                "cut_call": summary([x.cut_call for x in samples]),
                "refused": summary([x.refused for x in samples]),
                "teardown": summary([x.teardown for x in samples]),
            }
            mine = g.sent - sent
            server = where.calls.detail() - counted
            result["calls_per_grant"][mode] = {
                "issue": len(CALLS[mode]["issue"]),
                "revoke": len(CALLS[mode]["revoke"]),
                "sent": sum(mine.values()) / n,
                "by_call": {k: v / n for k, v in sorted(mine.items())},
                "counted_by_server": sum(server.values()) / n if where.counted else None,
                "lists": 0,
            }
        for size in bursts:
            for mode in burst_modes:
                r = await burst(g, mode, size, concurrency)
                say(
                    f"  ceiling, burst of {size} {mode}: created {r['create_grants_per_s']:.0f} grants/s, "
                    f"cut {r['cut_grants_per_s']:.0f} grants/s, deleted {r['delete_grants_per_s']:.0f} grants/s"
                )
                result["burst"].append(r)
    result["seconds"] = time.monotonic() - began
    return result


async def _is_true(value: Awaitable[bool | None]) -> bool:
    return (await value) is True


# --- the report -------------------------------------------------------------------------------


def ceiling_section(r: dict[str, Any], heading: str = "###") -> str:
    """The ceiling as a Markdown section, in lifecycle_bench's style."""
    rules = r["rules"][0]
    held = (
        "holds `escalate` on Roles, so the Role carries the benchmark policy's rules"
        if r["escalate"]
        else "does not hold `escalate` on Roles, so the Role carries rules it holds itself"
    )
    lines = [
        f"{heading} API server ceiling: the operator's calls for a grant, no operator ({r['seconds']:.0f}s)",
        "",
        f"As `{r['identity']}` (deploy/operator-rbac.yaml), same APF level and escalation checks as "
        f"the operator. The identity {held} (`{', '.join(rules['verbs'])}` on "
        f"`{rules['resources'][0]}`); the grantee's SelfSubjectAccessReview asks `{r['probe']}`.",
    ]
    for mode in MODES:
        one = r["one_at_a_time"].get(mode)
        if not one:
            continue
        calls = ", ".join(CALLS[mode]["issue"])
        lines += [
            f"\n**{mode}-like, one at a time** ({one['n']} grants: {calls}; then delete in teardown order)\n",
            TABLE_HEAD,
            row("creates → grantee's access review allowed", one["issue"]),
            row("  the creates, back to back", one["creates"]),
            *(
                [row("  the new identity's client built from its token", one["client"])]
                if mode == "ephemeral"
                else []
            ),
            row("delete RoleBinding → access review refused", one["refused"]),
            row("  the RoleBinding delete call", one["cut_call"]),
            row("all deletes, back to back (teardown)", one["teardown"]),
        ]
    if r["burst"]:
        lines += [
            f"\n**Throughput**, {r['burst'][0]['concurrency']} concurrent workers, each doing one grant's "
            "calls in order; deletes in two passes: all RoleBindings (privilege gone), then the rest\n",
            "| burst | grants | create s | created grants/s | objects/s | calls/s | client CPU "
            "| RoleBindings deleted grants/s | all deleted s | deleted grants/s | objects/s | client CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for b in r["burst"]:
            lines.append(
                f"| {b['mode']}-like | {b['n']} | {b['create_seconds']:.2f} | {b['create_grants_per_s']:.0f} "
                f"| {b['create_objects_per_s']:.0f} | {b['create_calls_per_s']:.0f} "
                f"| {b['create_client_cpu']:.0%} | {b['cut_grants_per_s']:.0f} | {b['delete_seconds']:.2f} "
                f"| {b['delete_grants_per_s']:.0f} | {b['delete_objects_per_s']:.0f} "
                f"| {b['delete_client_cpu']:.0%} |"
            )
        lines.append(
            "\nclient CPU: this benchmark's own CPU time over the wall time (one Python thread, the "
            "operator's client library); near 100 % the client, not the API server, bounds the rate."
        )
        lines.append("\nCPU per grant, from /proc (the control plane this benchmark started):\n")
        for b in r["burst"]:
            lines.append(
                f"- {b['mode']}-like, creating: {cpu_per_item(b['create_cpu'], b['n'])}; "
                f"deleting: {cpu_per_item(b['delete_cpu'], b['n'])}"
            )
    lines += [
        "\n**API calls per grant** (as the operator's identity; the grantee's access reviews not counted)\n",
        "| mode | issue | revoke | all | lists | counted by the API server |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode, calls in r["calls_per_grant"].items():
        server = calls["counted_by_server"]
        lines.append(
            f"| {mode}-like | {calls['issue']} | {calls['revoke']} | {calls['sent']:.1f} | {calls['lists']} "
            f"| {'not counted' if server is None else f'{server:.1f}'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--target",
        default="sim",
        help="sim (in-memory), envtest (a real control plane from KUBEBUILDER_ASSETS) or an admin kubeconfig file",
    )
    parser.add_argument("--n", type=int, help="grants one at a time, per mode (default 30)")
    parser.add_argument("--concurrency", type=int, default=16, help="workers in the throughput runs (16)")
    parser.add_argument("--burst", help="comma-separated burst sizes (default 200,1000)")
    parser.add_argument("--modes", default="bind,ephemeral", help="burst modes: bind, ephemeral or both")
    parser.add_argument("--quick", action="store_true", help="small N, a smoke test")
    args = parser.parse_args(argv)
    n = args.n or (3 if args.quick else 30)
    bursts = [int(x) for x in (args.burst or ("20" if args.quick else "200,1000")).split(",") if x.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(modes) - set(MODES):
        parser.error(f"--modes: {', '.join(MODES)}")
    machine = describe()
    began = time.monotonic()
    with target(args.target) as where:
        result = asyncio.run(
            measure_ceiling(where, n=n, concurrency=args.concurrency, bursts=bursts, burst_modes=modes)
        )
    print(machine)
    print(f"- tier: {where.name}; no operator running")
    print(
        f"- one at a time N={n} per mode; bursts {', '.join(map(str, bursts))} ({', '.join(modes)}) at "
        f"concurrency {args.concurrency}; wall time {time.monotonic() - began:.0f}s; "
        f"load average at the end: {load()}\n"
    )
    print(ceiling_section(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
