"""Admission webhooks over HTTPS: mutation, denial, failure policies, what the review carries."""

from __future__ import annotations

import base64
import copy
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from simkit import GADGET_CRD, GADGETS, GROUP, Raw, gadget

from zsp_operator.sim import SimServer
from zsp_operator.sim.certs import self_signed

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


class Hooks:
    """A small HTTPS webhook server that records the reviews it receives."""

    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []
        self.ca_bundle = ""
        self.url = ""

    async def mutate(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        patch = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
        return web.json_response(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": True,
                    "patchType": "JSONPatch",
                    "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
            }
        )

    async def deny(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        return web.json_response(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": False,
                    "status": {"code": 403, "message": "no configmaps named forbidden"},
                },
            }
        )


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    certificate = self_signed()
    recorder = Hooks()
    app = web.Application()
    app.router.add_post("/mutate", recorder.mutate)
    app.router.add_post("/deny", recorder.deny)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certificate.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recorder.url = f"https://127.0.0.1:{port}"
    recorder.ca_bundle = base64.b64encode(certificate.cert_pem).decode()
    yield recorder
    await runner.cleanup()


def webhook_config(
    kind: str,
    name: str,
    client_config: dict[str, Any],
    *,
    resources: list[str] | None = None,
    operations: list[str] | None = None,
    failure_policy: str = "Fail",
    object_selector: dict[str, Any] | None = None,
) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "name": name,
        "clientConfig": client_config,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": failure_policy,
        "timeoutSeconds": 2,
        "rules": [
            {
                "apiGroups": ["*"],
                "apiVersions": ["*"],
                "operations": operations or ["CREATE", "UPDATE"],
                "resources": resources or ["configmaps"],
                "scope": "*",
            }
        ],
    }
    if object_selector is not None:
        hook["objectSelector"] = object_selector
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [hook],
    }


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_mutating_webhook_patches_the_object_and_sees_who_asked(
    sim: SimServer, raw: Raw, hooks: Hooks
) -> None:
    await raw.ok(
        "POST",
        f"{ADMISSION}/mutatingwebhookconfigurations",
        webhook_config(
            "MutatingWebhookConfiguration",
            "label.test.zsp.dev",
            {"url": f"{hooks.url}/mutate", "caBundle": hooks.ca_bundle},
        ),
    )
    created = await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "m"}})
    assert created["metadata"]["labels"] == {"mutated": "yes"}
    request = hooks.reviews[-1]["request"]
    assert request["operation"] == "CREATE"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert request["namespace"] == "default"
    assert request["name"] == "m"
    assert request["userInfo"]["username"] == "zsp-admin"
    assert request["oldObject"] is None
    await raw.ok(
        "PATCH", f"{CONFIGMAPS}/m", {"data": {"a": "1"}}, content_type="application/merge-patch+json"
    )
    update = hooks.reviews[-1]["request"]
    assert update["operation"] == "UPDATE"
    assert update["oldObject"]["metadata"]["name"] == "m"
    assert update["object"]["data"] == {"a": "1"}


async def test_a_denying_webhook_rejects_with_its_code_and_message(raw: Raw, hooks: Hooks) -> None:
    await raw.ok(
        "POST",
        f"{ADMISSION}/validatingwebhookconfigurations",
        webhook_config(
            "ValidatingWebhookConfiguration",
            "deny.test.zsp.dev",
            {"url": f"{hooks.url}/deny", "caBundle": hooks.ca_bundle},
            object_selector={"matchLabels": {"guarded": "yes"}},
        ),
    )
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "free"}})  # outside the objectSelector
    status, body = await raw.call(
        "POST", CONFIGMAPS, {"metadata": {"name": "forbidden", "labels": {"guarded": "yes"}}}
    )
    assert status == 403
    assert body["message"] == (
        'admission webhook "deny.test.zsp.dev" denied the request: no configmaps named forbidden'
    )
    assert (await raw.call("GET", f"{CONFIGMAPS}/forbidden"))[0] == 404


async def test_an_unreachable_webhook_fails_closed_or_is_ignored(raw: Raw) -> None:
    url = f"https://127.0.0.1:{closed_port()}/nothing"
    await raw.ok(
        "POST",
        f"{ADMISSION}/validatingwebhookconfigurations",
        webhook_config(
            "ValidatingWebhookConfiguration", "ignored.test.zsp.dev", {"url": url}, failure_policy="Ignore"
        ),
    )
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "passes"}})
    await raw.ok(
        "POST",
        f"{ADMISSION}/validatingwebhookconfigurations",
        webhook_config("ValidatingWebhookConfiguration", "closed.test.zsp.dev", {"url": url}),
    )
    status, body = await raw.call("POST", CONFIGMAPS, {"metadata": {"name": "blocked"}})
    assert (status, body["reason"]) == (500, "InternalError")
    assert body["message"].startswith(
        'Internal error occurred: failed calling webhook "closed.test.zsp.dev": failed to call webhook: '
        f'Post "{url}?timeout=2s"'
    )


