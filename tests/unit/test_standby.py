"""A standby replica: alive on /healthz, runs nothing, and stops when told to."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp

from zsp_operator.config import Settings
from zsp_operator.leader import LeaderElector
from zsp_operator.runner import run_operator


class NeverElected(LeaderElector):
    """Another replica holds the Lease for the whole test."""

    def __init__(self) -> None:  # no API server needed: acquire() never returns
        self.tries = 0

    async def acquire(self) -> None:
        while True:
            self.tries += 1
            await asyncio.sleep(0.01)


class FakeController:
    """Fails the test if anything in the operator is touched before it leads."""

    def __init__(self) -> None:
        self.observer = type("Observer", (), {"metrics": None})()

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a standby used the controller's {name}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_standby_answers_healthz_runs_nothing_and_stops_on_request() -> None:
    port = free_port()
    settings = Settings(leader_elect=True, health_port=port, metrics_port=0)
    stop = asyncio.Event()
    elector = NeverElected()
    running = asyncio.create_task(
        run_operator(settings, controller=FakeController(), stop_flag=stop, elector=elector)  # type: ignore[arg-type]
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    assert answer.status == 200
                    assert await answer.text() == "standing by\n"
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)
        else:
            raise AssertionError("/healthz never answered")
    assert elector.tries > 0
    assert not running.done()

    stop.set()
    await asyncio.wait_for(running, timeout=5)
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz"):
                raise AssertionError("the standby's health server outlived it")
        except aiohttp.ClientConnectionError:
            pass
