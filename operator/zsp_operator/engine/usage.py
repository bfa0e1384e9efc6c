"""Evidence of use: audit events attributed to grants as they arrive, one summary per ended grant.

The API server sends audit events in batches, seconds after the requests they describe, so
a grant's tally stays open for `--audit-settle` after the grant ended. Then the summary is
written once: to the request's `status.usage` and as an audit record `used`. Nothing here
is on the path of issuing or revoking: events are counted in memory, summaries written
later, and a failure to write one is logged and retried, never raised into a revocation.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from zsp_operator.core.grantindex import Identity, identity_of
from zsp_operator.core.lifecycle import UsageObserved
from zsp_operator.core.models import AccessRequestStatus, PolicyRule, TaskGrant, UsageSummary
from zsp_operator.core.usage import UsageTally, Use, made_under, summarize
from zsp_operator.engine.clock import Clock
from zsp_operator.engine.status_writer import RequestRef, StatusWriter
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import KubeError
from zsp_operator.kube.retry import backoff
from zsp_operator.observe.observer import Observer

log = logging.getLogger(__name__)

# Tries to write one summary before it is given up (the API server is down for minutes).
_WRITE_ATTEMPTS = 8


# A catalogued ClusterRole's rules are not the grant's to hold: everything allowed under it counts.
_ANYTHING = (PolicyRule(verbs=["*"], api_groups=["*"], resources=["*"]),)


def _matching_rules(grant: TaskGrant) -> Sequence[PolicyRule]:
    return grant.spec.rules or (_ANYTHING if grant.spec.cluster_role else ())


@dataclass
class _Ended:
    grant: TaskGrant
    at: datetime
    due: datetime


class UsageTracker:
    def __init__(
        self, view: ClusterView, status: StatusWriter, observer: Observer, clock: Clock, settle: timedelta
    ) -> None:
        self.view = view
        self.status = status
        self.observer = observer
        self.clock = clock
        self.settle = settle
        self._tallies: dict[str, UsageTally] = {}  # grant uid -> what its grantee did
        self._ended: dict[str, _Ended] = {}  # grant uid -> ended grants still taking late events
        self._ended_by_identity: dict[Identity, set[str]] = {}
        self._due: deque[str] = deque()  # ended grant uids in the order they settle
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- events in ---------------------------------------------------------------------------

    def receive(self, uses: Sequence[Use]) -> None:
        """Count each use for the grants it was made under (the audit webhook calls this)."""
        outcomes: Counter[str] = Counter()
        for use in uses:
            outcome = "no-grant"
            for grant, ended_at in self._candidates(use.identity):
                if made_under(use, grant, ended_at):
                    tally = self._tallies.setdefault(grant.metadata.uid, UsageTally())
                    outcome = tally.add(use, _matching_rules(grant))
            outcomes[outcome] += 1
        for outcome, count in outcomes.items():
            self.observer.metrics.audit_events.labels(outcome).inc(count)

    def _candidates(self, identity: Identity) -> list[tuple[TaskGrant, datetime | None]]:
        live: list[tuple[TaskGrant, datetime | None]] = [
            (g, None) for g in self.view.grant_index.holding(identity)
        ]
        ended = [
            (e.grant, e.at)
            for uid in self._ended_by_identity.get(identity, ())
            if (e := self._ended.get(uid))
        ]
        return live + ended

    # -- grants ending -----------------------------------------------------------------------

    def grant_ended(self, grant: TaskGrant, request_status: AccessRequestStatus | None) -> None:
        """Keep the grant taking late events for `settle`, then write its summary."""
        uid = grant.metadata.uid
        if uid in self._ended:
            return
        at = (request_status.revoked_at if request_status is not None else None) or self.clock()
        self._ended[uid] = _Ended(grant, at, self.clock() + self.settle)
        identity = identity_of(grant)
        if identity is not None:
            self._ended_by_identity.setdefault(identity, set()).add(uid)
        self._due.append(uid)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._settle_loop(), name="usage-summaries")

    async def _settle_loop(self) -> None:
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            ended = self._ended[self._due[0]]
            wait = (ended.due - self.clock()).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, 1.0))  # the clock may be a test's, moved by hand
                continue
            self._due.popleft()
            await self._summarize(ended)

    async def _summarize(self, ended: _Ended) -> None:
        grant = ended.grant
        uid = grant.metadata.uid
        summary = summarize(grant.spec.rules, self._tallies.pop(uid, UsageTally()))  # ClusterRole: no rules
        self._ended.pop(uid, None)
        identity = identity_of(grant)
        if identity is not None:
            held = self._ended_by_identity.get(identity, set())
            held.discard(uid)
            if not held:
                self._ended_by_identity.pop(identity, None)
        status = await self._write(grant, summary)
        self.observer.usage_observed(grant, summary, status)

    async def _write(self, grant: TaskGrant, summary: UsageSummary) -> AccessRequestStatus | None:
        ref = RequestRef(grant.spec.request.name, grant.namespace, grant.spec.request.uid)
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return await self.status.transition(ref, UsageObserved(summary))
            except KubeError as err:
                delay = backoff(attempt)
                log.warning(
                    "usage of %s/%s not recorded yet, retrying in %.1fs: %s",
                    grant.namespace,
                    grant.name,
                    delay,
                    err,
                )
                await asyncio.sleep(delay)
        log.error(
            "gave up recording the usage of %s/%s; the audit record still has it", grant.namespace, grant.name
        )
        return None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
