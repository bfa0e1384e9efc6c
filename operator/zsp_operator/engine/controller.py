"""The engine, built in one place: every part, and what each kopf handler calls.

Handlers are one-line calls into the parts (the cluster's RBAC objects, ServiceAccounts and
namespaces reach them through the engine's own informers, `engine.watches`): `requests` (AccessRequests, from filed to
Active or refused), `grant_tracker` (live grants and what can make one wrong), `revoker`
(every end, in order), `sweeper` (bindings no live grant explains). `engine.startup`
primes them from one listing per kind.
"""

from __future__ import annotations

from typing import IO

from zsp_operator.engine import startup
from zsp_operator.engine.cache import ObjectCache, RequestCache
from zsp_operator.engine.clock import Clock, utcnow
from zsp_operator.engine.deciding import Decider
from zsp_operator.engine.grant_objects import GrantService
from zsp_operator.engine.grant_tracker import GrantTracker
from zsp_operator.engine.informer import Informer
from zsp_operator.engine.requests import RequestReconciler
from zsp_operator.engine.revoker import Revoker
from zsp_operator.engine.status_writer import StatusWriter
from zsp_operator.engine.sweeper import Sweeper
from zsp_operator.engine.usage import UsageTracker
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import Kube
from zsp_operator.observe.auditlog import AuditLog
from zsp_operator.observe.metrics import Metrics
from zsp_operator.observe.notify import Notifier
from zsp_operator.observe.observer import Observer
from zsp_operator.settings import Settings


class Controller:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        observer: Observer,
        *,
        clock: Clock = utcnow,
        grants: GrantService | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.observer = observer
        self.clock = clock
        self.identity: str | None = None  # our own username, from the API server, at start
        # What the watches last said: the view decides from it, the caches replace reads.
        self.view = ClusterView()
        observer.policy_of = lambda name: self.view.policies.get(name)
        self.cache = ObjectCache()
        self.request_cache = RequestCache()
        self.grants = grants or GrantService(kube, settings, clock, self.cache)
        self.status = StatusWriter(kube, clock, self.request_cache)
        self.revoker = Revoker(
            self.grants, self.status, observer, self.view, clock, concurrency=settings.revoke_concurrency
        )
        self.expiry = self.revoker.expiry
        decider = Decider(kube, self.view, self.cache, settings, clock)
        self.requests = RequestReconciler(
            kube,
            observer,
            clock,
            self.view,
            self.request_cache,
            decider,
            self.grants,
            self.status,
            self.revoker,
        )
        self.grant_tracker = GrantTracker(
            kube,
            self.view,
            self.request_cache,
            decider,
            self.revoker,
            observer,
            clock,
            settings.namespaces,
            issuing=self.requests.is_issuing,
        )
        self.sweeper = Sweeper(
            kube, observer, settings, self.view, self.revoker.revoke_soon, cache=self.cache
        )
        self.informers: list[Informer] = []  # started once start-up is done (engine/watches.py)
        # Evidence of use, only when the API server sends audit events (--audit-webhook-port).
        self.usage: UsageTracker | None = None
        if settings.audit_webhook_port:
            self.usage = UsageTracker(self.view, self.status, observer, clock, settings.audit_settle)
            observer.grant_ended_hooks.append(self.usage.grant_ended)

    @classmethod
    def build(
        cls,
        kube: Kube,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        audit_stream: IO[str] | None = None,
        metrics: Metrics | None = None,
    ) -> Controller:
        """The engine with its observer: audit lines to `audit_stream` (stdout) and the settings' file,
        notifications as the routes file (`notify_config`) says."""
        metrics = metrics or Metrics()
        notifier = None
        if settings.notify_config:
            notifier = Notifier.from_file(
                settings.notify_config,
                metrics,
                attempts=settings.notify_attempts,
                queue=settings.notify_queue,
                timeout=settings.notify_timeout.total_seconds(),
            )
        observer = Observer(
            kube, AuditLog(clock, audit_stream, settings.audit_file), metrics, clock, notifier
        )
        return cls(kube, settings, observer, clock=clock)

    async def start(self) -> None:
        await startup.start(self)

    async def start_standby(self) -> None:
        await startup.start_standby(self)

    async def stop(self) -> None:
        for informer in self.informers:
            await informer.stop()
        await self.sweeper.stop()
        await self.grant_tracker.stop()
        await self.requests.stop()
        await self.revoker.stop()
        if self.usage is not None:
            await self.usage.stop()
        await self.observer.close()
