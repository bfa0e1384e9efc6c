"""`zsp audit` against a seeded in-memory cluster, through the real command line.

Covered: on a cluster with a live grant, a tampered grant, an orphaned and a forged binding,
unmanaged bindings (one to a ServiceAccount that does not exist, one that reads Secrets) and
the control plane's own bindings, the report's findings per subject match a table of expected
findings exactly for each set of flags (`--namespace`, `--allowlist`, `--fail-on` and its exit
status); the table output of the same cluster, line for line; a cluster that has never seen
the operator (no TaskGrant CRD); an unreachable cluster is one line and exit status 2.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tiers import load_crds
from zsp_operator.cli import main
from zsp_operator.core import constants as c
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    TASK_GRANTS,
    Resource,
)
from zsp_operator.sim import serve_in_thread

RBAC = "rbac.authorization.k8s.io/v1"
AT = "2030-01-01T00:00:00Z"
DEPLOY_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
]
READER_RULES = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
SECRET_RULES = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]


def sa(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "namespace": namespace, "name": name}


def binding(
    kind: str,
    name: str,
    namespace: str | None,
    role: tuple[str, str],
    subjects: list[dict[str, str]],
    **labels: str,
) -> tuple[Resource, dict[str, Any]]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    body = {
        "apiVersion": RBAC,
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role[0], "name": role[1]},
        "subjects": subjects,
    }
    return (ROLE_BINDINGS if kind == "RoleBinding" else CLUSTER_ROLE_BINDINGS), body


def role(
    kind: str, name: str, namespace: str | None, rules: list[Any], **labels: str
) -> tuple[Resource, dict[str, Any]]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    return (ROLES if kind == "Role" else CLUSTER_ROLES), {
        "apiVersion": RBAC,
        "kind": kind,
        "metadata": meta,
        "rules": rules,
    }


def managed(grant: str, uid: str) -> dict[str, str]:
    return {
        c.LABEL_MANAGED_BY: c.OPERATOR_NAME,
        c.LABEL_GRANT: grant,
        c.LABEL_GRANT_UID: uid,
        c.LABEL_REQUEST_UID: f"req-{grant}",
    }


async def _create(kube: Kube, res: Resource, body: dict[str, Any]) -> dict[str, Any]:
    return await kube.create(res, body)


async def _grant(
    kube: Kube,
    name: str,
    identity: dict[str, str],
    rules: list[Any],
    cluster_role: str | None,
    persistence: bool,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "request": {"name": name, "uid": f"req-{name}"},
        "policy": "deployers",
        "mode": "bind",
        "identity": {"namespace": identity["namespace"], "name": identity["name"]},
        "rules": rules,
        "expiresAt": AT,
        "persistenceCapable": persistence,
    }
    if cluster_role:
        spec["clusterRole"] = cluster_role
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_GRANT,
        "metadata": {"name": name, "namespace": "pay"},
        "spec": spec,
    }
    return await kube.create(TASK_GRANTS, body)


async def _record(kube: Kube, grant: dict[str, Any], objects: list[tuple[Resource, dict[str, Any]]]) -> None:
    status = {
        "objects": [
            {
                "apiVersion": RBAC,
                "kind": res.kind,
                "name": o["metadata"]["name"],
                "namespace": "pay",
                "uid": o["metadata"]["uid"],
            }
            for res, o in objects
        ],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Issued", "lastTransitionTime": AT}],
    }
    await kube.patch(TASK_GRANTS, grant["metadata"]["name"], {"status": status}, "pay", status=True)


async def seed(kube: Kube, *, with_grants: bool = True) -> None:
    """The mixed cluster every case reads."""
    for ns, labels in (("pay", {c.LABEL_ENFORCE: "true"}), ("dev", {}), ("ci", {})):
        await kube.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
        )
    for ns, name in (("ci", "deployer"), ("ci", "pipeline"), ("dev", "builder")):
        await kube.create(
            SERVICE_ACCOUNTS,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": ns, "name": name}},
        )
    for res, body in (
        role("ClusterRole", "reader", None, READER_RULES),
        role("Role", "secret-reader", "pay", SECRET_RULES),
        # Unmanaged standing privilege: one reads Secrets, one is cluster-wide to a ServiceAccount nobody made.
        binding("RoleBinding", "deployer-secrets", "pay", ("Role", "secret-reader"), [sa("ci", "deployer")]),
        binding("RoleBinding", "builder-reads", "dev", ("ClusterRole", "reader"), [sa("dev", "builder")]),
        binding(
            "ClusterRoleBinding", "ghost-admin", None, ("ClusterRole", "cluster-admin"), [sa("ci", "ghost")]
        ),
        # The control plane's own: never reported.
        binding(
            "RoleBinding", "dns", "kube-system", ("ClusterRole", "reader"), [sa("kube-system", "coredns")]
        ),
    ):
        await _create(kube, res, body)
    if not with_grants:
        return
    uid_of: dict[str, str] = {}
    for name, identity, rules, cluster_role, persistence in (
        ("deploy-1", sa("ci", "deployer"), DEPLOY_RULES, None, True),
        ("deploy-2", sa("ci", "pipeline"), [], "reader", False),
    ):
        uid_of[name] = (await _grant(kube, name, identity, rules, cluster_role, persistence))["metadata"][
            "uid"
        ]
    role1 = await _create(
        kube, *role("Role", "zsp-deploy-1", "pay", DEPLOY_RULES, **managed("deploy-1", uid_of["deploy-1"]))
    )
    rb1 = await _create(
        kube,
        *binding(
            "RoleBinding",
            "zsp-deploy-1",
            "pay",
            ("Role", "zsp-deploy-1"),
            [sa("ci", "deployer")],
            **managed("deploy-1", uid_of["deploy-1"]),
        ),
    )
    # deploy-2's binding was edited after issuance: someone added themselves.
    rb2 = await _create(
        kube,
        *binding(
            "RoleBinding",
            "zsp-deploy-2",
            "pay",
            ("ClusterRole", "reader"),
            [sa("ci", "pipeline"), sa("dev", "builder")],
            **managed("deploy-2", uid_of["deploy-2"]),
        ),
    )
    grants = {g["metadata"]["name"]: g for g in await kube.list(TASK_GRANTS, "pay")}
    await _record(kube, grants["deploy-1"], [(ROLES, role1), (ROLE_BINDINGS, rb1)])
    await _record(kube, grants["deploy-2"], [(ROLE_BINDINGS, rb2)])
    for res, body in (
        # Left behind by a grant that no longer exists.
        binding(
            "RoleBinding",
            "zsp-leftover",
            "pay",
            ("ClusterRole", "reader"),
            [sa("ci", "pipeline")],
            **managed("gone", "uid-gone"),
        ),
        # The labels of live deploy-1, copied onto a hand-made binding.
        binding(
            "RoleBinding",
            "zsp-copy",
            "dev",
            ("ClusterRole", "reader"),
            [sa("dev", "builder")],
            **managed("deploy-1", uid_of["deploy-1"]),
        ),
    ):
        await _create(kube, res, body)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kubeconfig for an in-memory cluster seeded once for every case of this module."""
    with serve_in_thread(crds=load_crds()) as sim:
        path = sim.write_kubeconfig(tmp_path_factory.mktemp("audit") / "kubeconfig")

        async def go() -> None:
            async with await Kube.from_dict(sim.kubeconfig()) as kube:
                await seed(kube)

        asyncio.run(go())
        yield path


