"""`zsp demo --kubeconfig FILE` plays the same story on a given cluster (every tier)."""

from __future__ import annotations

import asyncio
import io

from tiers import Cluster
from zsp_operator.tools.demo import run_demo


async def test_the_demo_plays_on_a_cluster_from_its_kubeconfig(cluster: Cluster) -> None:
    out = io.StringIO()
    # run_demo owns its event loop (it is a CLI command): give it a thread of its own.
    status = await asyncio.to_thread(run_demo, str(cluster.kubeconfig_path), out)
    assert status == 0, out.getvalue()
    text = out.getvalue()
    assert f"from {cluster.kubeconfig_path}" in text
    assert "steps behaved." in text
    assert "FAILED" not in text
