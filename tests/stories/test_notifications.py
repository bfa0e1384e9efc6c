"""Notification stories (every tier): people hear where they work, and nothing waits for them.

A local HTTP receiver stands in for the services: Apprise's `json://` transport posts to it
as it would to Slack or Teams, and the generic webhook posts CloudEvents to it. The routes
file is written by the story, as the chart would mount it from a Secret.

Covered: a request needing two approvals notifies the approvers' route once, with the approve
and deny commands, who asks, for whom, what, where, how long, why and the approvals so far
and needed, then once more when approved, and the webhook gets the grant's CloudEvents;
break-glass notifies its route on use and on end although its policy names no route; a
failing receiver is retried and counted, a hanging one gives up after its attempts with a
Warning Event and a failure count, and neither delays the grant nor its revocation; an
approver's denial and an approval timeout are told once each; every
message any story sent carries no JWT, no kubeconfig, no Secret data, no target URL or header.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from harness import apply, eventually, running_operator, wait_for_phase
from tiers import Cluster
from world import World, world
from zsp_operator.core import constants as c
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import ACCESS_POLICIES, ACCESS_REQUESTS, EVENTS, SECRETS
from zsp_operator.observe.metrics import Metrics

HOOK_TOKEN = "hook-bearer-7f3a9c"  # a header only the webhook target's requests carry
PATH_TOKEN = "T0K3N-in-the-path-91b2"  # a secret in a target URL, as Slack's webhook URLs have
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
KUBECONFIG_MARKS = (
    "client-certificate-data",
    "client-key-data",
    "certificate-authority-data",
    "kind: Config",
)


def approvals(required: int, timeout: str = "30m") -> dict[str, Any]:
    return {
        "approval": {
            "required": required,
            "approvers": [{"kind": "Group", "name": "platform-leads"}],
            "timeout": timeout,
        }
    }


async def people_may_approve(w: World) -> None:
    """The platform leads may read and annotate requests in the target namespace (to approve)."""
    meta = {"namespace": w.target, "name": "zsp-approvers"}
    rules = [{"apiGroups": [c.GROUP], "resources": [c.PLURAL_REQUEST], "verbs": ["get", "list", "patch"]}]
    rbac = "rbac.authorization.k8s.io"
    await apply(
        w.admin,
        [
            {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": meta, "rules": rules},
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "zsp-approvers"},
                "subjects": [{"kind": "Group", "name": "platform-leads", "apiGroup": rbac}],
            },
        ],
    )


async def approve_as(w: World, person: str, request: str, key: str = c.ANNOTATION_APPROVE) -> None:
    """`kubectl zsp approve` (or, with `key`, `deny`), as that person: the webhook records who they are."""
    async with await Kube.from_dict(w.cluster.kubeconfig(w.cluster.user_token(person))) as kube:
        await kube.patch(ACCESS_REQUESTS, request, {"metadata": {"annotations": {key: "ok"}}}, w.target)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def text(self) -> str:
        """What a person reads: Apprise's message, or the CloudEvent's data.text."""
        data = self.json
        return str(data.get("message") or (data.get("data") or {}).get("text") or "")

    @property
    def title(self) -> str:
        data = self.json
        return str(data.get("title") or (data.get("data") or {}).get("title") or "")


@dataclass
class Receiver:
    """The stand-in for Slack and a webhook service: records every POST; `/flaky*` fails its
    first `fail_first` calls, `/dead*` never answers (until the story ends)."""

    port: int = 0
    fail_first: int = 2
    received: list[Received] = field(default_factory=list)
    flaky_calls: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    secrets: list[str] = field(default_factory=list)  # what the story knows must never be sent

    def url(self, path: str) -> str:
        return f"127.0.0.1:{self.port}/{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == f"/{path}"]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body))
        if request.path.startswith("/flaky"):
            self.flaky_calls += 1
            if self.flaky_calls <= self.fail_first:
                return web.Response(status=503)
        if request.path.startswith("/dead"):
            await self.release.wait()
            return web.Response(status=503)
        return web.Response(status=200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield found
    finally:
        found.release.set()
        await runner.cleanup()
    # Every message of every story passes this check.
    assert_nothing_secret(found.received, found.secrets)


def assert_nothing_secret(received: list[Received], secrets: list[str]) -> None:
    for message in received:
        body = message.body.decode()
        assert not JWT.search(body), f"a JWT-shaped value in a message to {message.path}: {body}"
        for mark in KUBECONFIG_MARKS:
            assert mark not in body, f"kubeconfig material ({mark}) in a message to {message.path}"
        for secret in (HOOK_TOKEN, PATH_TOKEN, *secrets):
            assert secret not in body, f"secret material in a message to {message.path}"


def write_routes(tmp_path: Path, receiver: Receiver, **more: Any) -> str:
    """The operator's routes file: Apprise `json://` targets and CloudEvent webhooks on the receiver."""
    routes = {
        "targets": {
            "approvers": {"apprise": f"json://{receiver.url('approvers')}"},
            "hook": {
                "webhook": f"http://{receiver.url('hook')}",
                "headers": {"Authorization": f"Bearer {HOOK_TOKEN}"},
            },
            "oncall": {"webhook": f"http://{receiver.url('oncall')}"},
            "flaky": {"apprise": f"json://{receiver.url('flaky')}"},
            "dead": {"webhook": f"http://{receiver.url('dead/' + PATH_TOKEN)}"},
        },
        **more,
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes))
    return str(path)


