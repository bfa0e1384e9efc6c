"""Fixtures for the in-memory API server tests: a fresh server per test, clients for it.

The helpers live in `simkit.py` beside this file; its folder is put on sys.path here so
that they import under any pytest import mode.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import aiohttp  # noqa: E402
import pytest  # noqa: E402
from kubernetes_asyncio import client  # noqa: E402
from simkit import GADGET_CRD, Raw, configuration  # noqa: E402 - after the sys.path set-up

from zsp_operator.sim import SimServer  # noqa: E402


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(crds=[GADGET_CRD], bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
async def api(sim: SimServer) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(configuration(sim)) as api_client:
        yield api_client


@pytest.fixture
async def raw(sim: SimServer) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(sim, session)
