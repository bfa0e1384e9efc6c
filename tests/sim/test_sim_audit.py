"""Audit events to a webhook, as kube-apiserver sends them with an audit policy in batch mode."""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from simkit import Raw

from zsp_operator.cli.sim import register, run
from zsp_operator.core.rbac import Attributes
from zsp_operator.serving.pki import issue_serving_pki
from zsp_operator.sim import SimServer, UserInfo, serve_in_thread
from zsp_operator.sim.audit import Policy, load_policy, parse_policy, source_ips, timestamp
from zsp_operator.sim.auditwebhook import BatchingWebhook, load_webhook_config

WEBHOOK_TOKEN = "audit-receiver-token"  # a test credential
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ROBOT = "system:serviceaccount:default:robot"

ALICE = UserInfo("alice", groups=("developers", "system:authenticated"))
ROBOT_USER = UserInfo(ROBOT, groups=("system:serviceaccounts", "system:authenticated"))


def policy(*rules: dict[str, Any], **top: Any) -> Policy:
    return parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **top})


# --- the policy ---------------------------------------------------------------------------------

GET_POD = Attributes("get", "", "pods", name="web", namespace="default")
POD_LOG = Attributes("get", "", "pods", "log", name="web", namespace="default")
LIST_SECRETS = Attributes("list", "", "secrets", namespace="kube-system")
CREATE_DEPLOYMENT = Attributes("create", "apps", "deployments", namespace="default")
LIST_NODES = Attributes("list", "", "nodes")
HEALTHZ = Attributes("get", path="/healthz/etcd")


@pytest.mark.parametrize(
    ("rule", "user", "attrs", "matches"),
    [
        ({}, ALICE, GET_POD, True),
        ({"users": ["alice"]}, ALICE, GET_POD, True),
        ({"users": ["bob"]}, ALICE, GET_POD, False),
        ({"userGroups": ["developers"]}, ALICE, GET_POD, True),
        ({"userGroups": ["system:serviceaccounts"]}, ALICE, GET_POD, False),
        ({"userGroups": ["system:serviceaccounts"]}, ROBOT_USER, GET_POD, True),
        ({"verbs": ["get", "watch"]}, ALICE, GET_POD, True),
        ({"verbs": ["list"]}, ALICE, GET_POD, False),
        ({"namespaces": ["default"]}, ALICE, GET_POD, True),
        ({"namespaces": ["default"]}, ALICE, LIST_SECRETS, False),
        ({"namespaces": [""]}, ALICE, LIST_NODES, True),  # cluster scope is the namespace ""
        ({"namespaces": ["default"]}, ALICE, HEALTHZ, False),
        ({"resources": [{"group": ""}]}, ALICE, GET_POD, True),
        ({"resources": [{"group": ""}]}, ALICE, CREATE_DEPLOYMENT, False),
        ({"resources": [{"group": "apps", "resources": ["deployments"]}]}, ALICE, CREATE_DEPLOYMENT, True),
        ({"resources": [{"resources": ["pods"]}]}, ALICE, GET_POD, True),
        ({"resources": [{"resources": ["pods"]}]}, ALICE, POD_LOG, False),
        ({"resources": [{"resources": ["pods/log"]}]}, ALICE, POD_LOG, True),
        ({"resources": [{"resources": ["pods/log"]}]}, ALICE, GET_POD, False),
        ({"resources": [{"resources": ["*/log"]}]}, ALICE, POD_LOG, True),
        ({"resources": [{"resources": ["pods/*"]}]}, ALICE, POD_LOG, True),
        ({"resources": [{"resources": ["*"]}]}, ALICE, POD_LOG, True),
        ({"resources": [{"resources": ["*"]}]}, ALICE, CREATE_DEPLOYMENT, False),  # group "" only
        ({"resources": [{"resources": ["pods"], "resourceNames": ["web"]}]}, ALICE, GET_POD, True),
        ({"resources": [{"resources": ["pods"], "resourceNames": ["db"]}]}, ALICE, GET_POD, False),
        ({"resources": [{"resources": ["*"]}]}, ALICE, HEALTHZ, False),
        ({"nonResourceURLs": ["/healthz*"]}, ALICE, HEALTHZ, True),
        ({"nonResourceURLs": ["/healthz/etcd"]}, ALICE, HEALTHZ, True),
        ({"nonResourceURLs": ["/healthz"]}, ALICE, HEALTHZ, False),
        ({"nonResourceURLs": ["*"]}, ALICE, GET_POD, False),
        (
            {"users": ["alice"], "verbs": ["list"], "namespaces": ["kube-system"]},
            ALICE,
            LIST_SECRETS,
            True,
        ),
        ({"users": ["alice"], "verbs": ["get"], "namespaces": ["kube-system"]}, ALICE, LIST_SECRETS, False),
    ],
)
def test_a_rule_matches_as_the_real_policy_checker(
    rule: dict[str, Any], user: UserInfo, attrs: Attributes, matches: bool
) -> None:
    level, _ = policy({"level": "Metadata", **rule}).evaluate(user, attrs)
    assert level == ("Metadata" if matches else "None")