def counter(metrics: Metrics, family: str, **labels: str) -> float:
    total = 0.0
    for metric in getattr(metrics, family).collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_two_approvers_hear_once_with_the_commands(
    cluster: Cluster, receiver: Receiver, tmp_path: Path
) -> None:
    routes = write_routes(tmp_path, receiver)
    notify = [
        {"events": ["approvalNeeded", "approved"], "targets": ["approvers"]},
        {"events": ["issued", "ended"], "targets": ["hook"]},
    ]
    async with (
        world(cluster, **approvals(2), notify=notify) as w,
        running_operator(cluster, notify_config=routes) as op,
    ):
        await people_may_approve(w)
        await w.file(w.request("needs-two", ttl="10m"))
        await wait_for_phase(w.admin, w.target, "needs-two", "Pending")
        [asked] = await eventually(lambda: receiver.at("approvers"))
        assert asked.title == f"approval needed: AccessRequest {w.target}/needs-two"
        lines = asked.text.splitlines()
        assert f"who asks: {w.pipeline_user}" in lines
        assert f"for: ServiceAccount {w.ci}/deployer" in lines
        assert "what: deploy (apps/deployments: get,list,patch,update)" in lines
        assert f"where: namespace {w.target}" in lines
        assert "how long: 10m" in lines
        assert f"reason: story {w.id}: deploy build 4711" in lines
        assert "approvals: 0 of 2 (none yet)" in lines
        assert f"run: kubectl zsp approve needs-two -n {w.target}" in lines
        assert f"run: kubectl zsp deny needs-two -n {w.target}" in lines

        await approve_as(w, "alice", "needs-two")
        await approve_as(w, "bob", "needs-two")
        await wait_for_phase(w.admin, w.target, "needs-two", "Active")
        await eventually(lambda: len(receiver.at("approvers")) >= 2 and receiver.at("hook"))
        await w.admin.patch(ACCESS_REQUESTS, "needs-two", {"spec": {"done": True}}, w.target)
        await wait_for_phase(w.admin, w.target, "needs-two", "Completed")
        await eventually(lambda: len(receiver.at("hook")) >= 2)

        titles = [r.title.split(":")[0] for r in receiver.at("approvers")]
        assert titles == ["approval needed", "approved"], "one message per event, nothing repeated"
        assert "approvals: 2 of 2 (alice, bob)" in receiver.at("approvers")[1].text.splitlines()
        issued, ended = receiver.at("hook")
        assert issued.headers["Content-Type"].startswith("application/cloudevents+json")
        assert issued.headers["Authorization"] == f"Bearer {HOOK_TOKEN}", "the routes file's header"
        event = issued.json
        assert event["specversion"] == "1.0"
        assert event["type"] == "dev.zsp.accessrequest.issued"
        assert event["subject"] == f"{w.target}/needs-two"
        assert event["data"]["request"]["name"] == "needs-two"
        assert event["data"]["approvals"] == ["alice", "bob"]
        assert ended.json["type"] == "dev.zsp.accessrequest.ended"
        assert "Completed" in ended.json["data"]["outcome"]
        assert not receiver.at("oncall"), "an ordinary request never reaches the break-glass route"
        assert counter(op.controller.observer.metrics, "notifications_sent", target="approvers") == 2


async def test_break_glass_notifies_its_route_on_use_and_on_end(
    cluster: Cluster, receiver: Receiver, tmp_path: Path
) -> None:
    routes = write_routes(tmp_path, receiver, breakGlass=["oncall"])
    spec = {"breakGlass": True, "maxTTL": "30m", "defaultTTL": "10m", "approval": {"required": 0}}
    async with (
        world(cluster, **spec) as w,
        running_operator(cluster, break_glass_max_ttl="30m", notify_config=routes),
    ):
        await w.file(w.request("glass"))
        await wait_for_phase(w.admin, w.target, "glass", "Active")
        [used] = await eventually(lambda: receiver.at("oncall"))
        assert used.json["type"] == "dev.zsp.accessrequest.breakGlass"
        assert used.title == f"BREAK-GLASS access in use: AccessRequest {w.target}/glass"
        assert used.json["data"]["breakGlass"] is True
        assert f"run: kubectl zsp done glass -n {w.target}  # end it now" in used.text.splitlines()

        await w.admin.patch(ACCESS_REQUESTS, "glass", {"spec": {"done": True}}, w.target)
        await wait_for_phase(w.admin, w.target, "glass", "Completed")
        await eventually(lambda: len(receiver.at("oncall")) == 2)
        ended = receiver.at("oncall")[1]
        assert ended.json["type"] == "dev.zsp.accessrequest.ended"
        assert ended.title == f"access ended: AccessRequest {w.target}/glass"


