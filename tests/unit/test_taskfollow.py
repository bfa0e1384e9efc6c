"""Grants following their taskRef objects share one list and watch per kind.

Against the in-memory API server, counting the requests the follower's own identity makes:
one discovery, one list and one watch for a kind however many grants follow objects of it;
a grant ends (once, with the sentence the stories read) when its object finishes, is
deleted, or already was; the watch comes back when the server closes it or the
resourceVersion expires; errors are retried, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness import job_succeeded
from zsp_operator.core.models import TaskGrant
from zsp_operator.engine.taskfollow import TaskFollower
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, JOBS, SECRETS
from zsp_operator.sim import SimServer, http

WITHIN = 10.0  # seconds any awaited outcome may take before the test fails
FOLLOWER = "task-follower"


@dataclass(frozen=True)
class Call:
    verb: str  # get, list, watch... or "discovery"
    resource: str
    namespace: str
    name: str
    query: dict[str, str]


@dataclass
class Calls:
    """The requests the follower's identity sent, as the server parsed them."""

    token: str = ""
    seen: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: Any) -> None:
        if request.headers.get("Authorization", "").partition(" ")[2].strip() != self.token:
            return
        info = http.parse_resource_path(request.method, request.path, request.query)
        query = dict(request.query)
        if info is None:
            call = Call("discovery", request.path, "", "", query)
        else:
            call = Call(info.verb, info.resource, info.namespace, info.name, query)
        with self.lock:
            self.seen.append(call)

    def count(self, verb: str, resource: str = "jobs", namespace: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for c in self.seen
                if c.verb == verb
                and c.resource == resource
                and (namespace is None or c.namespace == namespace)
            )


@dataclass
class Ends:
    """What `on_end` was told, in order."""

    got: list[tuple[str, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, grant_uid: str, sentence: str) -> None:
        self.got.append((grant_uid, sentence))
        self.changed.set()

    def of(self, grant_uid: str) -> list[str]:
        return [sentence for uid, sentence in self.got if uid == grant_uid]

    async def wait_for(self, grant_uid: str) -> str:
        await until(lambda: bool(self.of(grant_uid)), f"{grant_uid} to end")
        return self.of(grant_uid)[0]


async def until(check: Callable[[], bool], what: str, within: float = WITHIN) -> None:
    """Wait for `check` to hold, looking again after every event-loop turn batch; fail after `within`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"waited {within}s for {what}")
        await asyncio.sleep(0.01)


def record_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every request the in-memory server handles from now on, recorded (the test's own too)."""
    recorder = Calls()
    original = http.ApiHandler.handle

    async def handle(handler: Any, request: Any) -> Any:
        recorder.record(request)
        return await original(handler, request)

    monkeypatch.setattr(http.ApiHandler, "handle", handle)
    return recorder


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return record_calls(monkeypatch)


@pytest.fixture
async def sim(calls: Calls, request: pytest.FixtureRequest) -> AsyncIterator[SimServer]:
    interval = getattr(request, "param", 0.2)
    async with SimServer(bookmark_interval=interval) as server:
        yield server


@pytest.fixture
async def admin(sim: SimServer) -> AsyncIterator[Kube]:
    async with await Kube.from_dict(sim.kubeconfig()) as kube:
        yield kube


@dataclass
class Rig:
    follower: TaskFollower
    ends: Ends
    calls: Calls


@contextlib.asynccontextmanager
async def _rig(sim: SimServer, calls: Calls, groups: list[str], **kwargs: Any) -> AsyncIterator[Rig]:
    calls.token = sim.user_token(FOLLOWER, groups)
    ends = Ends()
    async with await Kube.from_dict(sim.kubeconfig(calls.token)) as kube:
        follower = TaskFollower(kube, ends, **kwargs)
        try:
            yield Rig(follower, ends, calls)
        finally:
            await follower.stop()


@pytest.fixture
async def rig(sim: SimServer, calls: Calls) -> AsyncIterator[Rig]:
    async with _rig(sim, calls, ["system:masters"]) as made:
        yield made


def job(name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "busybox"}]}
            }
        },
    }


