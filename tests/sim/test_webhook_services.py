"""Webhooks reached through a `service` reference, resolved by the in-memory API server.

Covered:
- the call goes to an address of the Service's EndpointSlice (the slice port named like
  the Service port 443, which a reference without `port` means), and the certificate is
  verified for `name.namespace.svc` against the caBundle: a certificate naming only that
  host is accepted although the address dialled is 127.0.0.1;
- a certificate for another Service's name is refused;
- no Service, no such Service port, an ExternalName Service, no EndpointSlice, a slice
  port of another name, only unready endpoints: each fails the call with the reason the
  real server gives, and `failurePolicy: Ignore` lets the write through.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from simkit import Raw

from zsp_operator.sim.certs import self_signed
from zsp_operator.tls import service_dns_names

ADMISSION = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SERVICES = "/api/v1/namespaces/default/services"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"


@dataclass
class Backend:
    port: int
    ca_bundle: str
    reviews: list[dict[str, Any]]


async def _serve(hosts: tuple[str, ...]) -> tuple[web.AppRunner, Backend]:
    certificate = self_signed(hosts[0], hosts)
    backend = Backend(0, base64.b64encode(certificate.cert_pem).decode(), [])

    async def allow(request: web.Request) -> web.Response:
        review = await request.json()
        backend.reviews.append(review)
        response = {"uid": review["request"]["uid"], "allowed": True}
        return web.json_response(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )

    app = web.Application()
    app.router.add_post("/check", allow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certificate.server_context())
    await site.start()
    backend.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, backend


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    runner, served = await _serve(service_dns_names("default", "hooks"))
    yield served
    await runner.cleanup()


def service(name: str = "hooks", port: int = 443, kind: str = "ClusterIP") -> dict[str, Any]:
    """A Service without selector: its endpoints are the hand-made EndpointSlice."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": kind, "ports": [{"name": "https", "port": port, "targetPort": 9443}]},
    }


def endpoint_slice(
    port: int, *, service_name: str = "hooks", port_name: str = "https", ready: bool | None = True
) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"addresses": ["127.0.0.1"]}
    if ready is not None:
        endpoint["conditions"] = {"ready": ready}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{service_name}-1", "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [endpoint],
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


async def test_a_service_reference_is_called_at_its_endpoint_and_verified_for_its_svc_name(
    raw: Raw, backend: Backend
) -> None:
    await raw.ok("POST", SERVICES, service())
    await raw.ok("POST", SLICES, endpoint_slice(backend.port, ready=None))  # unknown readiness: ready
    await raw.ok("POST", ADMISSION, configuration(backend.ca_bundle))
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "through-the-service"}})
    assert [r["request"]["name"] for r in backend.reviews] == ["through-the-service"]


async def test_a_certificate_for_another_services_name_is_refused(raw: Raw) -> None:
    runner, other = await _serve(service_dns_names("default", "other"))
    try:
        await raw.ok("POST", SERVICES, service())
        await raw.ok("POST", SLICES, endpoint_slice(other.port))
        await raw.ok("POST", ADMISSION, configuration(other.ca_bundle))
        status, body = await raw.call("POST", CONFIGMAPS, {"metadata": {"name": "x"}})
    finally:
        await runner.cleanup()
    assert status == 500
    assert 'Post "https://hooks.default.svc:443/check"' in body["message"]
    assert "certificate verify failed" in body["message"], body["message"]
    assert other.reviews == []


Setup = Callable[[int], list[tuple[str, dict[str, Any]]]]
UNRESOLVABLE: list[tuple[str, Setup, int | None, str]] = [
    ("no Service", lambda port: [], None, 'service "hooks" not found'),
    (
        "no such Service port",
        lambda port: [(SERVICES, service()), (SLICES, endpoint_slice(port))],
        8443,
        'no service port 8443 found for service "hooks"',
    ),
    (
        "ExternalName Service",
        lambda port: [
            (
                SERVICES,
                {
                    **service(kind="ExternalName"),
                    "spec": {"type": "ExternalName", "externalName": "example.com"},
                },
            )
        ],
        None,
        'unsupported service type "ExternalName"',
    ),
    (
        "no EndpointSlice",
        lambda port: [(SERVICES, service())],
        None,
        'no endpoints available for service "hooks"',
    ),
    (
        "EndpointSlice of another Service",
        lambda port: [(SERVICES, service()), (SLICES, endpoint_slice(port, service_name="other"))],
        None,
        'no endpoints available for service "hooks"',
    ),
    (
        "slice port of another name",
        lambda port: [(SERVICES, service()), (SLICES, endpoint_slice(port, port_name="metrics"))],
        None,
        'no endpoints available for service "hooks"',
    ),
    (
        "only unready endpoints",
        lambda port: [(SERVICES, service()), (SLICES, endpoint_slice(port, ready=False))],
        None,
        'no endpoints available for service "hooks"',
    ),
]


@pytest.mark.parametrize(
    ("setup", "port", "reason"), [c[1:] for c in UNRESOLVABLE], ids=[c[0] for c in UNRESOLVABLE]
)
async def test_a_service_without_a_ready_endpoint_fails_the_call_or_is_ignored(
    raw: Raw, backend: Backend, setup: Setup, port: int | None, reason: str
) -> None:
    for path, body in setup(backend.port):
        await raw.ok("POST", path, body)
    await raw.ok("POST", ADMISSION, configuration(backend.ca_bundle, port=port))
    status, body = await raw.call("POST", CONFIGMAPS, {"metadata": {"name": "blocked"}})
    assert (status, body["reason"]) == (500, "InternalError")
    assert body["message"] == (
        'Internal error occurred: failed calling webhook "svc.test.zsp.dev": failed to call webhook: '
        f'Post "https://hooks.default.svc:{port or 443}/check": {reason}'
    )
    await raw.ok("DELETE", f"{ADMISSION}/svc.test.zsp.dev")
    await raw.ok("POST", ADMISSION, configuration(backend.ca_bundle, port=port, failure_policy="Ignore"))
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "let-through"}})
    assert backend.reviews == []
