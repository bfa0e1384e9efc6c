"""`zsp run` as a user starts it: a separate process, flags only, against an API server.

Covered: the liveness endpoint answers; the admission webhooks are registered (`--dev`);
a request filed by the pipeline is issued; /metrics counts it; SIGTERM stops the operator
gracefully (exit 0) and no dev webhook is left calling it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from zsp_operator.core.lease import LeaseRecord
from zsp_operator.kube import Kube
from zsp_operator.kube.identity import request_token, wait_for_webhooks
from zsp_operator.kube.resources import ACCESS_REQUESTS, BY_KIND, LEASES, MUTATING_WEBHOOKS
from zsp_operator.sim import serve_in_thread
from zsp_operator.tools.crdgen import build_crds

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def operator_process(tmp_path: Path) -> Iterator[tuple[object, subprocess.Popen[str], int, int]]:
    with serve_in_thread(crds=build_crds()) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "admin.kubeconfig")
        health, metrics = free_port(), free_port()
        process = _start(kubeconfig, health, metrics=metrics)
        try:
            yield sim, process, health, metrics
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def test_zsp_run_serves_issues_counts_and_stops_gracefully(
    operator_process: tuple[object, subprocess.Popen[str], int, int],
) -> None:
    sim, process, health, metrics = operator_process
    deadline = time.monotonic() + 30
    while get(f"http://127.0.0.1:{health}/healthz")[0] != 200:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "no liveness answer within 30s"
        time.sleep(0.1)

    asyncio.run(_file_and_wait(sim.kubeconfig(), sim.kubeconfig))  # type: ignore[attr-defined]

    status, text = get(f"http://127.0.0.1:{metrics}/metrics")
    assert status == 200
    assert 'zsp_requests_total{decision="allowed",policy="ci-deployers"} 1.0' in text
    assert 'zsp_active_grants{mode="bind",policy="ci-deployers"} 1.0' in text

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, "a graceful stop exits 0"
    remaining = asyncio.run(_webhook_configurations(sim.kubeconfig()))  # type: ignore[attr-defined]
    assert remaining == [], "no webhook is left calling the stopped operator"


async def _file_and_wait(admin_config: dict[str, object], for_token: object) -> None:
    async with await Kube.from_dict(admin_config) as admin:
        for name in ("ci-pipeline/setup.yaml", "ci-pipeline/policy.yaml"):
            for doc in yaml.safe_load_all((EXAMPLES / name).read_text()):
                if doc:
                    await admin.create(BY_KIND[doc["kind"]], doc)
        await wait_for_webhooks(admin)
        token = await request_token(admin, "ci", "pipeline")
        async with await Kube.from_dict(for_token(token)) as pipeline:  # type: ignore[operator]
            request = yaml.safe_load((EXAMPLES / "ci-pipeline" / "request.yaml").read_text())
            del request["spec"]["taskRef"]  # no deploy Job here: the grant lives until its TTL
            await pipeline.create(ACCESS_REQUESTS, request)
        deadline = time.monotonic() + 20
        while True:
            body = await admin.get(ACCESS_REQUESTS, "deploy-4711", "payments-staging") or {}
            if (body.get("status") or {}).get("phase") == "Active":
                return
            assert time.monotonic() < deadline, f"not Active: {body.get('status')}"
            await asyncio.sleep(0.1)


async def _webhook_configurations(admin_config: dict[str, object]) -> list[str]:
    """Webhooks still registered (kopf keeps the configuration object, emptied)."""
    async with await Kube.from_dict(admin_config) as admin:
        return [
            hook["name"] for obj in await admin.list(MUTATING_WEBHOOKS) for hook in obj.get("webhooks") or []
        ]


def test_zsp_run_rejects_bad_settings_with_the_field_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zsp_operator", "run", "--token-seconds", "60"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": "/nonexistent"},
        check=False,
    )
    assert result.returncode == 2
    assert "token_seconds" in result.stdout or "token-seconds" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# --- leader election, as the Deployment runs it --------------------------------------------

LEASE_FLAGS = ["--leader-elect", "--lease-namespace", "default", "--lease-duration", "3s",
               "--renew-deadline", "2s", "--retry-period", "1s"]  # fmt: skip


async def _lease(admin_config: dict[str, object]) -> LeaseRecord:
    async with await Kube.from_dict(admin_config) as admin:
        body = await admin.get(LEASES, "zsp-operator", "default")
        return LeaseRecord.from_spec((body or {}).get("spec"))


async def _hand_lease_to(admin_config: dict[str, object], holder: str) -> None:
    async with await Kube.from_dict(admin_config) as admin:
        now = datetime.now(UTC)
        spec = LeaseRecord(holder, 30, now, now, 1).to_spec()
        body = await admin.get(LEASES, "zsp-operator", "default")
        if body is None:
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec}
            await admin.create(
                LEASES, {**lease, "metadata": {"name": "zsp-operator", "namespace": "default"}}
            )
        else:
            await admin.replace(LEASES, {**body, "spec": spec})


def _start(kubeconfig: Path, health: int, *extra: str, metrics: int = 0) -> subprocess.Popen[str]:
    """`zsp run --dev` as a separate process, its output kept for the failure message."""
    command = [
        sys.executable, "-m", "zsp_operator", "run", "--kubeconfig", str(kubeconfig), "--dev",
        "--health-port", str(health), "--metrics-port", str(metrics), "--webhook-port", str(free_port()), *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _until(check: Callable[[], bool], process: subprocess.Popen[str], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert process.poll() is None, (
            f"exited before {what}: {process.stdout.read() if process.stdout else ''}"
        )
        assert time.monotonic() < deadline, f"not {what} within {within}s"
        time.sleep(0.1)


def test_a_replica_stands_by_leads_releases_and_steps_down(tmp_path: Path) -> None:
    with serve_in_thread(crds=build_crds()) as sim:
        admin = sim.kubeconfig()
        kubeconfig = sim.write_kubeconfig(tmp_path / "admin.kubeconfig")
        health = free_port()

        # Someone else leads: this replica stands by, alive, and leaves the Lease alone.
        asyncio.run(_hand_lease_to(admin, "other-replica"))
        standby = _start(kubeconfig, health, *LEASE_FLAGS)
        try:
            _until(lambda: get(f"http://127.0.0.1:{health}/healthz")[0] == 200, standby, "alive")
            standby.send_signal(signal.SIGTERM)
            assert standby.wait(timeout=30) == 0, "a standby stops cleanly"
        finally:
            if standby.poll() is None:
                standby.kill()
        assert asyncio.run(_lease(admin)).holder == "other-replica"

        # The Lease is free: this replica leads, and on SIGTERM lets go of it.
        asyncio.run(_hand_lease_to(admin, ""))
        leader = _start(kubeconfig, health, *LEASE_FLAGS)
        try:
            _until(lambda: asyncio.run(_lease(admin)).holder is not None, leader, "leading")
            assert asyncio.run(_lease(admin)).holder.startswith(socket.gethostname())  # type: ignore[union-attr]
            leader.send_signal(signal.SIGTERM)
            assert leader.wait(timeout=30) == 0
        finally:
            if leader.poll() is None:
                leader.kill()
        assert asyncio.run(_lease(admin)).holder is None, "released on the way out"

        # The Lease is taken from a leader: it stops and exits 1, to restart as a standby.
        leader = _start(kubeconfig, health, *LEASE_FLAGS)
        try:
            _until(lambda: asyncio.run(_lease(admin)).holder is not None, leader, "leading")
            asyncio.run(_hand_lease_to(admin, "intruder"))
            assert leader.wait(timeout=30) == 1
            output = leader.stdout.read() if leader.stdout else ""
            assert "stepped down as leader" in output
            assert "intruder" in output
        finally:
            if leader.poll() is None:
                leader.kill()