def grant(uid: str, task: str, *, namespace: str = "default", ref_namespace: str | None = None) -> TaskGrant:
    ref: dict[str, Any] = {"apiVersion": "batch/v1", "kind": "Job", "name": task}
    if ref_namespace is not None:
        ref["namespace"] = ref_namespace
    return TaskGrant.model_validate(
        {
            "metadata": {"name": f"grant-{uid}", "namespace": namespace, "uid": uid},
            "spec": {
                "request": {"name": f"req-{uid}", "uid": f"r-{uid}"},
                "policy": "p",
                "mode": "ephemeral",
                "expiresAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                "taskRef": ref,
            },
        }
    )


async def finish(admin: Kube, name: str, namespace: str = "default") -> None:
    await admin.patch(JOBS, name, job_succeeded(), namespace, status=True)


async def watching(rig: Rig, count: int = 1, namespace: str | None = None) -> None:
    await until(lambda: rig.calls.count("watch", namespace=namespace) >= count, f"{count} watch(es) of jobs")


# --- sharing ----------------------------------------------------------------------------------


async def test_grants_following_jobs_share_one_list_and_one_watch(rig: Rig, admin: Kube) -> None:
    for name in ("build", "deploy", "migrate"):
        await admin.create(JOBS, job(name))
    rig.follower.follow(grant("g1", "build"))
    rig.follower.follow(grant("g2", "deploy", ref_namespace="default"))
    rig.follower.follow(grant("g3", "migrate"))
    rig.follower.follow(grant("g1", "build"))  # seen again (every grant event): no change
    rig.follower.start()
    await watching(rig)

    await finish(admin, "build")
    assert await rig.ends.wait_for("g1") == "Job build finished: condition Complete"
    await admin.delete(JOBS, "deploy", "default")
    assert await rig.ends.wait_for("g2") == "task Job default/deploy was deleted"
    assert rig.ends.of("g3") == [], "only the grants whose object ended"
    assert [uid for uid, _ in rig.ends.got] == ["g1", "g2"]

    calls = rig.calls
    assert calls.count("watch") == 1
    assert calls.count("list") == 1
    assert calls.count("get") == 0, "no GET per grant"
    assert calls.count("discovery", "/apis/batch/v1") == 1
    assert rig.follower.watches == [("batch/v1", "Job", None)]
    watch = next(c for c in calls.seen if c.verb == "watch")
    assert watch.namespace == "", "cluster-wide"
    assert watch.query.get("allowWatchBookmarks") == "true"
    assert watch.query.get("resourceVersion"), "from the list's resourceVersion"


async def test_the_watch_stops_when_no_grant_follows_the_kind(rig: Rig, admin: Kube, sim: SimServer) -> None:
    await admin.create(JOBS, job("build"))
    rig.follower.follow(grant("g1", "build"))
    rig.follower.follow(grant("g2", "build"))
    rig.follower.start()
    await watching(rig)
    rig.follower.unfollow("g1")
    assert rig.follower.watches, "g2 still follows a Job"
    rig.follower.unfollow("g2")
    assert rig.follower.watches == []
    await until(lambda: not sim.store._watchers, "the server to see the watch closed")

    await finish(admin, "build")
    rig.follower.follow(grant("g3", "build"))  # a new follower: a new list and watch
    assert await rig.ends.wait_for("g3") == "Job build finished: condition Complete"
    assert rig.ends.of("g1") == rig.ends.of("g2") == []
    assert rig.calls.count("discovery", "/apis/batch/v1") == 1, "discovery is kept"


async def test_unfollow_stops_callbacks(rig: Rig, admin: Kube) -> None:
    await admin.create(JOBS, job("build"))
    await admin.create(JOBS, job("deploy"))
    rig.follower.follow(grant("g1", "build"))
    rig.follower.follow(grant("g2", "deploy"))
    rig.follower.start()
    await watching(rig)
    rig.follower.unfollow("g1")
    await finish(admin, "build")
    await finish(admin, "deploy")
    await rig.ends.wait_for("g2")  # events come in order: build's was handled before
    assert rig.ends.of("g1") == []


async def test_a_grant_ends_once(rig: Rig, admin: Kube) -> None:
    await admin.create(JOBS, job("build"))
    rig.follower.follow(grant("g1", "build"))
    rig.follower.start()
    await watching(rig)
    await finish(admin, "build")
    await rig.ends.wait_for("g1")
    rig.follower.follow(grant("g1", "build"))  # its next event, while its revocation runs
    await admin.delete(JOBS, "build", "default")
    await admin.create(JOBS, job("other"))
    rig.follower.follow(grant("g2", "other"))
    await finish(admin, "other")
    await rig.ends.wait_for("g2")
    assert rig.ends.of("g1") == ["Job build finished: condition Complete"]


