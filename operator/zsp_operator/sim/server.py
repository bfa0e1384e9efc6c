"""SimServer: wires the store, controllers and HTTP handler together and serves them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import pathlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from zsp_operator.sim.admission import Admission
from zsp_operator.sim.audit import Auditor, Policy, load_policy
from zsp_operator.sim.auditwebhook import (
    DEFAULT_BATCH_MAX_SIZE,
    DEFAULT_BATCH_MAX_WAIT,
    DEFAULT_INITIAL_BACKOFF,
    BatchingWebhook,
    load_webhook_config,
)
from zsp_operator.sim.auth import MASTERS, Authenticator
from zsp_operator.sim.authz import Authorizer
from zsp_operator.sim.certs import SelfSigned, self_signed
from zsp_operator.sim.controllers import Controllers
from zsp_operator.sim.deletion import Deleter
from zsp_operator.sim.http import ApiHandler, RequestObserver
from zsp_operator.sim.objects import Objects, RequestContext
from zsp_operator.sim.resources import Registry
from zsp_operator.sim.reviews import Reviews
from zsp_operator.sim.seed import NAMESPACES, cluster_role_bindings, cluster_roles
from zsp_operator.sim.services import DEFAULT_SERVICE_CIDR, ClusterIPs
from zsp_operator.sim.store import Store
from zsp_operator.sim.tokens import TokenSigner

ADMIN_USER = "zsp-admin"
CLUSTER_NAME = "zsp-sim"


class SimServer:
    """An in-memory Kubernetes API server on 127.0.0.1 for tests and demos.

    Plain HTTP by default. `tls=True` serves HTTPS with a self-signed certificate that
    the kubeconfigs carry: kubectl (client-go) only sends bearer tokens over TLS.
    Services get ClusterIPs from `service_cidr` (an IPv4 range, on loopback by default so
    that webhooks behind Services are reachable on this machine).

    Auditing is off unless both `audit_policy_file` and `audit_webhook_config_file` are
    given; then, as kube-apiserver with the same flags in batch mode, each request the
    policy selects is POSTed to the webhook in `audit.k8s.io/v1` EventLists (`sim.audit`).
    """

    def __init__(
        self,
        crds: Iterable[dict[str, Any]] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        bookmark_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        service_cidr: str = DEFAULT_SERVICE_CIDR,
        audit_policy_file: str | pathlib.Path | None = None,
        audit_webhook_config_file: str | pathlib.Path | None = None,
        audit_webhook_batch_max_size: int = DEFAULT_BATCH_MAX_SIZE,
        audit_webhook_batch_max_wait: float = DEFAULT_BATCH_MAX_WAIT,
        audit_webhook_initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self.certificate: SelfSigned | None = self_signed(hosts=("localhost", host)) if tls else None
        self._crds = [copy.deepcopy(crd) for crd in crds]
        self.store = Store()
        self.registry = Registry()
        self.signer = TokenSigner()
        self.authenticator = Authenticator(self.store, self.signer, clock)
        self.authorizer = Authorizer(self.store)
        self.admission = Admission(self.store, self.registry)
        self.cluster_ips = ClusterIPs(self.store, service_cidr)
        self.objects = Objects(
            self.store, self.registry, self.admission, self.authorizer, clock, self.cluster_ips
        )
        self.deleter = Deleter(self.objects)
        self.reviews = Reviews(self.objects, self.authenticator, self.authorizer, self.signer, clock)
        self._bookmark_interval = bookmark_interval
        self._admin_token = self.authenticator.add_static(ADMIN_USER, [MASTERS])
        self._controllers: Controllers | None = None
        self.request_observers: list[RequestObserver] = []
        self._runner: web.AppRunner | None = None
        # Both files are read now, so that a bad one fails here as it fails the real server's start.
        if (audit_policy_file is None) != (audit_webhook_config_file is None):
            raise ValueError("audit_policy_file and audit_webhook_config_file go together")
        self._audit_policy: Policy | None = None
        # Its `sent` and `dropped` counts tell how the receiver fared.
        self.audit_webhook: BatchingWebhook | None = None
        if audit_policy_file is not None and audit_webhook_config_file is not None:
            self._audit_policy = load_policy(audit_policy_file)
            self.audit_webhook = BatchingWebhook(
                load_webhook_config(audit_webhook_config_file),
                max_size=audit_webhook_batch_max_size,
                max_wait=audit_webhook_batch_max_wait,
                initial_backoff=audit_webhook_initial_backoff,
            )

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._controllers = Controllers(self.objects, self.deleter)
        self._controllers.start()
        await self._seed()
        auditor = None
        if self._audit_policy is not None and self.audit_webhook is not None:
            await self.audit_webhook.start()
            auditor = Auditor(self._audit_policy, self.audit_webhook.emit)
        handler = ApiHandler(
            self.objects,
            self.deleter,
            self.reviews,
            self.authenticator,
            self.authorizer,
            self._bookmark_interval,
            f"{self.host}:{self.port}",
            self.request_observers,
            auditor,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handler.handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        ssl_context = self.certificate.server_context() if self.certificate else None
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        handler.server_address = f"{self.host}:{self.port}"

    async def stop(self) -> None:
        self.store.close_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._controllers is not None:
            await self._controllers.stop()
            self._controllers = None
        await self.admission.close()
        if self.audit_webhook is not None:  # after the handlers, so that their events are sent
            await self.audit_webhook.close()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def settle(self) -> None:
        """Wait until the in-process controllers (GC, namespaces, CRDs) have caught up."""
        if self._controllers is not None:
            for _ in range(3):  # handling a change can queue more changes
                await self._controllers.settle()
                await asyncio.sleep(0)

    async def _seed(self) -> None:
        admin = RequestContext(self.authenticator.authenticate(self._admin_token))  # type: ignore[arg-type]
        seeds: list[tuple[tuple[str, str, str], dict[str, Any]]] = [
            (("", "v1", "namespaces"), {"metadata": {"name": name}}) for name in NAMESPACES
        ]
        rbac = "rbac.authorization.k8s.io"
        seeds += [((rbac, "v1", "clusterroles"), role) for role in cluster_roles()]
        seeds += [((rbac, "v1", "clusterrolebindings"), binding) for binding in cluster_role_bindings()]
        seeds += [(("apiextensions.k8s.io", "v1", "customresourcedefinitions"), crd) for crd in self._crds]
        for (group, version, plural), body in seeds:
            rtype = self.registry.lookup(group, version, plural)
            assert rtype is not None
            await self.objects.create(admin, rtype, "", body)
        await self.settle()

    # --- identities and kubeconfigs -------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.certificate else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def has_garbage_collector(self) -> bool:
        """Dependents are collected here, as with a kube-controller-manager (envtest may lack one)."""
        return True

    @property
    def ca_pem(self) -> bytes | None:
        """The certificate to trust when `tls=True` (it is its own CA)."""
        return self.certificate.cert_pem if self.certificate else None

    @property
    def admin_token(self) -> str:
        """Authenticates as `zsp-admin` in `system:masters` (a superuser)."""
        return self._admin_token

    def user_token(self, username: str, groups: Sequence[str] = ()) -> str:
        """A static bearer token for a person or test identity; `system:authenticated` is added."""
        return self.authenticator.add_static(username, groups)

    def kubeconfig(self, token: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        cluster: dict[str, Any] = {"server": self.url}
        if self.certificate:
            cluster["certificate-authority-data"] = base64.b64encode(self.certificate.cert_pem).decode()
        context: dict[str, Any] = {"cluster": CLUSTER_NAME, "user": "zsp-sim-user"}
        if namespace:
            context["namespace"] = namespace
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CLUSTER_NAME, "cluster": cluster}],
            "users": [{"name": "zsp-sim-user", "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": CLUSTER_NAME, "context": context}],
            "current-context": CLUSTER_NAME,
            "preferences": {},
        }

    def write_kubeconfig(
        self, path: str | pathlib.Path, token: str | None = None, namespace: str | None = None
    ) -> pathlib.Path:
        """Write a kubeconfig (mode 0600: it holds a token) and return its path."""
        target = pathlib.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(mode=0o600, exist_ok=True)
        target.chmod(0o600)
        target.write_text(yaml.safe_dump(self.kubeconfig(token, namespace), sort_keys=False))
        return target


@contextlib.contextmanager
def serve_in_thread(
    crds: Iterable[dict[str, Any]] = (), host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[SimServer]:
    """Run a SimServer on its own event loop in a daemon thread for the duration of the block."""
    sim = SimServer(crds, host, port, **options)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(sim.start())
        except BaseException as error:
            failure.append(error)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(sim.stop())
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, name="zsp-sim", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        raise failure[0]
    try:
        yield sim
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