def audit(capsys: pytest.CaptureFixture[str], kubeconfig: Path, *flags: str) -> tuple[int, str]:
    status = main(["audit", "--kubeconfig", str(kubeconfig), *flags])
    return status, capsys.readouterr().out


def findings(output: str) -> dict[str, Any]:
    """The report boiled down to what a reader acts on: per subject, its flags and bindings."""
    report = json.loads(output)
    result: dict[str, Any] = {}
    for s in report["subjects"]:
        who = f"{s['kind']} {s['namespace'] + '/' if s['namespace'] else ''}{s['name']}"
        flags = [f for f in ("standing", "persistenceCapable", "persistenceCapableGrant") if s[f]]
        if s["exists"] is False:
            flags.append("missing")
        bindings = {
            f"{b['kind']} {b['namespace'] + '/' if b['namespace'] else ''}{b['name']}": b["state"]
            for b in s["bindings"]
        }
        result[who] = (flags, bindings)
    result["summary"] = {k: v for k, v in report["summary"].items() if k != "text"}
    return result


DEPLOYER = "ServiceAccount ci/deployer"
PIPELINE = "ServiceAccount ci/pipeline"
BUILDER = "ServiceAccount dev/builder"
GHOST = "ServiceAccount ci/ghost"

EVERYTHING = {
    GHOST: (["standing", "persistenceCapable", "missing"], {"ClusterRoleBinding ghost-admin": "standing"}),
    DEPLOYER: (
        ["standing", "persistenceCapable", "persistenceCapableGrant"],
        {"RoleBinding pay/deployer-secrets": "standing", "RoleBinding pay/zsp-deploy-1": "granted"},
    ),
    PIPELINE: (
        ["standing"],
        {"RoleBinding pay/zsp-deploy-2": "tampered", "RoleBinding pay/zsp-leftover": "orphaned"},
    ),
    BUILDER: (
        ["standing"],
        {
            "RoleBinding dev/builder-reads": "standing",
            "RoleBinding dev/zsp-copy": "forged",
            "RoleBinding pay/zsp-deploy-2": "tampered",
        },
    ),
    "summary": {
        "subjects": 4,
        "standing": 4,
        "persistence": 2,
        "bindings": {"forged": 1, "granted": 1, "orphaned": 1, "standing": 3, "tampered": 1},
        "persistenceGrants": 1,
    },
}

IN_DEV = {
    GHOST: EVERYTHING[GHOST],
    BUILDER: (
        ["standing"],
        {"RoleBinding dev/builder-reads": "standing", "RoleBinding dev/zsp-copy": "forged"},
    ),
    "summary": {
        "subjects": 2,
        "standing": 2,
        "persistence": 1,
        "bindings": {"forged": 1, "standing": 2},
        "persistenceGrants": 0,
    },
}