async def test_stopped_and_started_again_it_follows_afresh(rig: Rig, admin: Kube, sim: SimServer) -> None:
    await admin.create(JOBS, job("build"))
    rig.follower.follow(grant("g1", "build"))
    rig.follower.start()
    await watching(rig)
    await rig.follower.stop()
    assert rig.follower.watches == []
    await until(lambda: not sim.store._watchers, "the server to see the watch closed")
    rig.follower.follow(grant("g1", "build"))
    rig.follower.start()
    await watching(rig, 2)
    await finish(admin, "build")
    assert await rig.ends.wait_for("g1") == "Job build finished: condition Complete"


# --- objects that already ended ---------------------------------------------------------------


async def test_objects_already_finished_or_absent_end_their_grants_from_the_list(
    rig: Rig, admin: Kube
) -> None:
    await admin.create(JOBS, job("done"))
    await finish(admin, "done")
    await admin.create(JOBS, job("running"))
    rig.follower.follow(grant("g1", "done"))
    rig.follower.follow(grant("g2", "ghost"))
    rig.follower.follow(grant("g3", "running"))
    rig.follower.start()
    assert await rig.ends.wait_for("g1") == "Job done finished: condition Complete"
    assert await rig.ends.wait_for("g2") == "task Job default/ghost was deleted"
    assert rig.ends.of("g3") == []
    assert rig.calls.count("get") == 0, "the list said it all"


async def test_a_late_follower_of_a_known_end_ends_at_once(rig: Rig, admin: Kube) -> None:
    await admin.create(JOBS, job("build"))
    await admin.create(JOBS, job("keep"))
    rig.follower.follow(grant("g1", "build"))
    rig.follower.follow(grant("keep", "keep"))  # keeps the watch alive
    rig.follower.start()
    await watching(rig)
    await finish(admin, "build")
    await rig.ends.wait_for("g1")

    before = list(rig.ends.got)
    rig.follower.follow(grant("g2", "build"))
    rig.follower.follow(grant("g3", "gone-before", ref_namespace="default"))
    await asyncio.sleep(0)  # the callback is a task: one turn of the loop runs it
    assert rig.ends.got[len(before) :] == [("g2", "Job build finished: condition Complete")]
    assert rig.calls.count("get") == 0
    # Not in the cache: one GET answers.
    assert await rig.ends.wait_for("g3") == "task Job default/gone-before was deleted"
    assert rig.calls.count("get") == 1


async def test_a_late_follower_of_an_unknown_running_object_waits_for_its_end(rig: Rig, admin: Kube) -> None:
    await admin.create(JOBS, job("keep"))
    rig.follower.follow(grant("keep", "keep"))
    rig.follower.start()
    await watching(rig)
    await admin.create(JOBS, job("later"))
    rig.follower.follow(grant("g1", "later"))
    await until(lambda: rig.calls.count("get") == 1, "one GET for the object the cache did not know")
    await finish(admin, "later")
    assert await rig.ends.wait_for("g1") == "Job later finished: condition Complete"
    assert rig.calls.count("watch") == 1


async def test_follows_before_the_list_completes_are_resolved_by_it(rig: Rig, admin: Kube) -> None:
    names = [f"job-{i}" for i in range(7)]
    for name in names:
        await admin.create(JOBS, job(name))
    await finish(admin, "job-5")
    follower = TaskFollower(rig.follower.kube, rig.ends, page_size=2)
    try:
        follower.start()
        for i, name in enumerate(names):
            follower.follow(grant(f"g{i}", name))
        follower.follow(grant("ghost", "ghost"))
        assert await rig.ends.wait_for("g5") == "Job job-5 finished: condition Complete"
        assert await rig.ends.wait_for("ghost") == "task Job default/ghost was deleted"
        await until(lambda: rig.calls.count("watch") == 1, "the watch")
        assert sorted(uid for uid, _ in rig.ends.got) == ["g5", "ghost"]
        pages = [c for c in rig.calls.seen if c.verb == "list"]
        assert len(pages) == 4, "one list, in pages of two"
        assert [bool(c.query.get("continue")) for c in pages] == [False, True, True, True]
        assert rig.calls.count("get") == 0
    finally:
        await follower.stop()


