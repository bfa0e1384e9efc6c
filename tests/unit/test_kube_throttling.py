"""The Kubernetes client sends a throttled call again after the server's Retry-After.

A 429 means the API server did not process the request (API Priority and Fairness, or a
custom resource whose storage is still initializing right after its CRD was Established),
so any verb may be sent again. Other errors are not retried here: callers decide. Without a
Retry-After the client waits by the retry policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from zsp_operator.core.constants import API_VERSION
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import ACCESS_REQUESTS
from zsp_operator.kube.retry import step

STORAGE_INITIALIZING = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "storage is (re)initializing",
    "reason": "TooManyRequests",
    "code": 429,
}


class Server:
    """Answers the first `refusals` calls with `status`, then 200; counts what it was sent."""

    def __init__(self, refusals: int, status: int = 429, retry_after: str | None = "0") -> None:
        self.refusals = refusals
        self.status = status
        self.retry_after = retry_after
        self.methods: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.methods.append(request.method)
        if len(self.methods) <= self.refusals:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            body = {**STORAGE_INITIALIZING, "code": self.status}
            return web.json_response(body, status=self.status, headers=headers)
        return web.json_response({"apiVersion": API_VERSION, "kind": "AccessRequest", "metadata": {"name": "r"}})


Serve = Callable[[Server], Awaitable[Kube]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(server: Server) -> Kube:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return await Kube.from_dict(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_throttled_call_is_sent_again_until_it_is_served(serve: Serve, method: str) -> None:
    server = Server(refusals=3)
    async with await serve(server) as kube:
        if method == "GET":
            body = await kube.get(ACCESS_REQUESTS, "r", "ns")
        else:
            body = await kube.create(ACCESS_REQUESTS, {"metadata": {"name": "r", "namespace": "ns"}})
    assert body is not None
    assert body["metadata"]["name"] == "r"
    assert server.methods == [method] * 4


async def test_a_call_throttled_for_too_long_fails_with_the_servers_reason(serve: Serve) -> None:
    server = Server(refusals=1000)
    async with await serve(server) as kube:
        with pytest.raises(KubeError) as raised:
            await kube.get(ACCESS_REQUESTS, "r", "ns")
    assert (raised.value.status, raised.value.reason) == (429, "TooManyRequests")
    assert "storage is (re)initializing" in raised.value.message
    assert len(server.methods) == 11  # the first try and ten more


@pytest.mark.parametrize(("status", "retry_after"), [(500, "0"), (503, "0"), (409, None)])
async def test_other_errors_are_not_sent_again(serve: Serve, status: int, retry_after: str | None) -> None:
    server = Server(refusals=1, status=status, retry_after=retry_after)
    async with await serve(server) as kube:
        with pytest.raises(KubeError) as raised:
            await kube.get(ACCESS_REQUESTS, "r", "ns")
    assert raised.value.status == status
    assert server.methods == ["GET"]


async def test_the_wait_follows_retry_after_within_bounds(serve: Serve) -> None:
    server = Server(refusals=1, retry_after="0.3")
    async with await serve(server) as kube:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await kube.get(ACCESS_REQUESTS, "r", "ns")
        waited = loop.time() - started
    assert waited >= 0.3


async def test_without_retry_after_the_wait_follows_the_retry_policy(serve: Serve) -> None:
    server = Server(refusals=2, retry_after=None)
    async with await serve(server) as kube:
        loop = asyncio.get_running_loop()
        started = loop.time()
        body = await kube.get(ACCESS_REQUESTS, "r", "ns")
        waited = loop.time() - started
    assert body is not None
    assert server.methods == ["GET"] * 3
    assert waited < step(0) + step(1) + 1.0, "two short backoffs, not a second each"
