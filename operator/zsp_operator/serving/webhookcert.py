"""The admission webhooks' own certificate in a cluster without cert-manager.

At start (`zsp run --webhook-service NS/NAME`): read the Secret; when its certificate cannot
be served any longer (`tls.certificate_problem`), issue a fresh CA and serving certificate
for the Service's names and store them; write the certificate and key to a private folder
for the webhook server; put the CA into every webhook of the Mutating- and
ValidatingWebhookConfiguration the chart made (`--webhook-configuration`).

Replicas starting together agree through the API server: a create that finds the Secret
already there (409 AlreadyExists), or a replace whose resourceVersion is stale (409
Conflict), re-reads and serves what the other replica stored. Patching the CA bundle is
idempotent: nothing is written when every webhook already holds it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.kube import AlreadyExists, Conflict, Invalid, Kube, KubeError
from zsp_operator.kube.resources import MUTATING_WEBHOOKS, SECRETS, VALIDATING_WEBHOOKS
from zsp_operator.kube.retry import backoff
from zsp_operator.serving.pki import (
    CA_CERT,
    SERVICE_CERT_VALIDITY,
    TLS_CERT,
    TLS_KEY,
    ca_bundle,
    certificate_problem,
    issue_serving_pki,
    service_dns_names,
    write_pair,
)
from zsp_operator.settings import Settings

log = logging.getLogger(__name__)

Body = dict[str, Any]
TLS_SECRET_TYPE = "kubernetes.io/tls"
ATTEMPTS = 5  # reads after a lost race; more means something keeps rewriting the object


@dataclass(frozen=True)
class WebhookService:
    """Where the API server reaches the webhooks, and where their certificate is kept."""

    namespace: str
    name: str
    secret: str
    configuration: str

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookService:
        if not settings.webhook_service:
            raise ValueError("webhook_service is not set")
        namespace, _, name = settings.webhook_service.partition("/")
        return cls(
            namespace=namespace,
            name=name,
            secret=settings.webhook_secret or f"{name}-tls",
            configuration=settings.webhook_configuration,
        )

    @property
    def hosts(self) -> tuple[str, ...]:
        return service_dns_names(self.namespace, self.name)

    @property
    def server_name(self) -> str:
        """The name the API server verifies the certificate for (`name.namespace.svc`)."""
        return f"{self.name}.{self.namespace}.svc"


@dataclass(frozen=True)
class ServingMaterial:
    """PEM: the CA bundle clients trust, the certificate served and its key."""

    ca_cert: bytes
    cert: bytes
    key: bytes

    def write(self, directory: Path) -> tuple[Path, Path]:
        return write_pair(directory, self.cert, self.key)


# --- pure: manifests and patches ------------------------------------------------------------


def material_of(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    """The decoded data of a Secret (undecodable entries are left out)."""
    found: dict[str, bytes] = {}
    for key, value in ((secret or {}).get("data") or {}).items():
        try:
            found[key] = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            continue
    return found


def _encoded(material: ServingMaterial) -> dict[str, str]:
    raw = {CA_CERT: material.ca_cert, TLS_CERT: material.cert, TLS_KEY: material.key}
    return {key: base64.b64encode(value).decode("ascii") for key, value in raw.items()}


def secret_body(service: WebhookService, material: ServingMaterial, current: Body | None = None) -> Body:
    """The Secret to create, or `current` with the new material (to replace it with its
    resourceVersion). An existing Secret keeps its type, which the API server never changes."""
    if current is None:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": service.secret,
                "namespace": service.namespace,
                "labels": {c.LABEL_MANAGED_BY: c.OPERATOR_NAME},
            },
            "type": TLS_SECRET_TYPE,
            "data": _encoded(material),
        }
    return {**current, "data": {**(current.get("data") or {}), **_encoded(material)}}


def ca_bundle_patch(configuration: Mapping[str, Any], ca_cert: bytes) -> list[Body]:
    """JSON patch setting `caBundle` on every webhook that lacks it; [] when all hold it.

    Each change is guarded by a `test` of the webhook's name, so a list reordered since it
    was read fails the patch instead of giving one webhook another's settings.
    """
    encoded = base64.b64encode(ca_cert).decode("ascii")
    operations: list[Body] = []
    for index, hook in enumerate(configuration.get("webhooks") or []):
        if (hook.get("clientConfig") or {}).get("caBundle") == encoded:
            continue
        operations.append({"op": "test", "path": f"/webhooks/{index}/name", "value": hook.get("name")})
        operations.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded})
    return operations


# --- I/O ----------------------------------------------------------------------------------


async def ensure_certificate(kube: Kube, service: WebhookService, now: dt.datetime) -> ServingMaterial:
    """The stored certificate if it can still be served, else a new one, stored first.

    Raises:
        RuntimeError: the Secret kept changing under us for `ATTEMPTS` reads.
    """
    where = f"Secret {service.namespace}/{service.secret}"
    for _ in range(ATTEMPTS):
        current = await kube.get(SECRETS, service.secret, service.namespace)
        stored = material_of(current)
        problem = "it does not exist" if current is None else certificate_problem(stored, service.hosts, now)
        if problem is None:
            log.info("webhook certificate for %s: serving the one in %s", service.server_name, where)
            return ServingMaterial(stored[CA_CERT], stored[TLS_CERT], stored[TLS_KEY])
        log.info(
            "webhook certificate for %s: issuing a new one, as in %s %s", service.server_name, where, problem
        )
        pki = issue_serving_pki(
            service.hosts, common_name=service.server_name, now=now, valid_for=SERVICE_CERT_VALIDITY
        )
        fresh = ServingMaterial(
            ca_bundle(pki.ca_cert, stored.get(CA_CERT), now), pki.serving_cert, pki.serving_key
        )
        try:
            if current is None:
                await kube.create(SECRETS, secret_body(service, fresh))
            else:
                await kube.replace(SECRETS, secret_body(service, fresh, current))
        except (AlreadyExists, Conflict):
            log.info("%s was written by another replica meanwhile; reading it again", where)
            continue
        return fresh
    raise RuntimeError(f"{where} kept changing while the webhook certificate was stored; giving up")


async def inject_ca_bundle(kube: Kube, configuration: str, ca_cert: bytes) -> list[str]:
    """Put `ca_cert` into every webhook of both configurations named `configuration`.

    A configuration that does not exist is reported with a warning, not an error: the API
    server cannot call the webhooks through it, but everything else keeps working.
    Returns the kinds whose configuration holds the CA bundle now.
    """
    done: list[str] = []
    for res in (MUTATING_WEBHOOKS, VALIDATING_WEBHOOKS):
        for _ in range(ATTEMPTS):
            current = await kube.get(res, configuration)
            if current is None:
                log.warning(
                    "%s %s does not exist: the API server cannot call the admission webhooks through "
                    "it; create it (the Helm chart does) and restart the operator",
                    res.kind,
                    configuration,
                )
                break
            patch = ca_bundle_patch(current, ca_cert)
            if not patch:
                done.append(res.kind)
                break
            try:
                await kube.patch(res, configuration, patch)
            except (Conflict, Invalid) as error:
                log.info(
                    "%s %s changed while it was patched (%s); reading it again",
                    res.kind,
                    configuration,
                    error,
                )
                continue
            log.info("%s %s: CA bundle set on %d webhook(s)", res.kind, configuration, len(patch) // 2)
            done.append(res.kind)
            break
        else:
            log.warning("%s %s kept changing; its CA bundle was not set", res.kind, configuration)
    return done


async def prepare_serving(
    kube: Kube, settings: Settings, now: dt.datetime, directory: Path | None = None
) -> tuple[Path, Path]:
    """Certificate stored and trusted: returns the certificate and key files to serve.

    Called again with the same `directory` it renews what is near expiry (or takes what
    another replica renewed) and rewrites the files there.
    """
    service = WebhookService.from_settings(settings)
    material = await ensure_certificate(kube, service, now)
    cert, key = material.write(directory or Path(tempfile.mkdtemp(prefix="zsp-webhook-")))  # mode 0700
    await inject_ca_bundle(kube, service.configuration, material.ca_cert)
    return cert, key


class ReloadableContext:
    """The webhook server's TLS context, its certificate swappable while the server runs.

    A certificate loaded into the context again serves every connection made after it, so a
    renewal (ours, or cert-manager's rewrite of the mounted Secret) needs no restart.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
        self._loaded = b""
        self.reload()

    def reload(self) -> bool:
        """Load the files if they changed; True if the served certificate is new.

        The pair is read once and tried on a scratch context first: a key that does not
        match (files caught mid-rewrite) raises and leaves the served certificate alone.
        """
        cert, key = self.cert.read_bytes(), self.key.read_bytes()
        if cert + key == self._loaded:
            return False
        with tempfile.TemporaryDirectory(prefix="zsp-webhook-") as scratch:  # mode 0700
            pair = write_pair(Path(scratch), cert, key)
            ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH).load_cert_chain(*pair)
            self.context.load_cert_chain(*pair)
        self._loaded = cert + key
        return True


async def refresh_forever(refresh: Callable[[], Awaitable[object]], every: dt.timedelta) -> None:
    """Run `refresh` every `every`; after a failure, again by the retry policy (at most `every`)."""
    period = every.total_seconds()
    failures = 0
    wait = period
    while True:
        await asyncio.sleep(wait)
        try:
            await refresh()
        except (KubeError, OSError, ValueError, RuntimeError) as error:  # ssl.SSLError is an OSError
            retryable = error.retryable if isinstance(error, KubeError) else True
            wait = backoff(failures, retryable=retryable, cap=period)
            failures += 1
            log.warning("webhook certificate not refreshed (trying again in %.1fs): %s", wait, error)
        else:
            wait, failures = period, 0
