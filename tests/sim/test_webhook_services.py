"""Webhooks reached through a `service` reference, dialled by the in-memory API server as
kube-apiserver does by default: at the Service's ClusterIP and port.

The backends listen on 0.0.0.0, as the operator does behind its Service: ClusterIPs are on
loopback (sim/services.py), so a connection to CLUSTERIP:PORT reaches them.

Covered:
- the call goes to the Service's ClusterIP and its `port` (a reference without `port`
  means 443), with Host `name.namespace.svc:port`, and the certificate is verified for
  `name.namespace.svc` against the caBundle; no EndpointSlice is needed, and a Service's
  targetPort plays no part;
- a certificate for another Service's name is refused;
- an ExternalName Service is dialled at its external name and the referenced port, still
  verified for `name.namespace.svc` (the real resolver does not refuse it);
- no Service, no Service port with the referenced number, a headless Service: each fails
  the call with the reason the real server gives, and `failurePolicy: Ignore` lets the
  write through.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from simkit import Raw

from zsp_operator.serving.pki import service_dns_names
from zsp_operator.sim.certs import self_signed
from zsp_operator.sim.services import DEFAULT_SERVICE_CIDR

ADMISSION = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SERVICES = "/api/v1/namespaces/default/services"
NOBODY_LISTENS = 9  # the discard port: a targetPort the call must not go to


@dataclass
class Call:
    """What a backend saw of one call: the address it was dialled at, and the request."""

    local_address: str
    host: str
    name: str


@dataclass
class Backend:
    port: int
    ca_bundle: str
    calls: list[Call] = field(default_factory=list)


async def _serve(hosts: tuple[str, ...]) -> tuple[web.AppRunner, Backend]:
    certificate = self_signed(hosts[0], hosts)
    backend = Backend(0, base64.b64encode(certificate.cert_pem).decode())

    async def allow(request: web.Request) -> web.Response:
        review = await request.json()
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        backend.calls.append(Call(sockname[0] if sockname else "", request.host, review["request"]["name"]))
        response = {"uid": review["request"]["uid"], "allowed": True}
        return web.json_response(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )

    app = web.Application()
    app.router.add_post("/check", allow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", 0, ssl_context=certificate.server_context())
    await site.start()
    backend.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, backend


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    runner, served = await _serve(service_dns_names("default", "hooks"))
    yield served
    await runner.cleanup()


def service(port: int, **spec: Any) -> dict[str, Any]:
    """The Service `hooks` without selector: nothing but its ClusterIP leads to the backend."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hooks"},
        "spec": {"ports": [{"name": "https", "port": port, "targetPort": NOBODY_LISTENS}], **spec},
    }


def configuration(ca_bundle: str, *, port: int | None = None, failure_policy: str = "Fail") -> dict[str, Any]:
    reference: dict[str, Any] = {"namespace": "default", "name": "hooks", "path": "/check"}
    if port is not None:
        reference["port"] = port
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "svc.test.zsp.dev"},
        "webhooks": [
            {
                "name": "svc.test.zsp.dev",
                "clientConfig": {"service": reference, "caBundle": ca_bundle},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": failure_policy,
                "timeoutSeconds": 2,
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize("kind", ["ClusterIP", "NodePort", "LoadBalancer"])
async def test_a_service_reference_is_called_at_the_cluster_ip_and_port_and_verified_for_its_svc_name(
    raw: Raw, backend: Backend, kind: str
) -> None:
    created = await raw.ok("POST", SERVICES, service(backend.port, type=kind))
    cluster_ip = created["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(DEFAULT_SERVICE_CIDR)
    await raw.ok("POST", ADMISSION, configuration(backend.ca_bundle, port=backend.port))
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "through-the-service"}})
    assert backend.calls == [Call(cluster_ip, f"hooks.default.svc:{backend.port}", "through-the-service")]