def test_the_first_matching_rule_wins_and_no_match_is_none() -> None:
    checked = policy(
        {"level": "None", "users": ["system:kube-proxy"]},
        {"level": "RequestResponse", "resources": [{"resources": ["secrets"]}]},
        {"level": "Request", "namespaces": ["default"], "omitStages": ["RequestReceived"]},
        {"level": "Metadata", "verbs": ["list"]},
        omitStages=["ResponseStarted"],
    )
    proxy = UserInfo("system:kube-proxy")
    assert checked.evaluate(proxy, LIST_SECRETS) == ("None", ("ResponseStarted",))
    assert checked.evaluate(ALICE, LIST_SECRETS) == ("RequestResponse", ("ResponseStarted",))
    assert checked.evaluate(ALICE, GET_POD) == ("Request", ("ResponseStarted", "RequestReceived"))
    assert checked.evaluate(ALICE, LIST_NODES)[0] == "Metadata"
    assert checked.evaluate(ALICE, HEALTHZ)[0] == "None"


@pytest.mark.parametrize(
    ("document", "field_named"),
    [
        ([], "policy"),
        ({"apiVersion": "audit.k8s.io/v1beta1", "kind": "Policy"}, "apiVersion"),
        ({"apiVersion": "audit.k8s.io/v1", "kind": "AuditPolicy"}, "kind"),
        ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": {}}, "rules"),
        ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rule": []}, "policy.rule"),
        ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["Done"]}, "omitStages[0]"),
        ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": ["Metadata"]}, "rules[0]"),
        ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{}]}, "rules[0].level"),
        ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "All"}]}, "rules[0].level"),
    ]
    + [
        (
            {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "None"}, rule]},
            named,
        )
        for rule, named in [
            ({"level": "Metadata", "users": "alice"}, "rules[1].users"),
            ({"level": "Metadata", "userGroups": [None]}, "rules[1].userGroups"),
            ({"level": "Metadata", "verbs": [3]}, "rules[1].verbs"),
            ({"level": "Metadata", "namespace": ["default"]}, "rules[1].namespace"),
            ({"level": "Metadata", "resources": {"group": ""}}, "rules[1].resources"),
            ({"level": "Metadata", "resources": [{"group": 1}]}, "rules[1].resources[0].group"),
            ({"level": "Metadata", "resources": [{"resource": ["pods"]}]}, "rules[1].resources[0].resource"),
            (
                {"level": "Metadata", "resources": [{"resourceNames": ["a"]}]},
                "rules[1].resources[0].resourceNames",
            ),
            ({"level": "Metadata", "nonResourceURLs": ["healthz"]}, "rules[1].nonResourceURLs[0]"),
            ({"level": "Metadata", "nonResourceURLs": ["/a*/b"]}, "rules[1].nonResourceURLs[0]"),
            (
                {"level": "Metadata", "nonResourceURLs": ["/api"], "namespaces": ["default"]},
                "rules[1].nonResourceURLs",
            ),
            ({"level": "Metadata", "omitStages": ["ResponseDone"]}, "rules[1].omitStages[0]"),
        ]
    ],
)
def test_a_malformed_policy_is_rejected_naming_the_field(document: Any, field_named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field_named) + ":"):
        parse_policy(document)


def test_a_policy_file_is_read_and_its_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
    assert load_policy(good).evaluate(ALICE, GET_POD)[0] == "Metadata"
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: rules\[0\]\.level"):
        load_policy(bad)


def test_event_helpers_follow_the_real_formats() -> None:
    assert timestamp(1796457600.123456) == "2026-12-05T08:00:00.123456Z"
    assert source_ips("", "", "127.0.0.1") == ["127.0.0.1"]
    assert source_ips("10.0.0.1, 10.0.0.2", "10.0.0.2", "127.0.0.1") == ["10.0.0.1", "10.0.0.2", "127.0.0.1"]


# --- the webhook kubeconfig ---------------------------------------------------------------------


