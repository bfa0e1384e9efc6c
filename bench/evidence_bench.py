"""What evidence of use costs the operator: reading the API server's EventLists and attributing them.

One batch is what kube-apiserver sends by default: 400 events at Metadata level. The mix:
half from people and control-plane components (dropped on reading), a quarter from
ServiceAccounts that hold no grant (dropped at the first lookup), a quarter from grantees
(an ephemeral grant's token, or a bound grantee inside its window), with the view holding
G live grants. Timed: `read_event_list` on the raw bytes plus `UsageTracker.receive`, per
batch and per event, as the audit webhook does for each POST.

    python bench/evidence_bench.py          # G = 0, 1 000, 10 000
    python bench/evidence_bench.py --quick
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from machine import describe

from zsp_operator.core.models import TaskGrant, format_time
from zsp_operator.core.usage import read_event_list
from zsp_operator.engine.usage import UsageTracker
from zsp_operator.engine.view import ClusterView
from zsp_operator.observe.auditlog import AuditLog
from zsp_operator.observe.metrics import Metrics
from zsp_operator.observe.observer import Observer

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BATCH = 400
RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]


def grant(i: int) -> TaskGrant:
    ephemeral = i % 2 == 0
    status: dict[str, Any] = {"issuedAt": format_time(NOW)}
    if ephemeral:
        status["tokenCredentialId"] = f"jti-{i}"
    return TaskGrant.model_validate(
        {
            "metadata": {"name": f"g-{i}", "namespace": f"ns-{i % 100}", "uid": f"uid-{i}"},
            "spec": {
                "request": {"name": f"g-{i}", "uid": f"req-{i}"},
                "policy": "readers",
                "mode": "ephemeral" if ephemeral else "bind",
                "identity": {"namespace": f"ns-{i % 100}", "name": f"sa-{i}"},
                "rules": RULES,
                "expiresAt": format_time(NOW + timedelta(hours=1)),
            },
            "status": status,
        }
    )


def event(n: int, username: str, jti: str | None, namespace: str) -> dict[str, Any]:
    user: dict[str, Any] = {"username": username, "groups": ["system:authenticated"]}
    if jti:
        user["extra"] = {"authentication.kubernetes.io/credential-id": [f"JTI={jti}"]}
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"audit-{n}",
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/{namespace}/pods",
        "verb": "list",
        "user": user,
        "sourceIPs": ["10.0.0.1"],
        "userAgent": "kubectl/v1.36.0",
        "objectRef": {"resource": "pods", "namespace": namespace, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": format_time(NOW + timedelta(seconds=5)),
        "stageTimestamp": format_time(NOW + timedelta(seconds=5, milliseconds=3)),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC"},
    }


def batch(grants: int, seed: int) -> bytes:
    items = []
    for n in range(BATCH):
        kind = n % 4
        if kind in (0, 1):
            items.append(event(n, "system:kube-scheduler" if kind else "alice", None, "default"))
        elif kind == 2 or grants == 0:
            items.append(event(n, f"system:serviceaccount:apps:worker-{n}", f"other-{n}", "apps"))
        else:
            i = (seed * BATCH + n) % grants
            jti = f"jti-{i}" if i % 2 == 0 else None
            items.append(event(n, f"system:serviceaccount:ns-{i % 100}:sa-{i}", jti, f"ns-{i % 100}"))
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).encode()


def run(grants: int, batches: int) -> dict[str, float]:
    view = ClusterView()
    for i in range(grants):
        view.put_grant(grant(i))
    observer = Observer(None, AuditLog(lambda: NOW, io.StringIO()), Metrics(), lambda: NOW)
    tracker = UsageTracker(view, None, observer, lambda: NOW, timedelta(seconds=60))  # type: ignore[arg-type]
    bodies = [batch(grants, seed) for seed in range(batches)]
    times = []
    for body in bodies:
        started = time.perf_counter()
        tracker.receive(read_event_list(body))
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "grants": grants,
        "bytes": statistics.mean(len(b) for b in bodies),
        "median_ms": median * 1000,
        "p99_ms": sorted(times)[int(len(times) * 0.99) - 1] * 1000,
        "per_event_us": median / BATCH * 1e6,
        "events_per_s": BATCH / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few batches, a smoke test")
    args = parser.parse_args()
    batches = 20 if args.quick else 200
    print(describe())
    print(f"- batches of {BATCH} events, {batches} per row\n")
    print("| live grants | batch size | median per batch | p99 per batch | per event | events/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for grants in (0, 1_000, 10_000):
        r = run(grants, batches)
        print(
            f"| {grants:,} | {r['bytes'] / 1024:.0f} KiB | {r['median_ms']:.2f} ms | {r['p99_ms']:.2f} ms "
            f"| {r['per_event_us']:.1f} µs | {r['events_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