async def test_a_reference_without_port_means_service_port_443(raw: Raw, backend: Backend) -> None:
    await raw.ok("POST", SERVICES, service(backend.port))
    await raw.ok("POST", ADMISSION, configuration(backend.ca_bundle))
    status, body = await raw.call("POST", CONFIGMAPS, {"metadata": {"name": "x"}})
    assert (status, body["message"]) == (
        500,
        'Internal error occurred: failed calling webhook "svc.test.zsp.dev": failed to call webhook: '
        'Post "https://hooks.default.svc:443/check?timeout=2s": no service port 443 found for service "hooks"',
    )
    assert backend.calls == []


async def test_a_certificate_for_another_services_name_is_refused(raw: Raw) -> None:
    runner, other = await _serve(service_dns_names("default", "other"))
    try:
        await raw.ok("POST", SERVICES, service(other.port))
        await raw.ok("POST", ADMISSION, configuration(other.ca_bundle, port=other.port))
        status, body = await raw.call("POST", CONFIGMAPS, {"metadata": {"name": "x"}})
    finally:
        await runner.cleanup()
    assert status == 500
    assert body["message"].startswith(
        'Internal error occurred: failed calling webhook "svc.test.zsp.dev": failed to call webhook: '
        f'Post "https://hooks.default.svc:{other.port}/check?timeout=2s": '
    )
    assert "certificate verify failed" in body["message"], body["message"]
    assert other.calls == []


async def test_an_external_name_service_is_dialled_at_its_name(raw: Raw, backend: Backend) -> None:
    external = {"type": "ExternalName", "externalName": "localhost"}
    created = await raw.ok("POST", SERVICES, service(backend.port, **external))
    assert "clusterIP" not in created["spec"]
    await raw.ok("POST", ADMISSION, configuration(backend.ca_bundle, port=backend.port))
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "by-name"}})
    assert [(c.host, c.name) for c in backend.calls] == [(f"hooks.default.svc:{backend.port}", "by-name")]


Setup = Callable[[int], list[dict[str, Any]]]
UNRESOLVABLE: list[tuple[str, Setup, Callable[[int], int], str]] = [
    ("no Service", lambda port: [], lambda port: port, 'service "hooks" not found'),
    (
        "no Service port with that number",
        lambda port: [service(port)],
        lambda port: 8443 if port != 8443 else 8444,
        'no service port {port} found for service "hooks"',
    ),
    (
        "the targetPort is no Service port",
        lambda port: [{**service(NOBODY_LISTENS), "spec": {"ports": [{"port": 443, "targetPort": port}]}}],
        lambda port: port,
        'no service port {port} found for service "hooks"',
    ),
    (
        "headless Service",
        lambda port: [service(port, clusterIP="None")],
        lambda port: port,
        'cannot route to service with ClusterIP "None"',
    ),
]


@pytest.mark.parametrize(
    ("setup", "reference_port", "reason"), [c[1:] for c in UNRESOLVABLE], ids=[c[0] for c in UNRESOLVABLE]
)
async def test_an_unroutable_service_fails_the_call_or_is_ignored(
    raw: Raw, backend: Backend, setup: Setup, reference_port: Callable[[int], int], reason: str
) -> None:
    for body in setup(backend.port):
        await raw.ok("POST", SERVICES, body)
    port = reference_port(backend.port)
    await raw.ok("POST", ADMISSION, configuration(backend.ca_bundle, port=port))
    status, body = await raw.call("POST", CONFIGMAPS, {"metadata": {"name": "blocked"}})
    assert (status, body["reason"]) == (500, "InternalError")
    assert body["message"] == (
        'Internal error occurred: failed calling webhook "svc.test.zsp.dev": failed to call webhook: '
        f'Post "https://hooks.default.svc:{port}/check?timeout=2s": {reason.format(port=port)}'
    )
    await raw.ok("DELETE", f"{ADMISSION}/svc.test.zsp.dev")
    await raw.ok("POST", ADMISSION, configuration(backend.ca_bundle, port=port, failure_policy="Ignore"))
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "let-through"}})
    assert backend.calls == []