def webhook_kubeconfig(server: str, cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "audit", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "sim", "user": user}],
        "contexts": [{"name": "default", "context": {"cluster": "audit", "user": "sim"}}],
        "current-context": "default",
    }


def test_the_webhook_kubeconfig_is_read_as_client_go_does(tmp_path: Path) -> None:
    pki = issue_serving_pki()
    (tmp_path / "ca.crt").write_bytes(pki.ca_cert)
    (tmp_path / "token").write_text("from-a-file\n")
    by_path = tmp_path / "by-path.yaml"
    by_path.write_text(
        yaml.safe_dump(
            webhook_kubeconfig(
                "https://127.0.0.1:9443/audit", {"certificate-authority": "ca.crt"}, {"tokenFile": "token"}
            )
        )
    )
    target = load_webhook_config(by_path)
    assert target.server == "https://127.0.0.1:9443/audit"
    assert target.ssl_context is not None
    assert target.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert target.headers() == {"Authorization": "Bearer from-a-file"}

    inline = tmp_path / "inline.yaml"
    data = base64.b64encode(pki.ca_cert).decode()
    client = {
        "client-certificate-data": base64.b64encode(pki.serving_cert).decode(),
        "client-key-data": base64.b64encode(pki.serving_key).decode(),
    }
    inline.write_text(
        yaml.safe_dump(
            webhook_kubeconfig("https://localhost:1/", {"certificate-authority-data": data}, client)
        )
    )
    assert load_webhook_config(inline).headers() == {}

    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(webhook_kubeconfig("localhost:1", {}, {"token": "t"})))
    with pytest.raises(ValueError, match="server"):
        load_webhook_config(broken)


# --- end to end ---------------------------------------------------------------------------------


@dataclass
class Receiver:
    """An HTTPS audit webhook that wants a bearer token; it can fail its first POSTs."""

    url: str = ""
    failures: int = 0  # answer this many POSTs with 500 first
    posts: int = 0
    batches: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (arrival, EventList)

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {WEBHOOK_TOKEN}":
            return web.Response(status=401)
        self.posts += 1
        if self.failures:
            self.failures -= 1
            return web.Response(status=500, text="not now")
        self.batches.append((time.monotonic(), await request.json()))
        return web.json_response({})

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for _, batch in self.batches for event in batch["items"]]


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    pki = issue_serving_pki()
    cert, key = pki.write(tmp_path)
    (tmp_path / "ca.crt").write_bytes(pki.ca_cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiving = Receiver()
    app = web.Application()
    app.router.add_post("/audit", receiving.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    receiving.url = f"https://127.0.0.1:{port}/audit"
    yield receiving
    await runner.cleanup()


POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "users": ["zsp-admin"]},  # the setup's own calls
        {"level": "None", "namespaces": ["kube-system"]},
        {"level": "RequestResponse", "resources": [{"resources": ["secrets"]}]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
    ],
}


def write_config(tmp_path: Path, receiver: Receiver, token: str = WEBHOOK_TOKEN) -> Path:
    config = tmp_path / "webhook.yaml"  # its CA path is relative to it, as client-go reads it
    cluster = {"certificate-authority": "ca.crt"}
    config.write_text(yaml.safe_dump(webhook_kubeconfig(receiver.url, cluster, {"token": token})))
    return config


def audited_sim(tmp_path: Path, receiver: Receiver, **options: Any) -> SimServer:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    config = write_config(tmp_path, receiver)
    return SimServer(audit_policy_file=policy_file, audit_webhook_config_file=config, **options)


