"""What one grant costs the API server over its whole life, counted by the in-memory server.

The budget (docs/architecture.md, "What a grant costs"): reads come from watches, so a grant's
life is writes only, and no list at all outside start-up and resyncs. Counted per grant,
from the request being filed to its TaskGrant being gone, every call the operator's own
identity makes (kopf's included), but watches (one per kind, shared by all grants) and
Events (posted in the background; not the record).

Runs on the in-memory server only: it is the tier whose every request can be observed from
the test. The real tier's counts are in bench/RESULTS.md (kube-apiserver's audit log).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from harness import OPERATOR_USER, eventually, running_operator, wait_for_phase
from tiers import Cluster, tier_cluster
from world import World, world
from zsp_operator.kube.resources import ACCESS_REQUESTS, TASK_GRANTS

# calls over a grant's life; the lines below name each call the operator makes
BUDGET = {
    # TaskGrant, Role, RoleBinding created; the TaskGrant's status and the request's
    # (decision and issuance in one write); then RoleBinding, TaskGrant (marked for
    # deletion), Role deleted, the request's end written, the finalizer released.
    "bind": 10,
    # and a ServiceAccount, its token, the delivery Secret; both deleted again.
    "ephemeral": 15,
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Cluster]:
    with tier_cluster("sim") as cluster:
        yield cluster


class Calls:
    """The operator's calls as the server saw them: 'verb resource[/subresource]' -> count."""

    def __init__(self, cluster: Cluster) -> None:
        assert cluster.request_observers is not None
        self._lock = threading.Lock()  # the server runs in its own thread
        self.seen: Counter[str] = Counter()
        self.order: list[str] = []
        self.counting = False
        cluster.request_observers.append(self._observe)

    def _observe(self, username: str, info: Any) -> None:
        if not self.counting or username != OPERATOR_USER or info is None:
            return
        if info.verb == "watch" or info.resource == "events":
            return
        call = f"{info.verb} {info.resource}" + (f"/{info.subresource}" if info.subresource else "")
        with self._lock:
            self.seen[call] += 1
            self.order.append(call)

    @contextlib.contextmanager
    def counted(self) -> Iterator[Counter[str]]:
        with self._lock:
            self.seen.clear()
        self.counting = True
        try:
            yield self.seen
        finally:
            self.counting = False


async def _one_grant(w: World, name: str, *, ephemeral: bool) -> None:
    await w.file(w.request(name, ephemeral=ephemeral))
    await wait_for_phase(w.admin, w.target, name, "Active")
    await w.admin.patch(ACCESS_REQUESTS, name, {"spec": {"done": True}}, w.target)
    await wait_for_phase(w.admin, w.target, name, "Completed")
    await eventually(lambda: _gone(w, name))


async def _gone(w: World, name: str) -> bool:
    return await w.admin.get(TASK_GRANTS, name, w.target) is None


@pytest.mark.parametrize("mode", ["bind", "ephemeral"])
async def test_a_grant_costs_a_handful_of_writes_and_no_lists(sim: Cluster, mode: str) -> None:
    calls = Calls(sim)
    async with world(sim) as w, running_operator(sim):
        await _one_grant(w, "warm-up", ephemeral=mode == "ephemeral")  # start-up is not the grant's
        with calls.counted() as seen:
            await _one_grant(w, f"budget-{mode}", ephemeral=mode == "ephemeral")
            total = sum(seen.values())
            lists = {call: n for call, n in seen.items() if call.startswith("list ")}
            reads = {call: n for call, n in seen.items() if call.startswith("get ")}
            assert lists == {}, f"a grant's life made lists: {dict(seen)}"
            assert reads == {}, f"a grant's life read what the watches already said: {calls.order}"
            assert total <= BUDGET[mode], f"{total} calls, budget {BUDGET[mode]}: {dict(seen)}"