# --- the watch comes back -----------------------------------------------------------------------


async def test_the_watch_is_opened_again_when_the_server_closes_it(
    rig: Rig, admin: Kube, sim: SimServer
) -> None:
    await admin.create(JOBS, job("build"))
    rig.follower.follow(grant("g1", "build"))
    rig.follower.start()
    await watching(rig)
    await until(lambda: bool(sim.store._watchers), "the server to hold the watch")
    sim.store.close_watchers()
    await watching(rig, 2)
    await finish(admin, "build")
    assert await rig.ends.wait_for("g1") == "Job build finished: condition Complete"
    assert rig.calls.count("list") == 1, "the resourceVersion still held: no new list"


@pytest.mark.parametrize("sim", [3600.0], indirect=True)  # no bookmarks: the version stays old
async def test_an_expired_resource_version_lists_again(rig: Rig, admin: Kube, sim: SimServer) -> None:
    await admin.create(JOBS, job("build"))
    rig.follower.follow(grant("g1", "build"))
    rig.follower.start()
    await watching(rig)
    await until(lambda: bool(sim.store._watchers), "the server to hold the watch")
    await admin.create(SECRETS, {"metadata": {"name": "later", "namespace": "default"}})
    sim.store._compacted_rv = sim.store.resource_version  # as an etcd compaction would
    sim.store.close_watchers()
    await until(lambda: rig.calls.count("list") == 2, "a second list after 410 Gone")
    await watching(rig, 3)  # the one refused, then the one from the new list
    await finish(admin, "build")
    assert await rig.ends.wait_for("g1") == "Job build finished: condition Complete"


# --- errors ---------------------------------------------------------------------------------------


async def test_a_forbidden_list_is_retried_until_allowed(
    sim: SimServer, calls: Calls, admin: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zsp_operator.engine.taskfollow")
    await admin.create(JOBS, job("build"))
    await finish(admin, "build")
    async with _rig(sim, calls, []) as rig:
        rig.follower.follow(grant("g1", "build"))
        rig.follower.start()
        await until(lambda: calls.count("list") >= 2, "the refused list to be tried again")
        assert rig.ends.got == []
        assert any("403 Forbidden" in r.getMessage() for r in caplog.records), "said why"
        rule = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch"]}
        await admin.create(CLUSTER_ROLES, {"metadata": {"name": "jobs-reader"}, "rules": [rule]})
        subject = {"kind": "User", "name": FOLLOWER, "apiGroup": "rbac.authorization.k8s.io"}
        role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "jobs-reader"}
        await admin.create(
            CLUSTER_ROLE_BINDINGS,
            {"metadata": {"name": "jobs-reader"}, "subjects": [subject], "roleRef": role_ref},
        )
        assert await rig.ends.wait_for("g1") == "Job build finished: condition Complete"
        assert calls.count("discovery", "/apis/batch/v1") == 1


async def test_an_unknown_kind_is_retried_and_harms_no_other_kind(rig: Rig, admin: Kube) -> None:
    widget = grant("w1", "thing").model_copy(deep=True)
    assert widget.spec.task_ref is not None
    widget.spec.task_ref.api_version = "example.com/v1"
    widget.spec.task_ref.kind = "Widget"
    await admin.create(JOBS, job("build"))
    rig.follower.follow(widget)
    rig.follower.follow(grant("g1", "build"))
    rig.follower.start()
    await until(lambda: rig.calls.count("discovery", "/apis/example.com/v1") >= 2, "discovery to be retried")
    await watching(rig)
    await finish(admin, "build")
    assert await rig.ends.wait_for("g1") == "Job build finished: condition Complete"
    assert rig.ends.of("w1") == []
    rig.follower.unfollow("w1")
    assert rig.follower.watches == []


async def test_a_failing_callback_is_logged_and_the_others_still_run(rig: Rig, admin: Kube) -> None:
    async def failing(grant_uid: str, sentence: str) -> None:
        await rig.ends(grant_uid, sentence)
        if grant_uid == "g1":
            raise RuntimeError("revocation blew up")

    rig.follower.on_end = failing
    await admin.create(JOBS, job("build"))
    await admin.create(JOBS, job("deploy"))
    rig.follower.follow(grant("g1", "build"))
    rig.follower.follow(grant("g2", "deploy"))
    rig.follower.start()
    await watching(rig)
    await finish(admin, "build")
    await rig.ends.wait_for("g1")
    await finish(admin, "deploy")
    await rig.ends.wait_for("g2")


