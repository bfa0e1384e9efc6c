"""The `zsp` verbs against an API server (every tier) with the real operator running.

Each verb is called in-process through `zsp_operator.cli.main` (in a thread: the verbs run
their own event loop), as a person or pipeline would from a shell, with a kubeconfig file
holding that identity's token and the target namespace as its context's namespace.

Covered: `request --wait` ends Active and `list` shows it (table, -o json/yaml/name parse
back); `request --wait` ends Denied with exit 1, or runs out while Pending with exit 1;
`request --dry-run=server` stores nothing and comes back stamped by the webhook; `token -o
FILE` writes a 0600 kubeconfig whose token the API server authorises, and refuses bind
mode; `done --wait` ends Completed; two approvers issue a 2-of-N request; one denial ends
a request while `request --wait` follows it; approving an Active request shows the
webhook's message; `list --pending` shows exactly the caller's pending requests;
`describe` shows decision, approvals, objects, timeline and events; not found, forbidden
and unreachable servers read as one line each with exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import apply, eventually, running_operator, token_for, wait_for_phase
from tiers import Cluster
from world import World, world
from zsp_operator import cli
from zsp_operator.core import constants as c
from zsp_operator.kube.identity import may_as
from zsp_operator.kube.resources import ACCESS_REQUESTS, CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES

TWO_LEADS = {
    "approval": {
        "required": 2,
        "approvers": [{"kind": "Group", "name": "platform-leads"}],
        "timeout": "10m",
    }
}


class Shell:
    """Runs `zsp ...` as one identity and captures what it prints."""

    def __init__(self, capsys: pytest.CaptureFixture[str], kubeconfig: Path) -> None:
        self.capsys = capsys
        self.kubeconfig = kubeconfig

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(_main, [*argv, "--kubeconfig", str(self.kubeconfig)])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


def _main(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:  # argparse refusing the flags
        return int(exit_.code or 0)


def shell_for(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, who: str, token: str, namespace: str
) -> Shell:
    path = tmp_path / f"{who}.kubeconfig"
    path.write_text(yaml.safe_dump(cluster.kubeconfig(token, namespace)))
    return Shell(capsys, path)


async def pipeline_shell(w: World, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Shell:
    token = await token_for(w.admin, w.ci, "pipeline")
    return shell_for(w.cluster, capsys, tmp_path, "pipeline", token, w.target)


def person_shell(w: World, capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> Shell:
    return shell_for(w.cluster, capsys, tmp_path, name, w.cluster.user_token(name), w.target)


def bind_request_flags(w: World, name: str, *extra: str) -> list[str]:
    return [
        "request",
        name,
        "--grantee-sa",
        f"{w.ci}/deployer",
        "--permission",
        "deploy",
        "--ttl",
        "10m",
        "--reason",
        f"story {w.id}: deploy build 4711",
        *extra,
    ]


@contextlib.asynccontextmanager
async def approver_rights(w: World, *people: str) -> AsyncIterator[None]:
    """What an approver needs: read and annotate requests here, and read the policies."""
    name = f"zsp-approvers-{w.id}"
    rbac = "rbac.authorization.k8s.io"
    subjects = [{"kind": "User", "apiGroup": rbac, "name": person} for person in people]
    await apply(
        w.admin,
        [
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": w.target},
                "rules": [
                    {
                        "apiGroups": [c.GROUP],
                        "resources": [c.PLURAL_REQUEST],
                        "verbs": ["get", "list", "watch", "patch"],
                    }
                ],
            },
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": w.target},
                "roleRef": {"apiGroup": rbac, "kind": "Role", "name": name},
                "subjects": subjects,
            },
        ],
    )
    await w.admin.create(
        CLUSTER_ROLES,
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [c.GROUP], "resources": [c.PLURAL_POLICY], "verbs": ["get", "list"]}],
        },
    )
    await w.admin.create(
        CLUSTER_ROLE_BINDINGS,
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        },
    )
    try:
        yield
    finally:
        await w.admin.delete(CLUSTER_ROLE_BINDINGS, name)
        await w.admin.delete(CLUSTER_ROLES, name)


def table_rows(out: str) -> dict[str, list[str]]:
    """A kubectl-style table by its first column (columns are 3+ spaces apart)."""
    rows = {}
    for line in out.splitlines()[1:]:
        cells = re.split(r"\s{3,}", line.strip())
        rows[cells[0]] = cells
    return rows


# --- request, list, token, done ----------------------------------------------------------------


async def test_request_wait_ends_active_and_list_shows_it(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with world(cluster) as w, running_operator(cluster):
        zsp = await pipeline_shell(w, capsys, tmp_path)
        code, out, err = await zsp(*bind_request_flags(w, "deploy-1", "--wait=20s"))
        assert code == 0, err
        assert "accessrequest.zsp.dev/deploy-1 created" in out
        assert f"accessrequest.zsp.dev/deploy-1 Active: deploy for {w.ci}/deployer in {w.target}" in out
        assert "expires in 9m" in out or "expires in 10m" in out

        code, out, err = await zsp("list")
        assert code == 0, err
        assert out.splitlines()[0].split() == [
            "NAME",
            "PHASE",
            "GRANTEE",
            "PERMISSION",
            "EXPIRES",
            "IN",
            "AGE",
        ]
        row = table_rows(out)["deploy-1"]
        assert row[1:4] == ["Active", f"{w.ci}/deployer", "deploy"]
        assert row[4].startswith(("9m", "10m"))

        code, out, _ = await zsp("list", "-o", "json")
        listed = json.loads(out)
        assert listed["kind"] == "List"
        assert [item["metadata"]["name"] for item in listed["items"]] == ["deploy-1"]
        assert listed["items"][0]["status"]["phase"] == "Active"

        code, out, _ = await zsp("list", "deploy-1", "-o", "yaml")
        assert yaml.safe_load(out)["metadata"]["name"] == "deploy-1", "one name gives the object itself"

        code, out, _ = await zsp("list", "-o", "name")
        assert out.split() == ["accessrequest.zsp.dev/deploy-1"]

        code, out, _ = await zsp("list", "-o", "wide")
        assert table_rows(out)["deploy-1"][6] == w.pipeline_user


async def test_request_wait_reports_a_denial_with_exit_1(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with world(cluster) as w, running_operator(cluster):
        zsp = await pipeline_shell(w, capsys, tmp_path)
        flags = bind_request_flags(w, "greedy-1", "--wait=20s")
        flags[flags.index("deploy")] = "cluster-admin"
        code, out, err = await zsp(*flags)
        assert code == 1, err
        assert "accessrequest.zsp.dev/greedy-1 Denied:" in out
        assert "cluster-admin" in out, "the operator's reason is shown"


async def test_request_wait_runs_out_while_pending(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with world(cluster, **TWO_LEADS) as w, running_operator(cluster):
        zsp = await pipeline_shell(w, capsys, tmp_path)
        code, out, err = await zsp(*bind_request_flags(w, "slow-1", "--wait=2s"))
        assert code == 1
        assert "created" in out
        assert "accessrequest.zsp.dev/slow-1 Pending: waiting for 2 more approval(s)" in err, "progress"
        assert "zsp: no outcome after 2s: accessrequest.zsp.dev/slow-1 is still Pending" in err


async def test_server_dry_run_is_checked_and_stamped_but_not_stored(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with world(cluster) as w, running_operator(cluster):
        zsp = await pipeline_shell(w, capsys, tmp_path)
        code, out, err = await zsp(*bind_request_flags(w, "try-1", "--dry-run=server", "-o", "yaml"))
        assert code == 0, err
        stamped = yaml.safe_load(out)
        requester = json.loads(stamped["metadata"]["annotations"][c.ANNOTATION_REQUESTER])
        assert requester["username"] == w.pipeline_user
        assert await w.admin.get(ACCESS_REQUESTS, "try-1", w.target) is None

        code, out, err = await zsp(
            *bind_request_flags(w, "try-2", "--dry-run=server", "--ttl", "5h", "--policy", w.policy)
        )
        assert code == 2
        assert "spec.ttl: 5h exceeds maxTTL 1h" in err, "the webhook's own message"


async def test_token_writes_a_private_kubeconfig_that_works(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with world(cluster) as w, running_operator(cluster):
        zsp = await pipeline_shell(w, capsys, tmp_path)
        await _let_pipeline_read_secret(w, "agent-1-kubeconfig")
        code, out, err = await zsp(
            "request",
            "agent-1",
            "--ephemeral",
            "--delivery",
            f"{w.ci}/agent-1-kubeconfig",
            "--rule",
            "verbs=get,list,patch;groups=apps;resources=deployments",
            "--policy",
            w.policy,
            "--reason",
            "agent triage",
            "--wait=20s",
        )
        assert code == 0, err
        path = tmp_path / "agent.kubeconfig"
        code, out, err = await zsp("token", "agent-1", "-o", str(path))
        assert code == 0, err
        assert f"written to {path} (mode 0600)" in out
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        delivered = yaml.safe_load(path.read_text())
        token = delivered["users"][0]["user"]["token"]
        assert token not in out + err, "never printed unless asked"
        assert await may_as(delivered, "patch", "deployments", w.target, group="apps") is True
        assert await may_as(delivered, "delete", "deployments", w.target, group="apps") is False

        code, out, _ = await zsp("token", "agent-1")
        assert code == 0
        assert yaml.safe_load(out) == delivered, "printed to stdout without -o"


async def _let_pipeline_read_secret(w: World, secret: str) -> None:
    rbac = "rbac.authorization.k8s.io"
    meta = {"name": f"read-{secret}", "namespace": w.ci}
    await apply(
        w.admin,
        [
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "Role",
                "metadata": meta,
                "rules": [
                    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret], "verbs": ["get"]}
                ],
            },
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": rbac, "kind": "Role", "name": meta["name"]},
                "subjects": [{"kind": "ServiceAccount", "namespace": w.ci, "name": "pipeline"}],
            },
        ],
    )


async def test_token_refuses_bind_mode_and_unknown_requests(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with world(cluster) as w, running_operator(cluster):
        zsp = await pipeline_shell(w, capsys, tmp_path)
        code, _, err = await zsp(*bind_request_flags(w, "deploy-2", "--wait=20s"))
        assert code == 0, err
        code, out, err = await zsp("token", "deploy-2")
        assert code == 2
        assert out == ""
        assert f"binds ServiceAccount {w.ci}/deployer (bind mode): no kubeconfig is delivered" in err

        code, out, err = await zsp("token", "nope")
        assert code == 2
        assert err.strip() == f'zsp: accessrequest "nope" not found in namespace "{w.target}"'


async def test_done_ends_the_grant(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with world(cluster) as w, running_operator(cluster):
        zsp = await pipeline_shell(w, capsys, tmp_path)
        code, _, err = await zsp(*bind_request_flags(w, "deploy-3", "--wait=20s"))
        assert code == 0, err
        code, out, err = await zsp("done", "deploy-3", "--wait=20s")
        assert code == 0, err
        assert "accessrequest.zsp.dev/deploy-3 marked done" in out
        assert "accessrequest.zsp.dev/deploy-3 Completed" in out
        assert "spec.done was set" in out

        code, out, _ = await zsp("done", "deploy-3")
        assert code == 0
        assert "already Completed: nothing to end" in out


# --- approvals ---------------------------------------------------------------------------------


async def test_two_approvers_issue_a_two_of_n_request(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with (
        world(cluster, **TWO_LEADS) as w,
        approver_rights(w, "alice", "bob", "carol", "dave"),
        running_operator(cluster),
    ):
        pipeline = await pipeline_shell(w, capsys, tmp_path)
        alice, bob, carol, dave = (
            person_shell(w, capsys, tmp_path, p) for p in ("alice", "bob", "carol", "dave")
        )
        code, _, err = await pipeline(*bind_request_flags(w, "deploy-4"))
        assert code == 0, err
        await _decided(w, "deploy-4")

        code, out, err = await alice("approve", "deploy-4", "--comment", "build 4711 is green")
        assert code == 0, err
        assert out.strip() == "accessrequest.zsp.dev/deploy-4 approved by alice"

        code, out, err = await dave("approve", "deploy-4")
        assert code == 2
        assert "dave is not an approver of AccessPolicy" in err, "the webhook's message"

        code, out, err = await bob("approve", "deploy-4")
        assert code == 0, err
        await wait_for_phase(w.admin, w.target, "deploy-4", "Active")

        code, out, err = await carol("approve", "deploy-4")
        assert code == 2
        assert "AccessRequest deploy-4 is Active, not Pending: nothing to approve" in err
        assert err.count("\n") == 1, "one line, no traceback"

        admin = shell_for(cluster, capsys, tmp_path, "admin", cluster.admin_token, w.target)
        code, out, err = await admin("describe", "deploy-4")
        assert code == 0, err
        _assert_describes_an_approved_grant(out, w)

        code, out, err = await admin("describe", "deploy-4", "-o", "json")
        assert code == 0, err
        story = json.loads(out)
        assert story["request"]["metadata"]["name"] == "deploy-4"
        assert story["taskGrant"]["status"]["objects"], "the objects the grant created"
        assert [step["event"] for step in story["chain"]] == [
            "requested",
            "decided",
            "approved",
            "approved",
            "issued",
        ]
        assert {e["reason"] for e in story["events"]} >= {"GrantIssued"}
        code, out, _ = await admin("describe", "deploy-4", "-o", "yaml")
        again = yaml.safe_load(out)
        assert again["request"] == story["request"]
        assert again["chain"] == story["chain"]


async def _decided(w: World, name: str) -> None:
    """Approvals are taken only once the operator has decided the request needs them."""

    async def decided() -> bool:
        body = await w.admin.get(ACCESS_REQUESTS, name, w.target)
        return bool(((body or {}).get("status") or {}).get("decision"))

    await eventually(decided, within=15)


def _assert_describes_an_approved_grant(out: str, w: World) -> None:
    lines = out.splitlines()
    assert lines[0].split() == ["Name:", "deploy-4"]
    assert "Phase:        Active" in out
    assert f"Requester:    {w.pipeline_user}" in out
    assert "  Outcome:    allowed" in out
    assert f"  Policy:     {w.policy}" in out
    assert "Approvals:    2 of 2 required (approvers: Group platform-leads)" in out
    approvals = [line.split() for line in lines if line.startswith(("  alice", "  bob"))]
    assert [row[:2] for row in approvals] == [["alice", "approve"], ["bob", "approve"]]
    assert "build 4711 is green" in out
    assert "Objects:" in out
    assert any(line.split()[:1] == ["RoleBinding"] for line in lines), out
    timeline = out.split("Timeline:")[1].split("Events:")[0]
    steps = [re.split(r"\s{3,}", line.strip())[2] for line in timeline.strip().splitlines()[1:]]
    assert steps == ["requested", "decided", "approved", "approved", "issued", "expires"], timeline
    assert "GrantIssued" in out.split("Events:")[1]


async def test_a_denial_ends_the_request_while_request_wait_follows_it(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with world(cluster, **TWO_LEADS) as w, approver_rights(w, "alice"), running_operator(cluster):
        pipeline = await pipeline_shell(w, capsys, tmp_path)
        alice = person_shell(w, capsys, tmp_path, "alice")
        waiting = asyncio.create_task(
            asyncio.to_thread(
                _main,
                [*bind_request_flags(w, "deploy-5", "--wait=30s"), "--kubeconfig", str(pipeline.kubeconfig)],
            )
        )
        await _decided(w, "deploy-5")
        code = await asyncio.to_thread(
            _main,
            ["deny", "deploy-5", "--comment", "not during the freeze", "--kubeconfig", str(alice.kubeconfig)],
        )
        assert code == 0
        assert await asyncio.wait_for(waiting, 30) == 1, "request --wait ends with the denial: exit 1"
        out = capsys.readouterr().out
        assert "accessrequest.zsp.dev/deploy-5 denied by alice" in out
        assert "accessrequest.zsp.dev/deploy-5 Denied: denied by alice" in out
        await wait_for_phase(w.admin, w.target, "deploy-5", "Denied")


async def test_list_pending_shows_exactly_what_waits_for_the_caller(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with (
        world(cluster, **TWO_LEADS) as w,
        approver_rights(w, "alice", "bob", "dave"),
        running_operator(cluster),
    ):
        pipeline = await pipeline_shell(w, capsys, tmp_path)
        alice, bob, dave = (person_shell(w, capsys, tmp_path, p) for p in ("alice", "bob", "dave"))
        for name in ("wait-1", "wait-2"):
            code, _, err = await pipeline(*bind_request_flags(w, name))
            assert code == 0, err
            await _decided(w, name)
        code, _, err = await alice("approve", "wait-1")
        assert code == 0, err

        code, out, err = await alice("list", "--pending")
        assert code == 0, err
        assert list(table_rows(out)) == ["wait-2"], "alice has decided wait-1 already"
        assert out.splitlines()[0].split()[:3] == ["NAME", "REQUESTER", "GRANTEE"]

        code, out, err = await bob("list", "--pending")
        rows = table_rows(out)
        assert sorted(rows) == ["wait-1", "wait-2"]
        assert rows["wait-1"][4] == "1/2"
        assert rows["wait-2"][4] == "0/2"

        code, out, err = await dave("list", "--pending")
        assert code == 0
        assert out == ""
        assert f'No AccessRequests await your approval in namespace "{w.target}".' in err

        code, out, _ = await pipeline("list", "--pending", "-o", "name")
        assert out == "", "the requester is no approver of its own requests"


# --- errors -------------------------------------------------------------------------------------


async def test_errors_read_as_one_line_with_exit_2(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with world(cluster) as w:
        dave = person_shell(w, capsys, tmp_path, "dave")
        code, _, err = await dave("describe", "deploy-9")
        assert code == 2
        assert err.startswith("zsp: ")
        assert err.count("\n") == 1
        assert "forbidden" in err.lower(), "the API's own message"
        assert "dave" in err

        admin = shell_for(cluster, capsys, tmp_path, "admin", cluster.admin_token, w.target)
        code, _, err = await admin("describe", "deploy-9")
        assert (code, err) == (2, f'zsp: accessrequest "deploy-9" not found in namespace "{w.target}"\n')
        code, _, err = await admin("approve", "deploy-9", "-n", w.ci)
        assert (code, err) == (2, f'zsp: accessrequest "deploy-9" not found in namespace "{w.ci}"\n')

    nowhere = tmp_path / "nowhere.kubeconfig"
    config: dict[str, Any] = cluster.kubeconfig(namespace="default")
    config["clusters"][0]["cluster"] = {"server": "http://127.0.0.1:9"}
    nowhere.write_text(yaml.safe_dump(config))
    code, _, err = await Shell(capsys, nowhere)("list")
    assert code == 2
    assert err.startswith("zsp: cannot reach the API server at http://127.0.0.1:9")
    assert err.count("\n") == 1