async def robot_token(raw: Raw) -> str:
    """A ServiceAccount token that may read ConfigMaps in default, and nothing else."""
    await raw.ok("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "robot"}})
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/default"
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]
    await raw.ok("POST", f"{rbac}/roles", {"metadata": {"name": "reader"}, "rules": rules})
    subject = {"kind": "ServiceAccount", "name": "robot", "namespace": "default"}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}
    binding = {"metadata": {"name": "reader"}, "subjects": [subject], "roleRef": role_ref}
    await raw.ok("POST", f"{rbac}/rolebindings", binding)
    await raw.ok("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "settings"}})
    minted = await raw.ok(
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    return str(minted["status"]["token"])


async def wait_for(check: Callable[[], Any], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


async def test_requests_reach_the_webhook_as_a_batched_event_list(tmp_path: Path, receiver: Receiver) -> None:
    async with (
        audited_sim(tmp_path, receiver, audit_webhook_batch_max_wait=0.6) as sim,
        aiohttp.ClientSession() as session,
    ):
        raw = Raw(sim, session)
        token = await robot_token(raw)
        first = time.monotonic()
        allowed = "/api/v1/namespaces/default/configmaps/settings"
        async with session.get(
            sim.url + allowed, headers={"Authorization": f"Bearer {token}", "User-Agent": "robot/1.0"}
        ) as response:
            assert response.status == 200
            audit_id = response.headers["Audit-ID"]
        assert (await raw.call("GET", "/api/v1/namespaces/default/secrets/db", token=token))[0] == 403
        assert (await raw.call("GET", "/api/v1/namespaces/kube-system/configmaps", token=token))[0] == 403
        assert (await raw.call("GET", "/api/v1/namespaces/default/configmaps", token="nonsense"))[0] == 401
        assert (await raw.call("GET", "/version", token=token))[0] == 200
        await wait_for(lambda: receiver.batches)
        arrived, batch = receiver.batches[0]

    assert arrived - first >= 0.6 * 0.9  # held for the batch's max wait, not sent at once
    assert batch["kind"] == "EventList"
    assert batch["apiVersion"] == "audit.k8s.io/v1"
    assert batch["metadata"] == {}
    # The admin's calls, kube-system and the 401 are not logged; the rest came in one batch.
    got, forbidden, version = batch["items"]
    assert len(receiver.events) == 3

    for event in (got, forbidden, version):
        assert event["kind"] == "Event"
        assert event["apiVersion"] == "audit.k8s.io/v1"
        assert event["stage"] == "ResponseComplete"
        assert event["user"]["username"] == ROBOT
        assert "system:serviceaccounts:default" in event["user"]["groups"]
        assert event["user"]["uid"]
        [credential] = event["user"]["extra"]["authentication.kubernetes.io/credential-id"]
        assert credential.startswith("JTI=")
        assert event["sourceIPs"] == ["127.0.0.1"]
        assert MICROTIME.match(event["requestReceivedTimestamp"])
        assert event["requestReceivedTimestamp"] <= event["stageTimestamp"]
        assert MICROTIME.match(event["stageTimestamp"])
    assert len({event["auditID"] for event in (got, forbidden, version)}) == 3

    assert got["auditID"] == audit_id
    assert got["level"] == "Metadata"
    assert got["verb"] == "get"
    assert got["requestURI"] == allowed
    assert got["userAgent"] == "robot/1.0"
    assert got["objectRef"] == {
        "resource": "configmaps",
        "namespace": "default",
        "name": "settings",
        "apiVersion": "v1",
    }
    assert got["responseStatus"] == {"metadata": {}, "code": 200}
    assert got["annotations"] == {
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": 'RBAC: allowed by RoleBinding "reader/default" of Role "reader" '
        'to ServiceAccount "default/robot"',
    }

    assert forbidden["level"] == "RequestResponse"
    assert forbidden["objectRef"]["resource"] == "secrets"
    assert forbidden["responseStatus"]["code"] == 403
    assert forbidden["responseStatus"]["status"] == "Failure"
    assert forbidden["responseStatus"]["reason"] == "Forbidden"
    assert f'User "{ROBOT}" cannot get resource "secrets"' in forbidden["responseStatus"]["message"]
    assert forbidden["annotations"]["authorization.k8s.io/decision"] == "forbid"

    assert version["verb"] == "get"
    assert version["requestURI"] == "/version"
    assert "objectRef" not in version
    assert version["annotations"]["authorization.k8s.io/decision"] == "allow"


async def test_a_full_batch_goes_at_once_and_the_rest_is_sent_on_stop(
    tmp_path: Path, receiver: Receiver
) -> None:
    sim = audited_sim(tmp_path, receiver, audit_webhook_batch_max_size=2, audit_webhook_batch_max_wait=30)
    async with sim, aiohttp.ClientSession() as session:
        raw = Raw(sim, session)
        token = await robot_token(raw)
        for _ in range(3):
            await raw.ok("GET", "/api/v1/namespaces/default/configmaps", token=token)
        await wait_for(lambda: receiver.batches, within=5)  # long before the 30s wait
        assert [len(batch["items"]) for _, batch in receiver.batches] == [2]
    assert [len(batch["items"]) for _, batch in receiver.batches] == [2, 1]
    assert {event["verb"] for event in receiver.events} == {"list"}


async def test_a_failed_batch_is_retried_until_the_receiver_recovers(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.failures = 2
    sim = audited_sim(tmp_path, receiver, audit_webhook_batch_max_wait=0.2, audit_webhook_initial_backoff=0.1)
    async with sim, aiohttp.ClientSession() as session:
        raw = Raw(sim, session)
        token = await robot_token(raw)
        await raw.ok("GET", "/api/v1/namespaces/default/configmaps/settings", token=token)
        await wait_for(lambda: receiver.batches)
    assert sim.audit_webhook is not None
    assert (sim.audit_webhook.sent, sim.audit_webhook.dropped) == (1, 0)
    assert receiver.posts == 3
    [event] = receiver.events
    assert event["objectRef"]["name"] == "settings"


async def test_a_watch_is_logged_when_it_ends(tmp_path: Path, receiver: Receiver) -> None:
    async with (
        audited_sim(tmp_path, receiver, audit_webhook_batch_max_wait=0.2) as sim,
        aiohttp.ClientSession() as session,
    ):
        raw = Raw(sim, session)
        token = await robot_token(raw)
        status, _ = await raw.call(
            "GET", "/api/v1/namespaces/default/configmaps", token=token, watch="true", timeoutSeconds="1"
        )
        assert status == 200
        await wait_for(lambda: receiver.events)
    [event] = receiver.events
    assert event["verb"] == "watch"
    assert event["responseStatus"] == {"metadata": {}, "code": 200}
    assert event["requestURI"] == "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1"
    assert event["stageTimestamp"] > event["requestReceivedTimestamp"]


def test_both_audit_files_are_needed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        SimServer(audit_policy_file=tmp_path / "policy.yaml")


async def test_a_watch_the_client_leaves_is_logged_too(tmp_path: Path, receiver: Receiver) -> None:
    async with (
        audited_sim(tmp_path, receiver, audit_webhook_batch_max_wait=0.2) as sim,
        aiohttp.ClientSession() as session,
    ):
        token = await robot_token(Raw(sim, session))
        url = sim.url + "/api/v1/namespaces/default/configmaps?watch=1"
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            await response.content.readline()  # the ADDED event of "settings"
            response.close()
        await wait_for(lambda: receiver.events)
    [event] = receiver.events
    assert event["verb"] == "watch"
    assert event["responseStatus"]["code"] == 200


async def test_serve_in_thread_passes_the_audit_options(tmp_path: Path, receiver: Receiver) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        yaml.safe_dump({**POLICY, "rules": [{"level": "Metadata", "users": ["zsp-admin"]}]})
    )
    options = {
        "audit_webhook_batch_max_wait": 0.2,
        "audit_webhook_config_file": write_config(tmp_path, receiver),
    }
    with serve_in_thread(audit_policy_file=policy_file, **options) as sim:
        async with aiohttp.ClientSession() as session:
            await Raw(sim, session).ok("GET", "/api/v1/namespaces")
        await wait_for(lambda: any(e["objectRef"]["resource"] == "namespaces" for e in receiver.events))
    assert all(event["user"]["username"] == "zsp-admin" for event in receiver.events)


def test_zsp_sim_takes_the_audit_flags_of_kube_apiserver() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "sim",
            "--audit-policy-file=policy.yaml",
            "--audit-webhook-config-file=webhook.yaml",
            "--audit-webhook-batch-max-wait=500ms",
            "--audit-webhook-batch-max-size=10",
        ]
    )
    assert (args.audit_webhook_batch_max_wait, args.audit_webhook_batch_max_size) == (0.5, 10)
    assert args.audit_webhook_initial_backoff == 10.0
    half = parser.parse_args(["sim", "--no-crds", "--audit-policy-file=policy.yaml"])
    assert run(half) == 2


async def test_a_refused_batch_is_dropped_without_retrying(tmp_path: Path, receiver: Receiver) -> None:
    target = load_webhook_config(write_config(tmp_path, receiver, token="wrong"))
    webhook = BatchingWebhook(target, max_size=1, max_wait=0.1, initial_backoff=0.01)
    await webhook.start()
    webhook.emit({"kind": "Event"})
    await wait_for(lambda: webhook.dropped)
    await webhook.close()
    assert (webhook.sent, webhook.dropped, receiver.posts) == (0, 1, 0)  # the receiver said 401


async def test_events_beyond_the_buffer_are_dropped_and_counted(tmp_path: Path, receiver: Receiver) -> None:
    target = load_webhook_config(write_config(tmp_path, receiver))
    webhook = BatchingWebhook(target, max_size=2, max_wait=30, buffer_size=3)
    for number in range(5):
        webhook.emit({"kind": "Event", "number": number})
    assert webhook.dropped == 2
    await webhook.start()
    await webhook.close()
    assert [event["number"] for event in receiver.events] == [0, 1, 2]
    assert [len(batch["items"]) for _, batch in receiver.batches] == [2, 1]