# --- namespaces -------------------------------------------------------------------------------


async def test_limited_to_namespaces_one_watch_per_namespace(
    sim: SimServer, calls: Calls, admin: Kube
) -> None:
    await admin.create(JOBS, job("a", "default"))
    await admin.create(JOBS, job("b", "default"))
    await admin.create(JOBS, job("c", "kube-public"))
    async with _rig(sim, calls, ["system:masters"], namespaces=["default", "kube-public"]) as rig:
        rig.follower.follow(grant("ga", "a"))
        rig.follower.follow(grant("gb", "b"))
        rig.follower.follow(grant("gc", "c", namespace="kube-public"))
        rig.follower.start()
        await watching(rig, 1, "default")
        await watching(rig, 1, "kube-public")
        assert sorted(rig.follower.watches, key=str) == [
            ("batch/v1", "Job", "default"),
            ("batch/v1", "Job", "kube-public"),
        ]
        await finish(admin, "c", "kube-public")
        assert await rig.ends.wait_for("gc") == "Job c finished: condition Complete"
        assert rig.follower.watches == [("batch/v1", "Job", "default")]
        await finish(admin, "a")
        assert await rig.ends.wait_for("ga") == "Job a finished: condition Complete"
        assert calls.count("watch") == 2
        assert calls.count("list", namespace="default") == calls.count("list", namespace="kube-public") == 1
        assert calls.count("list", namespace="") == 0, "nothing cluster-wide"
        assert calls.count("discovery", "/apis/batch/v1") == 1


# --- tasks created after their grant ----------------------------------------------------------


async def test_a_grant_awaiting_its_task_waits_for_it_to_appear_then_follows_it(
    rig: Rig, admin: Kube
) -> None:
    rig.follower.follow(grant("early", "not-yet"), await_creation=True)
    rig.follower.follow(grant("ghost", "ghost"))  # no await: its absence ends it
    rig.follower.start()
    # The one list showed both absent: the ghost's end says the awaiting grant was judged too.
    assert await rig.ends.wait_for("ghost") == "task Job default/ghost was deleted"
    assert rig.ends.of("early") == []
    assert rig.follower.following("early")
    await admin.create(JOBS, job("not-yet"))
    await until(lambda: not rig.follower.awaiting("early"), "the Job seen")
    await finish(admin, "not-yet")
    assert await rig.ends.wait_for("early") == "Job not-yet finished: condition Complete"


async def test_once_seen_an_awaited_task_that_disappears_ends_its_grant(rig: Rig, admin: Kube) -> None:
    rig.follower.follow(grant("keep", "keep"), await_creation=True)  # keeps the watch alive
    rig.follower.follow(grant("early", "later"), await_creation=True)
    rig.follower.start()
    await watching(rig)
    await admin.create(JOBS, job("later"))
    await until(lambda: not rig.follower.awaiting("early"), "the Job seen")
    await admin.delete(JOBS, "later", "default")
    assert await rig.ends.wait_for("early") == "task Job default/later was deleted"
    assert rig.ends.of("keep") == []


async def test_an_awaiting_grant_waits_past_a_remembered_deletion_not_past_a_finish(
    rig: Rig, admin: Kube
) -> None:
    await admin.create(JOBS, job("run-1"))
    await admin.create(JOBS, job("done"))
    await finish(admin, "done")
    rig.follower.follow(grant("old", "run-1"))
    rig.follower.follow(grant("keep", "keep"), await_creation=True)
    rig.follower.start()
    await watching(rig)
    await admin.delete(JOBS, "run-1", "default")
    assert await rig.ends.wait_for("old") == "task Job default/run-1 was deleted"
    # The next sync's request names a Job of the same name that is not there yet: it waits.
    rig.follower.follow(grant("next", "run-1"), await_creation=True)
    rig.follower.follow(grant("late", "done"), await_creation=True)
    assert await rig.ends.wait_for("late") == "Job done finished: condition Complete"
    assert rig.ends.of("next") == []
    await admin.create(JOBS, job("run-1"))
    await until(lambda: not rig.follower.awaiting("next"), "the new Job seen")
    await finish(admin, "run-1")
    assert await rig.ends.wait_for("next") == "Job run-1 finished: condition Complete"