ALLOWLISTED = {
    **EVERYTHING,
    GHOST: (["missing"], {"ClusterRoleBinding ghost-admin": "allowlisted"}),
    DEPLOYER: (
        ["persistenceCapableGrant"],
        {"RoleBinding pay/deployer-secrets": "allowlisted", "RoleBinding pay/zsp-deploy-1": "granted"},
    ),
    "summary": {
        "subjects": 4,
        "standing": 2,
        "persistence": 0,
        "bindings": {
            "allowlisted": 2,
            "forged": 1,
            "granted": 1,
            "orphaned": 1,
            "standing": 1,
            "tampered": 1,
        },
        "persistenceGrants": 1,
    },
}

CASES = [
    pytest.param([], EVERYTHING, 0, id="everything"),
    pytest.param(["--fail-on", "standing"], EVERYTHING, 1, id="fail-on-standing"),
    pytest.param(["--fail-on", "persistence"], EVERYTHING, 1, id="fail-on-persistence"),
    pytest.param(["-n", "dev"], IN_DEV, 0, id="one-namespace-plus-cluster-bindings"),
    pytest.param(["--allowlist", "pay/deployer-secrets,ghost-admin"], ALLOWLISTED, 0, id="allowlist"),
    pytest.param(
        ["--allowlist", "pay/deployer-secrets,ghost-admin", "--fail-on", "persistence"],
        ALLOWLISTED,
        0,
        id="allowlisted-persistence-passes-the-gate",
    ),
]


@pytest.mark.parametrize(("flags", "expected", "status"), CASES)
def test_findings_on_a_seeded_cluster(
    seeded: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: dict[str, Any], status: int
) -> None:
    code, out = audit(capsys, seeded, "-o", "json", *flags)
    assert findings(out) == expected
    assert code == status


def test_rules_are_reported_per_namespace_with_their_risks(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = audit(capsys, seeded, "-o", "json")
    deployer = next(s for s in json.loads(out)["subjects"] if s["name"] == "deployer")
    (scope,) = deployer["scopes"]
    assert scope["namespace"] == "pay"
    rules = {r["text"]: (r["standing"], r["risks"]) for r in scope["rules"]}
    assert rules == {
        '{verbs: [get], apiGroups: [""], resources: [secrets]}': (True, ["reads-secrets"]),
        "{verbs: [get, patch], apiGroups: [apps], resources: [deployments]}": (False, []),
        '{verbs: [create], apiGroups: [""], resources: [pods/exec]}': (False, ["enters-pods"]),
    }


def test_table_output(seeded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = audit(capsys, seeded, "--namespace", "dev")
    assert code == 0
    assert out == (
        "ServiceAccount ci/ghost  [standing privilege, persistence-capable, ServiceAccount does not exist: "
        "whoever creates it inherits this]\n"
        "  BINDING                          ROLE                        STATE      NOTE\n"
        "  ClusterRoleBinding ghost-admin   ClusterRole cluster-admin   standing   <none>\n"
        "  can, cluster-wide:\n"
        "    {verbs: [*], nonResourceURLs: [*]}  ! wildcard\n"
        "    {verbs: [*], apiGroups: [*], resources: [*]}  ! wildcard\n"
        "\n"
        "ServiceAccount dev/builder  [standing privilege]\n"
        "  BINDING                         ROLE                 STATE      NOTE\n"
        "  RoleBinding dev/builder-reads   ClusterRole reader   standing   <none>\n"
        "  RoleBinding dev/zsp-copy        ClusterRole reader   forged     grant pay/deploy-1\n"
        "  can, in dev:\n"
        '    {verbs: [get, list], apiGroups: [""], resources: [configmaps]}\n'
        "\n"
        "Summary: 2 subject(s) hold privilege, 2 of them standing (1 persistence-capable); bindings: "
        "1 forged, 2 standing; 0 live persistence-capable grant(s)\n"
    )


def test_a_cluster_that_never_saw_the_operator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve_in_thread() as sim:  # no CRDs: TaskGrants are not even served
        path = sim.write_kubeconfig(tmp_path / "kubeconfig")

        async def go() -> None:
            async with await Kube.from_dict(sim.kubeconfig()) as kube:
                await seed(kube, with_grants=False)

        asyncio.run(go())
        code, out = audit(capsys, path, "-o", "json", "--fail-on", "standing")
    assert code == 1
    assert findings(out) == {
        GHOST: EVERYTHING[GHOST],
        DEPLOYER: (["standing", "persistenceCapable"], {"RoleBinding pay/deployer-secrets": "standing"}),
        BUILDER: (["standing"], {"RoleBinding dev/builder-reads": "standing"}),
        "summary": {
            "subjects": 3,
            "standing": 3,
            "persistence": 2,
            "bindings": {"standing": 3},
            "persistenceGrants": 0,
        },
    }


def test_an_unreachable_cluster_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    assert main(["audit", "--kubeconfig", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zsp: cannot reach the API server at http://127.0.0.1:9")
    assert len(err.strip().splitlines()) == 1
