"""How fast `zsp audit` reports on a large cluster: 10 000 bindings by default.

The world (deterministic, seeded): 500 namespaces `team-000`.. (one in five labelled
`zsp.dev/enforce: "true"`), six ServiceAccounts each, four ClusterRoles shaped like view, edit,
admin and cluster-admin plus 30 custom ones, and one Role per three RoleBindings drawn from a
pool of rule templates (so rules repeat, as they do in real clusters). Of the bindings, 5 % are
ClusterRoleBindings; RoleBindings name one to three subjects (ServiceAccounts of their own or
another namespace, groups, users, a few kube-system controllers). 300 carry the operator's
labels: 250 belong to live TaskGrants, 25 are orphaned and 25 tampered (a subject added).

Timed:
- `analysis`: `core.audit.build_report` over the listed objects (what the CLI does after listing);
- `render`: the table and the JSON of that report;
- `end to end` (with --e2e): `zsp audit -o json` against the in-memory API server holding the
  same objects: connecting, listing everything over HTTP, analysis and output.

    python bench/audit_bench.py                  # analysis and render, a few seconds
    python bench/audit_bench.py --e2e            # also end to end (seeding takes a while)
    python bench/audit_bench.py --e2e --record   # and append the results to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from machine import describe

from zsp_operator.cli import main as zsp
from zsp_operator.cli.standing_report import gc_paused, render, render_json
from zsp_operator.core import constants as c
from zsp_operator.core.standing_report import Report, build_report

Body = dict[str, Any]
RBAC = "rbac.authorization.k8s.io/v1"
AT = "2030-01-01T00:00:00Z"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

NAMESPACES = 500
ACCOUNTS_PER_NAMESPACE = 6
MANAGED, ORPHANED, TAMPERED = 250, 25, 25

READ, WRITE = ["get", "list", "watch"], ["create", "update", "patch", "delete"]
RULE_POOL: list[Body] = [
    {"apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": READ},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": READ},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": [*READ, *WRITE]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": READ},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": [*READ, *WRITE]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": READ},
    {"apiGroups": ["monitoring.coreos.com"], "resources": ["servicemonitors"], "verbs": [*READ, *WRITE]},
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": [*READ, *WRITE]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]


def meta(
    name: str, namespace: str | None = None, labels: dict[str, str] | None = None, uid: str = ""
) -> Body:
    body: Body = {"name": name, "labels": labels or {}}
    if namespace:
        body["namespace"] = namespace
    if uid:
        body["uid"] = uid
    return body


@dataclass
class World:
    namespaces: list[Body]
    service_accounts: list[Body]
    roles: list[Body]
    cluster_roles: list[Body]
    bindings: list[Body]
    grants: list[Body]

    def count(self) -> str:
        return (
            f"{len(self.bindings)} bindings, {len(self.roles)} Roles, {len(self.cluster_roles)} ClusterRoles, "
            f"{len(self.namespaces)} namespaces, {len(self.service_accounts)} ServiceAccounts, "
            f"{len(self.grants)} TaskGrants"
        )


def _cluster_roles(rng: random.Random) -> list[Body]:
    shaped = {
        # Named apart from the built-in view, edit, admin and cluster-admin they imitate.
        "team-view": RULE_POOL[0:2] + RULE_POOL[6:7] + RULE_POOL[10:11],
        "team-edit": RULE_POOL[0:3] + RULE_POOL[6:10],
        "team-admin": RULE_POOL[0:10] + RULE_POOL[13:14],
        "superuser": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    }
    roles = [
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": meta(n), "rules": r}
        for n, r in shaped.items()
    ]
    for i in range(30):
        rules = rng.sample(RULE_POOL, rng.randint(2, 6))
        roles.append(
            {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": meta(f"custom-{i:02d}"), "rules": rules}
        )
    return roles


def _subject(rng: random.Random, home: str) -> Body:
    roll = rng.random()
    if roll < 0.03:
        return {
            "kind": "ServiceAccount",
            "namespace": "kube-system",
            "name": f"controller-{rng.randint(0, 9)}",
        }
    if roll < 0.13:
        return {"kind": "Group", "name": f"team-{rng.randrange(NAMESPACES):03d}-devs"}
    if roll < 0.18:
        return {"kind": "User", "name": f"user-{rng.randrange(200)}@example.com"}
    namespace = home if rng.random() < 0.8 else f"team-{rng.randrange(NAMESPACES):03d}"
    return {
        "kind": "ServiceAccount",
        "namespace": namespace,
        "name": f"sa-{rng.randrange(ACCOUNTS_PER_NAMESPACE + 1)}",
    }


def _binding(
    kind: str, name: str, namespace: str | None, role: tuple[str, str], subjects: list[Body], **kw: Any
) -> Body:
    return {
        "apiVersion": RBAC,
        "kind": kind,
        "metadata": meta(name, namespace, **kw),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role[0], "name": role[1]},
        "subjects": subjects,
    }


def _grant(namespace: str, index: int, subject: Body, rules: list[Body], objects: list[Body]) -> Body:
    name = f"grant-{index}"
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_GRANT,
        "metadata": meta(name, namespace, uid=f"uid-{name}"),
        "spec": {
            "request": {"name": name, "uid": f"req-{name}"},
            "policy": "bench",
            "mode": "bind",
            "identity": {"namespace": subject["namespace"], "name": subject["name"]},
            "rules": rules,
            "expiresAt": AT,
        },
        "status": {
            "objects": objects,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Issued", "lastTransitionTime": AT}],
        },
    }


def build_world(bindings: int, seed: int = 4711) -> World:
    """Objects as `kubectl get -o json` lists them (with kinds), deterministic for a seed."""
    rng = random.Random(seed)
    names = [f"team-{i:03d}" for i in range(NAMESPACES)]
    namespaces = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": meta(n, labels={c.LABEL_ENFORCE: "true"} if i % 5 == 0 else {}),
        }
        for i, n in enumerate(names)
    ]
    accounts = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(f"sa-{j}", n)}
        for n in names
        for j in range(ACCOUNTS_PER_NAMESPACE)
    ]
    cluster_roles = _cluster_roles(rng)
    roles: list[Body] = []
    out: list[Body] = []
    grants: list[Body] = []
    cluster_bindings = bindings // 20
    for i in range(cluster_bindings):
        role = rng.choice(cluster_roles)["metadata"]["name"]
        subjects = [_subject(rng, rng.choice(names)) for _ in range(rng.randint(1, 2))]
        out.append(_binding("ClusterRoleBinding", f"crb-{i}", None, ("ClusterRole", role), subjects))
    managed = MANAGED + ORPHANED + TAMPERED
    for i in range(bindings - cluster_bindings - managed):
        namespace = names[i % NAMESPACES]
        if i % 3 == 0:
            role_name = f"role-{i}"
            rules = rng.sample(RULE_POOL, rng.randint(3, 6))
            roles.append(
                {"apiVersion": RBAC, "kind": "Role", "metadata": meta(role_name, namespace), "rules": rules}
            )
            ref = ("Role", role_name)
        else:
            ref = ("ClusterRole", rng.choice(cluster_roles)["metadata"]["name"])
        subjects = [_subject(rng, namespace) for _ in range(rng.randint(1, 3))]
        out.append(_binding("RoleBinding", f"rb-{i}", namespace, ref, subjects))
    for i in range(managed):
        namespace = names[i % NAMESPACES]
        subject = {"kind": "ServiceAccount", "namespace": namespace, "name": "sa-0"}
        name = f"zsp-grant-{i}"
        rules = rng.sample(RULE_POOL[:3] + RULE_POOL[6:9], 2)
        labels = {
            c.LABEL_MANAGED_BY: c.OPERATOR_NAME,
            c.LABEL_GRANT: f"grant-{i}",
            c.LABEL_GRANT_UID: f"uid-grant-{i}",
            c.LABEL_REQUEST_UID: f"req-grant-{i}",
        }
        subjects = [subject]
        if i >= MANAGED + ORPHANED:
            subjects = [subject, {"kind": "ServiceAccount", "namespace": namespace, "name": "sa-1"}]
        roles.append(
            {"apiVersion": RBAC, "kind": "Role", "metadata": meta(name, namespace, labels), "rules": rules}
        )
        out.append(
            _binding(
                "RoleBinding", name, namespace, ("Role", name), subjects, labels=labels, uid=f"uid-{name}"
            )
        )
        if not MANAGED <= i < MANAGED + ORPHANED:
            objects = [
                {
                    "apiVersion": RBAC,
                    "kind": kind,
                    "name": name,
                    "namespace": namespace,
                    "uid": f"uid-{name}" if kind == "RoleBinding" else "",
                }
                for kind in ("Role", "RoleBinding")
            ]
            grants.append(_grant(namespace, i, subject, rules, objects))
    return World(namespaces, accounts, roles, cluster_roles, out, grants)


def analyse(world: World) -> Report:
    with gc_paused():  # as `zsp audit` runs it
        return build_report(
            bindings=world.bindings,
            roles=world.roles,
            cluster_roles=world.cluster_roles,
            namespaces=world.namespaces,
            service_accounts=world.service_accounts,
            grants=world.grants,
        )


def render_both(report: Report) -> None:
    with gc_paused():  # as `zsp audit` runs it
        render(report)
        render_json(report)


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    fn()  # warm-up: imports, caches, first-call costs
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


# --- end to end through the in-memory API server -------------------------------------------------


async def _seed(kubeconfig: Body, world: World, concurrency: int = 32) -> None:
    """Create the world through the API; grants and their objects get the uids the server assigns."""
    from zsp_operator.kube import Kube
    from zsp_operator.kube.resources import BY_KIND, CLUSTER_ROLE_BINDINGS, TASK_GRANTS

    resources = {**BY_KIND, "ClusterRoleBinding": CLUSTER_ROLE_BINDINGS}
    semaphore = asyncio.Semaphore(concurrency)
    async with await Kube.from_dict(kubeconfig) as kube:

        async def create(body: Body) -> Body:
            body = json.loads(json.dumps(body))
            body["metadata"].pop("uid", None)
            body.pop("status", None)
            async with semaphore:
                return await kube.create(resources[body["kind"]], body)

        async def create_all(bodies: Sequence[Body]) -> list[Body]:
            return list(await asyncio.gather(*(create(body) for body in bodies)))

        def managed(body: Body) -> bool:
            return c.LABEL_GRANT_UID in body["metadata"]["labels"]

        await create_all(world.namespaces)
        await create_all([*world.service_accounts, *world.cluster_roles])
        await create_all([b for b in [*world.roles, *world.bindings] if not managed(b)])
        grants = {g["metadata"]["name"]: g for g in await create_all(world.grants)}
        made: dict[tuple[str, str, str], Body] = {}
        for body in [b for b in [*world.roles, *world.bindings] if managed(b)]:
            labels = body["metadata"]["labels"]
            grant = grants.get(labels[c.LABEL_GRANT])
            if grant is not None:  # orphans keep the uid of a grant that never existed
                labels[c.LABEL_GRANT_UID] = grant["metadata"]["uid"]
            created = await create(body)
            made[(body["kind"], created["metadata"]["namespace"], created["metadata"]["name"])] = created
        for source in world.grants:
            status = json.loads(json.dumps(source["status"]))
            for obj in status["objects"]:
                obj["uid"] = made[(obj["kind"], obj["namespace"], obj["name"])]["metadata"]["uid"]
            name, namespace = source["metadata"]["name"], source["metadata"]["namespace"]
            await kube.patch(TASK_GRANTS, name, {"status": status}, namespace, status=True)


@contextlib.contextmanager
def seeded_sim(world: World) -> Iterator[Path]:
    """The in-memory API server in its own process (as a real one would be), seeded with the world."""
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        server = subprocess.Popen(
            [sys.executable, "-m", "zsp_operator", "sim", "--kubeconfig-out", str(kubeconfig)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            for line in server.stdout:
                if line.startswith("admin kubeconfig written"):
                    break
            else:
                raise RuntimeError("zsp sim exited before it was ready")
            started = time.perf_counter()
            asyncio.run(_seed(yaml.safe_load(kubeconfig.read_text()), world))
            print(
                f"  seeded the in-memory API server in {time.perf_counter() - started:.1f}s", file=sys.stderr
            )
            yield kubeconfig
        finally:
            server.terminate()
            server.wait(timeout=30)


def end_to_end(kubeconfig: Path) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = zsp(["audit", "--kubeconfig", str(kubeconfig), "-o", "json"])
    assert status == 0, status
    return out.getvalue()


def check_end_to_end(kubeconfig: Path, expected: Report) -> None:
    """The command's findings over HTTP are the analysis's findings in memory (checked once, untimed)."""
    summary = json.loads(end_to_end(kubeconfig))["summary"]
    assert summary["subjects"] == expected.summary.subjects, summary
    assert summary["bindings"] == dict(sorted(expected.summary.bindings.items())), summary


# --- report --------------------------------------------------------------------------------------


def row(name: str, samples: Sequence[float]) -> str:
    return (
        f"| {name} | {min(samples):.3f} s | {statistics.median(samples):.3f} s | "
        f"{max(samples):.3f} s | {len(samples)} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--e2e", action="store_true", help="also time `zsp audit` against the in-memory API server"
    )
    parser.add_argument("--record", action="store_true", help=f"append the results to {RESULTS.name}")
    args = parser.parse_args(argv)

    world = build_world(args.bindings)
    report = analyse(world)
    summary = report.summary
    rows = [
        row("analysis (`build_report`)", timed(lambda: analyse(world), args.runs)),
        row("render table + JSON", timed(lambda: render_both(report), args.runs)),
    ]
    if args.e2e:
        with seeded_sim(world) as kubeconfig:
            check_end_to_end(kubeconfig, report)
            rows.append(
                row(
                    "end to end: `zsp audit -o json` over HTTP",
                    timed(lambda: end_to_end(kubeconfig), max(1, args.runs // 2)),
                )
            )
    text = "\n".join(
        [
            f"## zsp audit: {args.bindings:,} bindings".replace(",", " "),
            "",
            describe(),
            f"- world: {world.count()}",
            f"- report: {summary.line()}",
            "",
            "| step | best | median | worst | runs |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(text)
    if args.record:
        existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
        RESULTS.write_text(existing.rstrip("\n") + "\n\n" + text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
