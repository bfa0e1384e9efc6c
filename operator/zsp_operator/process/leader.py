"""One active replica: a coordination.k8s.io Lease decides which one runs the controllers.

Every write is a PUT with the resourceVersion read just before, so two candidates
racing for a free Lease cannot both win: the API server refuses the second with
409 Conflict. A leader that cannot renew within its renew deadline steps down (the
caller stops and exits, so the pod restarts as a standby) well before a standby
would take over, so there is never a moment with two active replicas.

Tries come every retry period, as the Lease's terms say; after an API error the next one
comes by the retry policy's backoff, sooner at first and never later than the period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from zsp_operator.core import lease
from zsp_operator.core.lease import LeaseRecord
from zsp_operator.engine.clock import Clock, utcnow
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import LEASES
from zsp_operator.kube.retry import backoff
from zsp_operator.settings import Settings

log = logging.getLogger(__name__)
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LEASE_NAMESPACE = "zsp-system"


class LeadershipLost(Exception):
    """The Lease could not be renewed in time, or another replica holds it now."""


def lease_namespace(settings: Settings, pod_namespace_file: Path = POD_NAMESPACE_FILE) -> str:
    """The configured namespace, else the pod's own, else zsp-system."""
    if settings.lease_namespace:
        return settings.lease_namespace
    try:
        return pod_namespace_file.read_text().strip() or DEFAULT_LEASE_NAMESPACE
    except OSError:
        return DEFAULT_LEASE_NAMESPACE


def candidate_identity() -> str:
    """The pod name (its hostname) plus a random suffix: a restarted container is a new candidate."""
    return f"{socket.gethostname()}_{os.urandom(4).hex()}"


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: timedelta,
        renew_deadline: timedelta,
        retry_period: timedelta,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Clock = utcnow,
    ) -> None:
        if not retry_period < renew_deadline < duration:
            raise ValueError(
                "leader election needs retry-period < renew-deadline < lease-duration "
                f"(got {retry_period}, {renew_deadline}, {duration})"
            )
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.duration, self.renew_deadline, self.retry_period = duration, renew_deadline, retry_period
        self._monotonic, self._wall = monotonic, wall
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0

    @classmethod
    def from_settings(cls, kube: Kube, settings: Settings, identity: str | None = None) -> LeaderElector:
        return cls(
            kube,
            lease_namespace(settings),
            settings.lease_name,
            identity or candidate_identity(),
            duration=settings.lease_duration,
            renew_deadline=settings.renew_deadline,
            retry_period=settings.retry_period,
        )

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    async def acquire(self) -> None:
        """Return once this replica holds the Lease; until then, stand by and retry."""
        log.info("%s: standing by as %s", self.where, self.identity)
        failures = 0
        while True:
            try:
                if await self._take_or_renew():
                    break
                failures = 0
            except KubeError as err:
                log.warning("%s: %s", self.where, err)
                failures += 1
            await asyncio.sleep(self._next_try(failures))
        log.info("%s: %s is the leader", self.where, self.identity)

    async def keep(self) -> None:
        """Renew the Lease for as long as we lead; raise LeadershipLost when we no longer may."""
        last_renewed = self._monotonic()
        failures = 0
        while True:
            await asyncio.sleep(self._next_try(failures))
            try:
                if await self._take_or_renew():
                    last_renewed, failures = self._monotonic(), 0
                    continue
            except KubeError as err:
                log.warning("%s: %s", self.where, err)
                failures += 1
            if self._observed is not None and self._observed.holder not in (None, self.identity):
                raise LeadershipLost(f"{self.where} is held by {self._observed.holder} now")
            if self._monotonic() - last_renewed >= self.renew_deadline.total_seconds():
                raise LeadershipLost(f"{self.where} not renewed within {self.renew_deadline}")

    async def release(self) -> None:
        """Let go on a clean exit so a standby takes over at its next try, not a duration later."""
        try:
            body = await self.kube.get(LEASES, self.name, self.namespace)
            record = LeaseRecord.from_spec((body or {}).get("spec"))
            if body is None or record.holder != self.identity:
                return
            released = lease.release(record, self._wall())
            await self.kube.replace(LEASES, {**body, "spec": released.to_spec()})
            log.info("%s: released by %s", self.where, self.identity)
        except KubeError as err:
            log.warning("%s: could not release (a standby takes over when it expires): %s", self.where, err)

    async def try_once(self) -> bool:
        """One attempt to take or renew the Lease; False on any refusal or API error."""
        try:
            return await self._take_or_renew()
        except KubeError as err:
            log.warning("%s: %s", self.where, err)
            return False

    async def _take_or_renew(self) -> bool:
        body = await self.kube.get(LEASES, self.name, self.namespace)
        if body is None:
            return await self._create()
        record = LeaseRecord.from_spec(body.get("spec"))
        if record != self._observed:
            self._observed, self._observed_at = record, self._monotonic()
        unchanged_for = timedelta(seconds=self._monotonic() - self._observed_at)
        if not lease.may_take(record, self.identity, unchanged_for):
            return False
        claimed = lease.claim(record, self.identity, self._wall(), self.duration)
        if record.holder != self.identity:
            log.info("%s: taking over from %s", self.where, record.holder or "nobody")
        await self.kube.replace(LEASES, {**body, "spec": claimed.to_spec()})  # 409 if it moved
        self._observed, self._observed_at = claimed, self._monotonic()
        return True

    async def _create(self) -> bool:
        claimed = lease.claim(None, self.identity, self._wall(), self.duration)
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": claimed.to_spec(),
        }
        await self.kube.create(LEASES, body)  # 409 if another candidate was first
        self._observed, self._observed_at = claimed, self._monotonic()
        return True

    def _next_try(self, failures: int) -> float:
        """The retry period; after `failures` API errors in a row, the backoff, capped at it."""
        period = self.retry_period.total_seconds()
        return backoff(failures - 1, cap=period) if failures else period
