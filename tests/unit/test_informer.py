"""Informers hand every object of a kind to a handler: listed, then as it changes.

Against the in-memory API server: a listing comes a page at a time, each object as a listing
event, then the watch's events; one object's events arrive in order and one at a time while
other objects' go on; the listing waits while more than a page of objects are still being
handled; a deletion missed while the watch was down is still heard after the listing again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from test_taskfollow import Calls, record_calls, until

from zsp_operator.engine.informer import Informer
from zsp_operator.kube import Body, Kube
from zsp_operator.kube.resources import ROLES
from zsp_operator.sim import SimServer

WATCHER = "informer"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return record_calls(monkeypatch)


@pytest.fixture
async def sim(calls: Calls) -> AsyncIterator[SimServer]:
    async with SimServer(bookmark_interval=3600.0) as server:
        yield server


@pytest.fixture
async def admin(sim: SimServer) -> AsyncIterator[Kube]:
    async with await Kube.from_dict(sim.kubeconfig()) as kube:
        yield kube


@pytest.fixture
async def kube(sim: SimServer, calls: Calls) -> AsyncIterator[Kube]:
    calls.token = sim.user_token(WATCHER, ["system:masters"])
    async with await Kube.from_dict(sim.kubeconfig(calls.token)) as client:
        yield client


class Heard:
    """What the handler was given, as (type, name, uid); an event per name can be held back."""

    def __init__(self) -> None:
        self.got: list[tuple[str | None, str, str]] = []
        self.held: dict[str, asyncio.Event] = {}
        self.running: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}

    async def __call__(self, event_type: str | None, body: Body) -> None:
        meta = body["metadata"]
        name = meta["name"]
        self.running[name] = self.running.get(name, 0) + 1
        self.most_at_once[name] = max(self.most_at_once.get(name, 0), self.running[name])
        try:
            gate = self.held.get(name)
            if gate is not None:
                await gate.wait()
            self.got.append((event_type, name, meta.get("uid", "")))
        finally:
            self.running[name] -= 1

    def of(self, name: str) -> list[str | None]:
        return [event_type for event_type, got, _ in self.got if got == name]


def role(name: str, value: str = "1") -> Body:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"v": value}}, "rules": []}


def relabel(value: str) -> Body:
    return {"metadata": {"labels": {"v": value}}}


async def started(informer: Informer) -> Informer:
    informer.start()
    await asyncio.wait_for(informer.listed.wait(), 10)
    return informer


async def test_objects_are_listed_a_page_at_a_time_then_watched(
    admin: Kube, kube: Kube, calls: Calls
) -> None:
    for i in range(5):
        await admin.create(ROLES, role(f"r{i}"))
    heard = Heard()
    informer = await started(Informer(kube, ROLES, heard, namespace="default", page_size=2))
    try:
        await informer.idle()
        assert sorted(name for _, name, _ in heard.got) == [f"r{i}" for i in range(5)]
        assert {event_type for event_type, _, _ in heard.got} == {None}
        assert calls.count("list", "roles") == 3, "five objects two a page"
        await until(lambda: calls.count("watch", "roles") == 1, "the watch")
        await admin.create(ROLES, role("new"))
        await admin.patch(ROLES, "r0", relabel("2"), "default")
        await admin.delete(ROLES, "r1", "default")
        await until(lambda: len(heard.got) == 8, "three watch events")
        assert heard.got[5:] == [
            ("ADDED", "new", heard.got[5][2]),
            ("MODIFIED", "r0", heard.got[6][2]),
            ("DELETED", "r1", heard.got[7][2]),
        ]
    finally:
        await informer.stop()


async def test_one_objects_events_come_in_order_one_at_a_time_while_others_go_on(
    admin: Kube, kube: Kube
) -> None:
    await admin.create(ROLES, role("slow"))
    heard = Heard()
    heard.held["slow"] = asyncio.Event()
    informer = await started(Informer(kube, ROLES, heard, namespace="default"))
    try:
        for value in ("2", "3"):
            await admin.patch(ROLES, "slow", relabel(value), "default")
        await admin.create(ROLES, role("quick"))
        await until(lambda: heard.of("quick") == ["ADDED"], "the other object's event, meanwhile")
        assert heard.of("slow") == [], "held back: its later events wait behind it"
        heard.held["slow"].set()
        await until(lambda: len(heard.of("slow")) == 3, "the held object's three events")
        assert heard.of("slow") == [None, "MODIFIED", "MODIFIED"]
        assert heard.most_at_once["slow"] == 1
    finally:
        await informer.stop()


async def test_the_listing_waits_while_more_than_a_page_of_objects_are_being_handled(
    admin: Kube, kube: Kube, calls: Calls
) -> None:
    names = [f"r{i}" for i in range(6)]
    for name in names:
        await admin.create(ROLES, role(name))
    heard = Heard()
    gate = asyncio.Event()
    for name in names:
        heard.held[name] = gate
    informer = Informer(kube, ROLES, heard, namespace="default", page_size=2)
    informer.start()
    try:
        await until(lambda: informer.pending == 4, "two pages handed on")
        await asyncio.sleep(0.3)
        assert calls.count("list", "roles") == 2, "the third page waits for the handlers"
        assert not informer.listed.is_set()
        gate.set()
        await asyncio.wait_for(informer.listed.wait(), 10)
        assert calls.count("list", "roles") == 3
    finally:
        await informer.stop()


async def test_a_deletion_missed_while_the_watch_was_down_is_heard_after_the_new_listing(
    admin: Kube, kube: Kube, sim: SimServer, calls: Calls
) -> None:
    for name in ("kept", "deleted", "replaced"):
        await admin.create(ROLES, role(name))
    heard = Heard()
    informer = await started(Informer(kube, ROLES, heard, namespace="default"))
    try:
        await informer.idle()
        old_uid = next(uid for _, name, uid in heard.got if name == "replaced")
        await until(lambda: bool(sim.store._watchers), "the server to hold the watch")
        # The connection is lost: what happens now never reaches the informer's watch.
        sim.store.close_watchers()
        sim.store._watchers.clear()
        missed = Informer._event
        informer._event = lambda *_: None  # type: ignore[method-assign]
        await admin.delete(ROLES, "deleted", "default")
        await admin.delete(ROLES, "replaced", "default")
        await admin.create(ROLES, role("replaced", "2"))
        sim.store._compacted_rv = sim.store.resource_version  # the old version is gone: 410
        informer._event = missed.__get__(informer)  # type: ignore[method-assign]
        sim.store.close_watchers()
        await until(lambda: calls.count("list", "roles") == 2, "a second listing after 410 Gone")
        await until(lambda: len(heard.got) == 7, "the second listing's events")
        second = heard.got[3:]
        assert ("DELETED", "deleted", next(uid for _, n, uid in heard.got if n == "deleted")) in second
        assert ("DELETED", "replaced", old_uid) in second
        new_uid = next(uid for t, n, uid in second if n == "replaced" and t is None)
        assert new_uid != old_uid
        assert [t for t, n, _ in second if n == "replaced"] == ["DELETED", None], "the old one goes first"
        assert [t for t, n, _ in second if n == "kept"] == [None]
    finally:
        await informer.stop()