async def test_a_service_reference_to_a_missing_service_fails_the_call(raw: Raw) -> None:
    service = {"service": {"namespace": "default", "name": "hooks", "path": "/"}}
    await raw.ok(
        "POST",
        f"{ADMISSION}/validatingwebhookconfigurations",
        webhook_config("ValidatingWebhookConfiguration", "svc.test.zsp.dev", service),
    )
    status, body = await raw.call("POST", CONFIGMAPS, {"metadata": {"name": "x"}})
    assert status == 500
    assert body["message"].endswith(
        'failed calling webhook "svc.test.zsp.dev": failed to call webhook: '
        'Post "https://hooks.default.svc:443/?timeout=2s": service "hooks" not found'
    )


async def test_status_subresource_rules_match_status_writes_only(raw: Raw, hooks: Hooks) -> None:
    await raw.ok(
        "POST",
        f"{ADMISSION}/validatingwebhookconfigurations",
        webhook_config(
            "ValidatingWebhookConfiguration",
            "status.test.zsp.dev",
            {"url": f"{hooks.url}/deny", "caBundle": hooks.ca_bundle},
            resources=["gadgets/status"],
            operations=["UPDATE"],
        ),
    )
    await raw.ok("POST", GADGETS, gadget("g"))
    await raw.ok("PATCH", f"{GADGETS}/g", {"spec": {"size": 4}}, content_type="application/merge-patch+json")
    status, _ = await raw.call(
        "PATCH",
        f"{GADGETS}/g/status",
        {"status": {"phase": "x"}},
        content_type="application/merge-patch+json",
    )
    assert status == 403
    assert hooks.reviews[-1]["request"]["subResource"] == "status"


async def test_a_webhook_with_a_plain_http_url_is_invalid(raw: Raw) -> None:
    status, body = await raw.call(
        "POST",
        f"{ADMISSION}/validatingwebhookconfigurations",
        webhook_config("ValidatingWebhookConfiguration", "http.test.zsp.dev", {"url": "http://127.0.0.1:1/"}),
    )
    assert status == 422
    assert "'https' is the only allowed URL scheme" in body["message"]


async def test_delete_goes_through_validating_webhooks(raw: Raw, hooks: Hooks) -> None:
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "keep"}})
    await raw.ok(
        "POST",
        f"{ADMISSION}/validatingwebhookconfigurations",
        webhook_config(
            "ValidatingWebhookConfiguration",
            "nodelete.test.zsp.dev",
            {"url": f"{hooks.url}/deny", "caBundle": hooks.ca_bundle},
            operations=["DELETE"],
        ),
    )
    status, _ = await raw.call("DELETE", f"{CONFIGMAPS}/keep")
    assert status == 403
    request = hooks.reviews[-1]["request"]
    assert request["operation"] == "DELETE"
    assert request["object"] is None
    assert request["oldObject"]["metadata"]["name"] == "keep"


def two_version_crd() -> dict[str, Any]:
    crd = copy.deepcopy(GADGET_CRD)
    crd["metadata"]["name"] = f"doodads.{GROUP}"
    crd["spec"]["names"] = {"plural": "doodads", "kind": "Doodad"}
    v2 = {**copy.deepcopy(crd["spec"]["versions"][0]), "name": "v2", "storage": False}
    crd["spec"]["versions"].append(v2)
    return crd


def doodad(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"reason": "testing"}}


async def test_equivalent_match_policy_calls_the_webhook_in_the_version_its_rule_names(
    sim: SimServer, raw: Raw, hooks: Hooks
) -> None:
    await raw.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", two_version_crd())
    config = webhook_config(
        "MutatingWebhookConfiguration",
        "v1only.test.zsp.dev",
        {"url": f"{hooks.url}/mutate", "caBundle": hooks.ca_bundle},
        resources=["doodads"],
    )
    config["webhooks"][0]["rules"][0]["apiVersions"] = ["v1"]  # matchPolicy left out: Equivalent
    await raw.ok("POST", f"{ADMISSION}/mutatingwebhookconfigurations", config)
    created = await raw.ok("POST", f"/apis/{GROUP}/v2/namespaces/default/doodads", doodad("d"))
    assert created["apiVersion"] == f"{GROUP}/v2"
    assert created["metadata"]["labels"] == {"mutated": "yes"}
    request = hooks.reviews[-1]["request"]
    assert request["kind"] == {"group": GROUP, "version": "v1", "kind": "Doodad"}
    assert request["resource"] == {"group": GROUP, "version": "v1", "resource": "doodads"}
    assert request["requestKind"] == {"group": GROUP, "version": "v2", "kind": "Doodad"}
    assert request["requestResource"] == {"group": GROUP, "version": "v2", "resource": "doodads"}
    assert request["object"]["apiVersion"] == f"{GROUP}/v1"

    config["metadata"]["name"] = "exact.test.zsp.dev"
    config["webhooks"][0].update(name="exact.test.zsp.dev", matchPolicy="Exact")
    await raw.ok("DELETE", f"{ADMISSION}/mutatingwebhookconfigurations/v1only.test.zsp.dev")
    await raw.ok("POST", f"{ADMISSION}/mutatingwebhookconfigurations", config)
    calls = len(hooks.reviews)
    plain = await raw.ok("POST", f"/apis/{GROUP}/v2/namespaces/default/doodads", doodad("e"))
    assert "labels" not in plain["metadata"]
    assert len(hooks.reviews) == calls  # Exact: a v1 rule does not see v2 requests
