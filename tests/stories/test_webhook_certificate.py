"""Story: in a cluster without cert-manager the operator keeps its webhook certificate itself.

The chart's objects are made first, as an admin would: a Service without selector whose
port is the operator's webhook port, and the Mutating- and ValidatingWebhookConfiguration
`zsp-operator` with the webhooks kopf serves, each a `service` reference to that port
without caBundle. The API server (either tier) dials the Service's ClusterIP, which is on
loopback, so the operator serving on 0.0.0.0 is reached as in a cluster. The operator
runs with `--webhook-service` (not `--dev`), as its own ServiceAccount with
deploy/operator-rbac.yaml.

Covered:
- the first start stores a kubernetes.io/tls Secret (ca.crt, tls.crt, tls.key) whose
  certificate covers the Service's names, and puts its CA into every webhook of both
  configurations; a request filed with the pipeline's own token is admitted through the
  Service, the requester stamped from the API server's userInfo;
- a second start serves the same certificate and writes nothing;
- a certificate expiring within the renewal margin is replaced at start; the CA bundle then
  holds the new CA and, while valid, the old one;
- two replicas storing the certificate at once agree on one, whether the Secret is absent
  (one create loses with AlreadyExists) or expiring (one replace loses with Conflict);
- a missing configuration is a warning naming it, not a failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509

from harness import eventually, operator_token
from tiers import Cluster
from world import world
from zsp_operator.core import constants as c
from zsp_operator.engine.controller import Controller
from zsp_operator.kube import Body, Kube
from zsp_operator.kube.identity import wait_for_webhooks
from zsp_operator.kube.resources import (
    ACCESS_REQUESTS,
    MUTATING_WEBHOOKS,
    SECRETS,
    VALIDATING_WEBHOOKS,
    Resource,
)
from zsp_operator.process.runner import run_operator
from zsp_operator.serving.pki import (
    CA_CERT,
    TLS_CERT,
    TLS_KEY,
    ServingPki,
    certificate_problem,
    issue_serving_pki,
    service_dns_names,
)
from zsp_operator.serving.webhookcert import WebhookService, ensure_certificate, inject_ca_bundle, material_of
from zsp_operator.settings import Settings

SERVICES = Resource("", "v1", "services", "Service")
SERVICE = "zsp-operator-webhook"
CONFIGURATION = "zsp-operator"  # the default of --webhook-configuration, named in the RBAC
SECRET = f"{SERVICE}-tls"  # the default of --webhook-secret
# Approval is required and nobody approves: requests stay Pending, nothing is issued that a
# stopped operator would leave behind.
PENDING = {"approval": {"required": 1, "approvers": [{"kind": "Group", "name": "platform-leads"}]}}
ADMISSION_API = "admissionregistration.k8s.io/v1"
OPERATIONS = ["CREATE", "UPDATE"]
# (kind, handler id, plural): the webhooks handlers/webhooks.py registers with kopf; kopf
# serves each at /<handler id>.
WEBHOOKS = [
    (MUTATING_WEBHOOKS, "identity", c.PLURAL_REQUEST),
    (VALIDATING_WEBHOOKS, "request-spec", c.PLURAL_REQUEST),
    (VALIDATING_WEBHOOKS, "operator-only", c.PLURAL_GRANT),
    (VALIDATING_WEBHOOKS, "policy", c.PLURAL_POLICY),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def chart_objects(namespace: str, port: int) -> list[tuple[Resource, Body]]:
    """What the chart creates; the Service needs no endpoints, its ClusterIP is dialled."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": namespace},
        # The Service's port is the operator's: the API server dials ClusterIP:port, and
        # ClusterIPs are on loopback in both tiers (tests/envtest.py, sim/services.py).
        "spec": {"ports": [{"name": "webhooks", "port": port, "targetPort": port}]},
    }
    configurations: list[tuple[Resource, Body]] = []
    for res in (MUTATING_WEBHOOKS, VALIDATING_WEBHOOKS):
        hooks = [
            {
                "name": f"{handler}.{c.GROUP}",
                "clientConfig": {
                    "service": {"namespace": namespace, "name": SERVICE, "path": f"/{handler}", "port": port}
                },
                "rules": [
                    {
                        "apiGroups": [c.GROUP],
                        "apiVersions": [c.VERSION],
                        "resources": [plural],
                        "operations": OPERATIONS,
                        "scope": "*",
                    }
                ],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": 30,
                "admissionReviewVersions": ["v1", "v1beta1"],
            }
            for kind, handler, plural in WEBHOOKS
            if kind == res
        ]
        body = {
            "apiVersion": ADMISSION_API,
            "kind": res.kind,
            "metadata": {"name": CONFIGURATION},
            "webhooks": hooks,
        }
        configurations.append((res, body))
    return [(SERVICES, service), *configurations]


