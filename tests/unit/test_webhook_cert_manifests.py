"""What `zsp_operator.serving.webhookcert` writes, built without I/O.

Covered:
- `--webhook-service` must be NAMESPACE/NAME; the Secret defaults to NAME-tls in the
  Service's namespace; the server name the API server verifies is `name.namespace.svc`;
- a new Secret is of type kubernetes.io/tls with ca.crt beside tls.crt and tls.key, labelled
  as ours; a replaced one keeps its type, metadata (resourceVersion) and foreign keys;
- Secret data decodes, undecodable entries are left out;
- the caBundle patch touches only webhooks lacking the CA, each change guarded by a test of
  the webhook's name, and is empty when every webhook holds it (nothing to write).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from zsp_operator.serving.webhookcert import (
    ServingMaterial,
    WebhookService,
    ca_bundle_patch,
    material_of,
    secret_body,
)
from zsp_operator.settings import Settings

MATERIAL = ServingMaterial(ca_cert=b"CA", cert=b"CERT", key=b"KEY")
SERVICE = WebhookService("zsp-system", "zsp-operator-webhook", "zsp-operator-webhook-tls", "zsp-operator")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            {"webhook_service": "zsp-system/hooks"},
            WebhookService("zsp-system", "hooks", "hooks-tls", "zsp-operator"),
        ),
        (
            {"webhook_service": "ops/hooks", "webhook_secret": "certs", "webhook_configuration": "zsp"},
            WebhookService("ops", "hooks", "certs", "zsp"),
        ),
    ],
)
def test_the_service_setting_names_the_secret_and_configurations(
    given: dict[str, str], expected: WebhookService
) -> None:
    assert WebhookService.from_settings(Settings(**given)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["hooks", "ops/", "/hooks", "ops/hooks/x", "Ops/hooks", "ops/hooks.x"])
def test_a_service_setting_that_is_not_namespace_slash_name_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="NAMESPACE/NAME"):
        Settings(webhook_service=value)


def test_the_api_server_verifies_the_service_by_its_svc_name() -> None:
    assert SERVICE.server_name == "zsp-operator-webhook.zsp-system.svc"
    assert SERVICE.server_name in SERVICE.hosts


def test_a_new_secret_is_a_tls_secret_with_the_ca_beside_the_pair() -> None:
    assert secret_body(SERVICE, MATERIAL) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "zsp-operator-webhook-tls",
            "namespace": "zsp-system",
            "labels": {"app.kubernetes.io/managed-by": "zsp-operator"},
        },
        "type": "kubernetes.io/tls",
        "data": {"ca.crt": _b64(b"CA"), "tls.crt": _b64(b"CERT"), "tls.key": _b64(b"KEY")},
    }


def test_a_replaced_secret_keeps_its_type_metadata_and_other_keys() -> None:
    current: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "zsp-operator-webhook-tls", "namespace": "zsp-system", "resourceVersion": "42"},
        "type": "Opaque",
        "data": {"tls.crt": _b64(b"OLD"), "note": _b64(b"kept")},
    }
    replaced = secret_body(SERVICE, MATERIAL, current)
    assert replaced["metadata"] == current["metadata"]
    assert replaced["type"] == "Opaque"
    assert replaced["data"] == {
        "ca.crt": _b64(b"CA"),
        "tls.crt": _b64(b"CERT"),
        "tls.key": _b64(b"KEY"),
        "note": _b64(b"kept"),
    }


def test_secret_data_decodes_and_undecodable_entries_are_left_out() -> None:
    assert material_of({"data": {"tls.crt": _b64(b"CERT"), "bad": "%%%"}}) == {"tls.crt": b"CERT"}
    assert material_of(None) == {}
    assert material_of({"metadata": {}}) == {}


def _hook(name: str, ca: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"service": {"namespace": "zsp-system", "name": "hooks", "path": f"/{name}"}}
    if ca is not None:
        config["caBundle"] = ca
    return {"name": name, "clientConfig": config}


def test_the_ca_bundle_patch_sets_only_the_webhooks_that_lack_it_guarded_by_their_names() -> None:
    configuration = {"webhooks": [_hook("a", _b64(b"CA")), _hook("b"), _hook("c", _b64(b"OLD"))]}
    assert ca_bundle_patch(configuration, b"CA") == [
        {"op": "test", "path": "/webhooks/1/name", "value": "b"},
        {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": _b64(b"CA")},
        {"op": "test", "path": "/webhooks/2/name", "value": "c"},
        {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": _b64(b"CA")},
    ]


@pytest.mark.parametrize(
    "configuration",
    [{"webhooks": [_hook("a", _b64(b"CA")), _hook("b", _b64(b"CA"))]}, {"webhooks": []}, {}],
    ids=["all hold it", "no webhooks", "no webhooks field"],
)
def test_nothing_is_patched_when_no_webhook_lacks_the_ca(configuration: dict[str, Any]) -> None:
    assert ca_bundle_patch(configuration, b"CA") == []
