"""Operator start and stop: kopf settings, the API connection, and the controller's start."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import kopf

from zsp_operator.core import constants as c
from zsp_operator.handlers.admission_loop import OwnLoopWebhookServer
from zsp_operator.handlers.common import controller_of, retry_on_api_errors
from zsp_operator.kube.retry import Backoffs
from zsp_operator.serving.pki import LOOPBACK, issue_serving_pki
from zsp_operator.serving.webhookcert import ReloadableContext, prepare_serving, refresh_forever

log = logging.getLogger(__name__)


async def configure(settings: kopf.OperatorSettings, memo: Any) -> None:
    """Our finalizer, our annotation prefix, and where the admission webhooks are served."""
    # Not ours (c.FINALIZER): kopf strips its configured finalizer from objects no handler of
    # it needs one for, and the operator releases its own TaskGrant finalizer itself.
    settings.persistence.finalizer = c.KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # kopf's own API calls retry by our policy too, and wait as long as a 429 says.
    settings.networking.error_backoffs = Backoffs(8)
    settings.networking.enforce_retry_after = True
    ours = memo.settings
    if ours.dev:
        # A local control plane reaches us on loopback; kopf registers both configurations.
        pki = issue_serving_pki(LOOPBACK, common_name="zsp-operator-webhook")
        cert, key = pki.write(Path(tempfile.mkdtemp(prefix="zsp-webhook-")))
        settings.admission.server = OwnLoopWebhookServer(
            addr="127.0.0.1",
            port=ours.webhook_port or None,
            host="127.0.0.1",
            certfile=str(cert),
            pkeyfile=str(key),
            cadata=pki.ca_cert,  # the caBundle the API server verifies us with
        )
        settings.admission.managed = c.GROUP
    elif ours.webhook_cert_dir:
        # In a cluster the chart owns the configurations (pointing at the Service), and
        # cert-manager rewrites the mounted files when it renews: re-read them now and then.
        directory = Path(ours.webhook_cert_dir)
        tls = ReloadableContext(directory / "tls.crt", directory / "tls.key")
        settings.admission.server = _cluster_server(tls, ours.webhook_port)
        _keep_fresh(memo, tls, None, ours.webhook_cert_refresh)
    elif ours.webhook_service:
        # In a cluster without cert-manager: our own certificate, kept in a Secret, its CA
        # put into the configurations the chart made (pointing at the Service).
        controller = controller_of(memo)
        cert, key = await prepare_serving(controller.kube, ours, controller.clock())
        tls = ReloadableContext(cert, key)
        settings.admission.server = _cluster_server(tls, ours.webhook_port)

        async def renew() -> None:
            await prepare_serving(controller.kube, ours, controller.clock(), cert.parent)

        _keep_fresh(memo, tls, renew, ours.webhook_cert_refresh)
    else:
        log.warning(
            "admission webhooks are not served (no --dev, --webhook-cert-dir or --webhook-service): requests "
            "will be denied for lack of an authenticated requester"
        )


def _cluster_server(tls: ReloadableContext, port: int) -> kopf.WebhookServer:
    return OwnLoopWebhookServer(
        addr="0.0.0.0",  # noqa: S104 - the Service routes to the pod's address
        port=port,
        context=tls.context,  # ours, so a renewed certificate can be loaded into it
        certfile=str(tls.cert),
        pkeyfile=str(tls.key),
    )


def _keep_fresh(
    memo: Any, tls: ReloadableContext, renew: Callable[[], Awaitable[None]] | None, every: timedelta
) -> None:
    """Renew (when we own the certificate) and reload it now and then, until cleanup."""

    async def refresh() -> None:
        if renew is not None:
            await renew()
        if tls.reload():
            log.info("webhook certificate reloaded from %s", tls.cert)

    memo.certificate_refresh = asyncio.create_task(refresh_forever(refresh, every))


async def _stop_refreshing(memo: Any) -> None:
    task: asyncio.Task[None] | None = getattr(memo, "certificate_refresh", None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def register(registry: kopf.OperatorRegistry, *, standby: bool = False) -> None:
    @kopf.on.startup(id="configure", registry=registry)
    async def configure_once(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        await configure(settings, memo)

    # A separate activity, so a retry after an API error (a CRD's storage still
    # initializing) starts the controller again without configuring everything twice.
    @kopf.on.startup(id="start", registry=registry)
    @retry_on_api_errors
    async def start(memo: Any, **_: Any) -> None:
        controller = controller_of(memo)
        await (controller.start_standby() if standby else controller.start())

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: Any, **_: Any) -> None:
        await _stop_refreshing(memo)
        await controller_of(memo).stop()

    @kopf.on.login(registry=registry)
    def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
        conn = controller_of(memo).kube.connection
        return kopf.ConnectionInfo(
            server=conn.server,
            ca_path=conn.ca_path,
            insecure=conn.insecure,
            token=conn.token,
            certificate_path=conn.cert_path,
            private_key_path=conn.key_path,
        )