@contextlib.asynccontextmanager
async def installed(cluster: Cluster, namespace: str, port: int) -> AsyncIterator[Kube]:
    """The chart's objects for the length of the story; the configurations are cluster-wide,
    so they go afterwards (the namespace takes the rest)."""
    async with await Kube.from_dict(cluster.kubeconfig()) as admin:
        try:
            for res, body in chart_objects(namespace, port):
                await admin.create(res, body)
            yield admin
        finally:
            for res in (MUTATING_WEBHOOKS, VALIDATING_WEBHOOKS):
                await admin.delete(res, CONFIGURATION)


@contextlib.asynccontextmanager
async def serving_operator(
    cluster: Cluster, namespace: str, port: int, **overrides: Any
) -> AsyncIterator[None]:
    """The operator with `--webhook-service`, ready once the webhooks answer through it."""
    settings = Settings(
        webhook_service=f"{namespace}/{SERVICE}",
        webhook_port=port,
        metrics_port=0,
        health_port=0,
        **overrides,
    )
    kube = await Kube.from_dict(cluster.kubeconfig(await operator_token(cluster)))
    controller = Controller.build(kube, settings, audit_stream=io.StringIO())
    stop = asyncio.Event()
    task = asyncio.create_task(run_operator(settings, controller=controller, stop_flag=stop))
    try:
        async with await Kube.from_dict(cluster.kubeconfig()) as admin:
            waiting = asyncio.ensure_future(wait_for_webhooks(admin, within=30))
            done, _ = await asyncio.wait({waiting, task}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                waiting.cancel()
                task.result()
                raise AssertionError("the operator stopped before its webhooks answered")
            waiting.result()
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await kube.close()


def certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def bundles(configuration: Body | None) -> list[str | None]:
    return [
        (hook.get("clientConfig") or {}).get("caBundle")
        for hook in (configuration or {}).get("webhooks") or []
    ]


async def trusted_cas(admin: Kube) -> list[bytes]:
    """The caBundle of every webhook of both configurations, decoded."""
    found = []
    for res in (MUTATING_WEBHOOKS, VALIDATING_WEBHOOKS):
        for bundle in bundles(await admin.get(res, CONFIGURATION)):
            assert bundle is not None, f"a webhook of {res.kind} {CONFIGURATION} has no caBundle"
            found.append(base64.b64decode(bundle))
    return found


async def trusted_cas_missing(admin: Kube) -> bool:
    found = [bundles(await admin.get(res, CONFIGURATION)) for res in (MUTATING_WEBHOOKS, VALIDATING_WEBHOOKS)]
    return all(bundle is None for hooks in found for bundle in hooks) and all(found)


async def store_expiring(admin: Kube, namespace: str) -> ServingPki:
    """Put a certificate with ten days left, inside the renewal margin, into the Secret."""
    names = service_dns_names(namespace, SERVICE)
    expiring = issue_serving_pki(names, common_name=names[2], valid_for=dt.timedelta(days=10))
    stale = {CA_CERT: expiring.ca_cert, TLS_CERT: expiring.serving_cert, TLS_KEY: expiring.serving_key}
    current = await admin.get(SECRETS, SECRET, namespace)
    assert current is not None
    data = {key: base64.b64encode(value).decode() for key, value in stale.items()}
    await admin.replace(SECRETS, {**current, "data": data})
    return expiring


async def file_request(w: Any, name: str) -> dict[str, Any]:
    created = await w.file(w.request(name))
    annotations = created["metadata"].get("annotations") or {}
    assert c.ANNOTATION_REQUESTER in annotations, "the identity webhook was not called"
    requester: dict[str, Any] = json.loads(annotations[c.ANNOTATION_REQUESTER])
    return requester


async def test_the_operator_issues_reuses_and_renews_its_webhook_certificate(
    cluster: Cluster, namespace: str
) -> None:
    port = free_port()
    names = service_dns_names(namespace, SERVICE)
    async with world(cluster, **PENDING) as w, installed(cluster, namespace, port) as admin:
        assert await trusted_cas_missing(admin), "the chart's configurations start without caBundle"

        async with serving_operator(cluster, namespace, port):
            requester = await file_request(w, "through-the-service")
            assert requester["username"] == w.pipeline_user
        secret = await admin.get(SECRETS, SECRET, namespace)
        assert secret is not None
        assert secret["type"] == "kubernetes.io/tls"
        first = material_of(secret)
        assert certificate_problem(first, names, dt.datetime.now(dt.UTC)) is None
        assert set(await trusted_cas(admin)) == {first[CA_CERT]}

        async with serving_operator(cluster, namespace, port):
            await file_request(w, "after-a-restart")
        again = await admin.get(SECRETS, SECRET, namespace)
        assert again is not None
        assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"], "rewritten"
        assert material_of(again) == first

        expiring = await store_expiring(admin, namespace)
        async with serving_operator(cluster, namespace, port):
            await file_request(w, "after-renewal")
        renewed = material_of(await admin.get(SECRETS, SECRET, namespace))
        assert renewed[TLS_CERT] != expiring.serving_cert
        served = certificate(renewed[TLS_CERT])
        assert served.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)
        trusted = x509.load_pem_x509_certificates(renewed[CA_CERT])
        assert trusted[1:] == [certificate(expiring.ca_cert)], "the old CA is trusted while still valid"
        assert set(await trusted_cas(admin)) == {renewed[CA_CERT]}
        for request in await admin.list(ACCESS_REQUESTS, w.target):
            assert request["metadata"]["annotations"][c.ANNOTATION_REQUESTER]


