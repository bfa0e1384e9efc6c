"""Start-up: what a fresh operator (or a new leader) does before its watches take over.

The lists here (one per kind, a page at a time) and the informers' first listings, which
start at the end, are the only ones outside a resync: from then on the watches keep the view
and the cache current, and the operator's own writes go in as they are answered. Privilege
that outlived its grant goes first: each overdue grant's bindings are cut as soon as its page
of TaskGrants is read, before anything else is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING

from zsp_operator.core import constants as c
from zsp_operator.core import lifecycle
from zsp_operator.core.manifests import MANAGED_SELECTOR
from zsp_operator.core.models import TaskGrant
from zsp_operator.engine import watches
from zsp_operator.engine.cache import OWNED
from zsp_operator.engine.informer import PAGE, Informer
from zsp_operator.engine.memory import limit_tls_buffers
from zsp_operator.kube import Body, Kube, KubeError
from zsp_operator.kube.resources import (
    ACCESS_POLICIES,
    ACCESS_REQUESTS,
    CLUSTER_ROLES,
    NAMESPACES,
    ROLE_BINDINGS,
    TASK_GRANTS,
    Resource,
)

if TYPE_CHECKING:
    from zsp_operator.engine.controller import Controller

log = logging.getLogger(__name__)
_YIELD_EVERY = 50  # TaskGrants read between two turns of the event loop while cutting


async def start(engine: Controller) -> None:
    """Prime the view, revoke what expired while we were away, re-arm the rest, sweep orphans."""
    kube, view, revoker = engine.kube, engine.view, engine.revoker
    limit_tls_buffers()
    engine.identity = (await kube.whoami()).get("username")
    view.replace_all(await kube.list(ACCESS_POLICIES), await kube.list(NAMESPACES), [])
    started = engine.clock()
    # The bindings of the overdue grants are deleted by uid as their pages arrive, while the
    # rest is still read; their revocations follow.
    cuts = _OverdueCuts(engine, started)
    async for page in _pages(kube, TASK_GRANTS):
        for index, body in enumerate(page, 1):
            cuts.consider(view.put_grant(body))
            if index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the cuts' answers in: reading a page is ~0.1 s of CPU
    await cuts.done()
    engine.request_cache.replace([])
    async for page in _pages(kube, ACCESS_REQUESTS):
        for body in page:
            engine.request_cache.put(body)
    engine.cache.replace(CLUSTER_ROLES, await kube.list(CLUSTER_ROLES))
    for res in OWNED:
        engine.cache.replace(res, [])
        async for page in _pages(kube, res, MANAGED_SELECTOR):
            for body in page:
                engine.cache.put(res, body)
    revoker.expiry.start()
    engine.requests.start()
    now = engine.clock()
    revoker.started_at = started
    tracker = engine.grant_tracker
    for grant in list(view.grants.values()):
        if grant.metadata.deletion_timestamp is not None:
            continue  # the grant tracker finishes it from its watch event
        ending = lifecycle.recorded_end(grant.status.conditions)
        if grant.spec.expires_at <= now:
            # Through the expiry scheduler, already due: earliest first, a bounded number
            # at a time, so ten thousand overdue grants do not all start at once.
            revoker.expiry.arm(grant.metadata.uid, grant.spec.expires_at)
        elif ending is not None:
            # A revocation was under way when we stopped: finish it, for the same reason.
            revoker.revoke_soon(grant, ending.reason, ending.message)
        else:
            engine.observer.resumed(grant)
            revoker.expiry.arm(grant.metadata.uid, grant.spec.expires_at)
            tracker.tasks.follow(grant)
            tracker.arm_condition_check(grant)
    tracker.start()  # after every live grant is followed: one list per kind settles them all
    # Policies and namespaces may have changed while we were away: no event will say so.
    await tracker.recheck(view.grants_where(lambda grant: not revoker.in_progress(grant.metadata.uid)))
    await _remove_orphans(engine)
    engine.sweeper.start_soon(engine.identity)
    _start_informers(engine, watches.informers(engine))
    view.memory.started()  # the listings above are garbage now: give their pages back


def _start_informers(engine: Controller, informers: list[Informer]) -> None:
    """From here on the watches keep the view and the caches current."""
    engine.informers = informers
    for informer in informers:
        informer.start()


async def _pages(kube: Kube, res: Resource, label_selector: str | None = None) -> AsyncIterator[list[Body]]:
    """A kind's objects a page at a time: what one grant costs in each listing is kept, the rest
    of the page is garbage before the next one is read. Read whole, ten thousand grants' bodies
    (managedFields and all) were the start-up's peak, several hundred MB, most of it then kept
    by the allocator as free space."""
    async for page, _ in kube.list_pages(res, label_selector=label_selector, limit=PAGE):
        yield page


async def start_standby(engine: Controller) -> None:
    """What a standby needs to answer admission: who we are, and the policies. Nothing else runs."""
    limit_tls_buffers()
    engine.identity = (await engine.kube.whoami()).get("username")
    engine.view.replace_all(await engine.kube.list(ACCESS_POLICIES), [], [])
    _start_informers(engine, watches.standby_informers(engine))


class _OverdueCuts:
    """Start-up's cuts: each overdue grant's bindings deleted as soon as its page is read,
    `revoke_concurrency` at a time."""

    def __init__(self, engine: Controller, now: datetime) -> None:
        self.engine, self.now = engine, now
        self.slots = asyncio.Semaphore(engine.settings.revoke_concurrency)
        self.running: set[asyncio.Task[None]] = set()

    def consider(self, grant: TaskGrant | None) -> None:
        if grant is None or grant.metadata.deletion_timestamp is not None or grant.spec.expires_at > self.now:
            return
        task = asyncio.create_task(self._cut(grant), name="zsp-startup-cut")
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _cut(self, grant: TaskGrant) -> None:
        async with self.slots:
            try:
                await self.engine.grants.cut_bindings(grant)
            except KubeError as err:
                log.warning("cutting the binding of overdue grant %s failed: %s", grant.name, err)
                return  # its revocation cuts it again
            self.engine.revoker.mark_cut(grant.metadata.uid)

    async def done(self) -> None:
        while self.running:
            await asyncio.gather(*self.running)


async def _remove_orphans(engine: Controller) -> None:
    """Delete any object carrying our labels whose grant no longer exists.

    RoleBindings are left to the sweeper, which judges them in full and reports what it
    removes. Delivery Secrets are never listed: one is deleted with the grant that
    recorded it, and its token died with the grant's ServiceAccount.
    """
    live = set(engine.view.grants)
    for res in OWNED:
        if res is ROLE_BINDINGS:
            continue
        for obj in engine.cache.all(res):
            meta = obj["metadata"]
            owner = (meta.get("labels") or {}).get(c.LABEL_GRANT_UID)
            if owner and owner not in live:
                log.warning(
                    "removing %s %s/%s left by a vanished grant",
                    res.kind,
                    meta.get("namespace"),
                    meta["name"],
                )
                await engine.kube.delete(res, meta["name"], meta.get("namespace"), uid=meta.get("uid"))
                engine.cache.drop(res, meta.get("namespace"), meta["name"], meta.get("uid"))
