"""Fixtures for the in-memory API server tests: a fresh server per test, clients for it.

The helpers live in `simkit.py` beside this file, importable through pytest's `pythonpath`
setting (pyproject.toml), as the helpers in tests/ are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from kubernetes_asyncio import client
from simkit import GADGET_CRD, Raw, configuration

from zsp_operator.sim import SimServer


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