async def served_certificate(port: int) -> bytes:
    """The certificate the webhook port presents now, as PEM (trust is not the question here)."""
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return ssl.DER_cert_to_PEM_cert(der).encode()


async def test_a_certificate_nearing_expiry_is_renewed_and_served_without_a_restart(
    cluster: Cluster, namespace: str
) -> None:
    port = free_port()
    async with (
        world(cluster, **PENDING) as w,
        installed(cluster, namespace, port) as admin,
        serving_operator(cluster, namespace, port, webhook_cert_refresh="1s"),
    ):
        first = material_of(await admin.get(SECRETS, SECRET, namespace))
        assert certificate(await served_certificate(port)) == certificate(first[TLS_CERT])

        # Ten days left: inside the renewal margin. The operator, still running, renews it,
        # serves the new one, and the API server trusts it.
        expiring = await store_expiring(admin, namespace)

        async def renewed() -> dict[str, bytes] | None:
            stored = material_of(await admin.get(SECRETS, SECRET, namespace))
            return stored if stored[TLS_CERT] not in (first[TLS_CERT], expiring.serving_cert) else None

        fresh = await eventually(renewed, within=15)
        await eventually(lambda: _serves(port, fresh[TLS_CERT]), within=15)
        assert set(await trusted_cas(admin)) == {fresh[CA_CERT]}
        assert (await file_request(w, "after-live-renewal"))["username"] == w.pipeline_user


async def _serves(port: int, pem: bytes) -> bool:
    return certificate(await served_certificate(port)) == certificate(pem)


class Lockstep(Kube):
    """A client whose Secret reads wait for the other replica's, so both decide on the same
    state and then race to write."""

    def __init__(self, inner: Kube, barrier: asyncio.Barrier) -> None:
        super().__init__(inner.api)
        self._barrier = barrier
        self._first = True

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> Body | None:
        found = await super().get(res, name, namespace)
        if res == SECRETS and self._first:
            self._first = False
            await self._barrier.wait()
        return found


@pytest.mark.parametrize("stored", ["absent", "expiring"])
async def test_two_replicas_storing_the_certificate_at_once_agree_on_one(
    cluster: Cluster, namespace: str, stored: str
) -> None:
    service = WebhookService(namespace, SERVICE, f"{SERVICE}-tls", CONFIGURATION)
    now = dt.datetime.now(dt.UTC)
    token = await operator_token(cluster)
    async with await Kube.from_dict(cluster.kubeconfig()) as admin:
        if stored == "expiring":
            old = issue_serving_pki(
                service.hosts, common_name=service.server_name, valid_for=dt.timedelta(days=5)
            )
            pem = {CA_CERT: old.ca_cert, TLS_CERT: old.serving_cert, "tls.key": old.serving_key}
            data = {key: base64.b64encode(value).decode() for key, value in pem.items()}
            meta = {"name": service.secret, "namespace": namespace}
            await admin.create(
                SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": data}
            )
        barrier = asyncio.Barrier(2)
        first, second = [Lockstep(await Kube.from_dict(cluster.kubeconfig(token)), barrier) for _ in range(2)]
        try:
            a, b = await asyncio.gather(
                ensure_certificate(first, service, now), ensure_certificate(second, service, now)
            )
        finally:
            await first.close()
            await second.close()
        assert a == b, "the replicas serve different certificates"
        secret = await admin.get(SECRETS, service.secret, namespace)
        assert material_of(secret) == {CA_CERT: a.ca_cert, TLS_CERT: a.cert, "tls.key": a.key}
        assert certificate_problem(material_of(secret), service.hosts, now) is None


async def test_a_missing_webhook_configuration_is_a_warning_naming_it(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    missing = "zsp-operator-absent"
    async with await Kube.from_dict(cluster.kubeconfig()) as admin:
        with caplog.at_level(logging.WARNING, logger="zsp_operator.serving.webhookcert"):
            done = await inject_ca_bundle(admin, missing, issue_serving_pki().ca_cert)
    assert done == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(":")[0] for w in warnings] == [
        f"MutatingWebhookConfiguration {missing} does not exist",
        f"ValidatingWebhookConfiguration {missing} does not exist",
    ]
