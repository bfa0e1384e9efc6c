"""Fixtures of the stories: one `cluster` per tier, and fresh namespaces per test.

- `cluster` (session, sync): parametrized over `sim` and `envtest`; the sim runs in its own
  thread and loop, envtest is subprocesses, so nothing here binds to a test's event loop.
  The envtest tier skips, with the reason, when KUBEBUILDER_ASSETS is unset or incomplete.
  The CRDs from crds/ are installed on both tiers before the first test.
- `make_namespace` (function, async): `await make_namespace(hint=None, labels=None)` creates
  a uniquely named namespace and returns its name; all are deleted after the test.
- `namespace`: one such namespace.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from tiers import TIER_PARAMS, Cluster, call_json, tier_cluster, unique_name

MakeNamespace = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session", params=TIER_PARAMS)
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with tier_cluster(request.param) as found:
        yield found


@pytest.fixture
async def make_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> AsyncIterator[MakeNamespace]:
    created: list[str] = []
    async with cluster.api_client() as api:
        core = client.CoreV1Api(api)

        async def make(hint: str | None = None, labels: dict[str, str] | None = None) -> str:
            name = unique_name(hint or request.node.name)
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            if labels:
                body["metadata"]["labels"] = dict(labels)
            await call_json(core.create_namespace(body, _preload_content=False))
            created.append(name)
            return name

        yield make

        for name in reversed(created):
            # Without a namespace controller (envtest without kube-controller-manager) the
            # namespace stays Terminating; its unique name keeps it out of later tests' way.
            with contextlib.suppress(ApiException):
                await call_json(core.delete_namespace(name, _preload_content=False))


@pytest.fixture
async def namespace(make_namespace: MakeNamespace) -> str:
    return await make_namespace()