async def test_failing_and_dead_targets_are_retried_counted_and_never_in_the_way(
    cluster: Cluster, receiver: Receiver, tmp_path: Path
) -> None:
    routes = write_routes(tmp_path, receiver)
    notify = [{"events": ["issued", "ended"], "targets": ["flaky", "dead"]}]
    async with (
        world(cluster, notify=notify) as w,
        running_operator(cluster, notify_config=routes, notify_attempts=3, notify_timeout="1s") as op,
    ):
        await w.file(w.request("flaky-1", ephemeral=True, ttl="4s"))
        active = await wait_for_phase(w.admin, w.target, "flaky-1", "Active", within=5)
        secret = await w.admin.get(SECRETS, "flaky-1-kubeconfig", w.ci)
        assert secret is not None
        delivered = base64.b64decode(secret["data"][c.DELIVERY_KEY]).decode()
        token = yaml.safe_load(delivered)["users"][0]["user"]["token"]
        receiver.secrets += [token, secret["data"][c.DELIVERY_KEY]]

        expired = await wait_for_phase(w.admin, w.target, "flaky-1", "Expired", within=10)
        assert expired["status"]["revocationLagSeconds"] < 1.0, "a dead target never delays revocation"
        assert active["status"]["issuedAt"]

        metrics = op.controller.observer.metrics
        await eventually(lambda: counter(metrics, "notifications_sent", target="flaky") == 2, within=10)
        assert counter(metrics, "notification_retries", target="flaky") == receiver.fail_first
        assert [r.json["title"].split(":")[0] for r in receiver.at("flaky")][-2:] == [
            "access granted",
            "access ended",
        ]

        # The hanging target: each attempt times out after 1s, three attempts, then it gives up.
        await eventually(
            lambda: counter(metrics, "notification_failures", target="dead", reason="gave-up") >= 1, within=15
        )
        assert counter(metrics, "notification_retries", target="dead") >= 2
        warnings = await eventually(lambda: _failed_events(w.admin, w.target, "flaky-1"), within=10)
        assert "notification issued to target dead failed after 3 attempt(s)" in warnings[0]["message"]
        assert PATH_TOKEN not in warnings[0]["message"], "an Event never shows a target's URL"
        assert warnings[0]["type"] == "Warning"


async def _failed_events(admin: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    events = await admin.list(EVENTS, namespace, field_selector=f"involvedObject.name={name}")
    return [e for e in events if e["reason"] == "NotificationFailed"]


async def test_a_policy_naming_an_unknown_event_is_refused(cluster: Cluster) -> None:
    notify = [{"events": ["approvalNeeded"], "targets": ["approvers"]}]
    async with world(cluster, notify=notify) as w, running_operator(cluster):
        body = w.policy_body(notify=[{"events": ["aproved"], "targets": ["approvers"]}])
        body["metadata"]["name"] = f"{w.policy}-typo"
        with pytest.raises(KubeError) as refused:
            await w.admin.create(ACCESS_POLICIES, body)
        message = refused.value.message
        assert "spec.notify[0].events[0]" in message
        assert "use one of approvalNeeded, approved" in message


async def test_a_denial_and_a_timeout_are_told_once_each(
    cluster: Cluster, receiver: Receiver, tmp_path: Path
) -> None:
    routes = write_routes(tmp_path, receiver)
    notify = [{"events": ["denied", "timedOut"], "targets": ["hook"]}]
    async with (
        world(cluster, **approvals(1, timeout="2s"), notify=notify) as w,
        running_operator(cluster, notify_config=routes),
    ):
        await people_may_approve(w)
        await w.file(w.request("refused"))
        await w.file(w.request("slow"))
        await wait_for_phase(w.admin, w.target, "refused", "Pending")
        await approve_as(w, "alice", "refused", key=c.ANNOTATION_DENY)
        await wait_for_phase(w.admin, w.target, "refused", "Denied")
        await wait_for_phase(w.admin, w.target, "slow", "TimedOut", within=10)
        await eventually(lambda: len(receiver.at("hook")) >= 2)
        by_subject = {r.json["subject"]: r.json for r in receiver.at("hook")}
        assert len(receiver.at("hook")) == 2, "one message per event per request"
        denied = by_subject[f"{w.target}/refused"]
        assert denied["type"] == "dev.zsp.accessrequest.denied"
        assert denied["data"]["outcome"] == "denied by alice"
        timed_out = by_subject[f"{w.target}/slow"]
        assert timed_out["type"] == "dev.zsp.accessrequest.timedOut"
        assert "approvals: 0 of 1 (none yet)" in timed_out["data"]["text"].splitlines()
