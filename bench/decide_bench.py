"""Latency of the pure policy decision, `zsp_operator.core.policy.decide`, on realistic inputs.

The world: 1 000 namespaces `app-0000`..`app-0999`, each labelled with one of 100 teams and one
of three environments; P policies (one per team: its pipeline may ask for `deploy` or
`read-only` for that team's deployers or an ephemeral identity, in the team's namespaces, with
per-grantee and environment limits); G TaskGrants spread over the namespaces and policies
(70 % bind mode, 30 % ephemeral, 5 % already expired, 2 % already revoked). The request is the
pipeline of team 0 asking for `deploy` for a deployer that holds nothing, in `app-0000`,
without naming a policy, so every policy is checked in full (what the operator does).

Each case is timed call by call with `time.perf_counter_ns` after a warm-up; the table gives the
median, p99 and mean per call. Inputs are built once, outside the timed loop, as the operator's
view holds them (validated models; the grants in the `GrantIndex` the view keeps).

    python bench/decide_bench.py            # the full table (2-3 minutes on 2 cores)
    python bench/decide_bench.py --quick    # a smoke test, a few seconds
    python bench/decide_bench.py --profile  # also cProfile 10 policies x 10 000 grants
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from machine import describe, load

from zsp_operator.core.grantindex import GrantIndex
from zsp_operator.core.models import AccessPolicy, AccessRequest, PolicyRule, TaskGrant
from zsp_operator.core.policy import Decision, Outcome, decide

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAMESPACES = 1000
TEAMS = 100
ENVIRONMENTS = ("staging", "production", "dev")
CATALOG = {
    "view": [
        PolicyRule.model_validate(
            {"apiGroups": [""], "resources": ["pods", "configmaps", "services"], "verbs": ["get", "list"]}
        ),
        PolicyRule.model_validate(
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]}
        ),
    ]
}


def namespace_of(index: int) -> str:
    return f"app-{index:04d}"


def team_of(namespace_index: int) -> int:
    return namespace_index % TEAMS


def pipeline(team: int) -> str:
    return f"system:serviceaccount:ci:pipeline-{team}"


def namespace_labels() -> dict[str, dict[str, str]]:
    labels = {
        namespace_of(i): {
            "team": f"team-{team_of(i)}",
            "zsp.dev/environment": ENVIRONMENTS[i % len(ENVIRONMENTS)],
            "zsp.dev/enforce": "true",
        }
        for i in range(NAMESPACES)
    }
    labels["ci"] = {}
    return labels


def make_policy(team: int) -> AccessPolicy:
    spec: dict[str, Any] = {
        "requesters": [
            {"kind": "ServiceAccount", "namespace": "ci", "name": f"pipeline-{team}"},
            {"kind": "Group", "name": "platform-oncall"},
        ],
        "grantees": {
            "serviceAccounts": [{"namespace": "ci", "name": f"deployer-{team}-{d}"} for d in range(10)],
            "ephemeral": {"enabled": True, "deliveryNamespaces": ["ci"]},
        },
        "namespaces": {"selector": {"matchLabels": {"team": f"team-{team}"}}},
        "permissions": [
            {
                "name": "deploy",
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "resources": ["deployments"],
                        "verbs": ["get", "list", "patch", "update"],
                    },
                    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
                ],
            },
            {"name": "read-only", "clusterRole": "view"},
        ],
        "defaultTTL": "15m",
        "maxTTL": "1h",
        "approval": {"required": 0, "approvers": [{"kind": "Group", "name": "platform-leads"}]},
        # Per-requester and per-policy limits high enough that 10 000 grants fit under one policy.
        "limits": {
            "activePerGrantee": 1,
            "activePerRequester": 50_000,
            "activePerPolicy": 50_000,
            "exclusiveEnvironments": True,
        },
    }
    return AccessPolicy.model_validate({"metadata": {"name": f"team-{team:03d}"}, "spec": spec})


def make_grants(count: int, policies: int, rng: random.Random) -> list[TaskGrant]:
    grants = []
    for j in range(count):
        ns_index = j % NAMESPACES
        team = team_of(ns_index) % policies
        ephemeral = rng.random() < 0.3
        identity = f"zsp-eph-{j:05d}" if ephemeral else f"deployer-{team}-{1 + j % 9}-{j}"
        roll = rng.random()
        expires = NOW - timedelta(seconds=30) if roll < 0.05 else NOW + timedelta(minutes=rng.randint(1, 60))
        spec: dict[str, Any] = {
            "request": {"name": f"req-{j:05d}", "uid": f"uid-req-{j:05d}"},
            "policy": f"team-{team:03d}",
            "mode": "ephemeral" if ephemeral else "bind",
            "identity": {"namespace": "ci", "name": identity},
            "permission": "deploy",
            "rules": [
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "patch"]}
            ],
            "requester": {"username": pipeline(team), "groups": ["system:serviceaccounts"]},
            "expiresAt": expires.isoformat(),
        }
        status = {"revokedAt": NOW.isoformat()} if 0.05 <= roll < 0.07 else {}
        grants.append(
            TaskGrant.model_validate(
                {
                    "metadata": {
                        "name": f"req-{j:05d}",
                        "namespace": namespace_of(ns_index),
                        "uid": f"uid-grant-{j:05d}",
                    },
                    "spec": spec,
                    "status": status,
                }
            )
        )
    return grants


def make_request(kind: str) -> AccessRequest:
    """`bind` (allowed), `ephemeral` (allowed), `named` (bind, spec.policy set), `denied`."""
    spec: dict[str, Any] = {
        "grantee": {"serviceAccount": {"namespace": "ci", "name": "deployer-0-0"}},
        "permission": "deploy",
        "ttl": "10m",
        "reason": "deploy build 4711 (pipeline run 88)",
    }
    username = pipeline(0)
    if kind == "ephemeral":
        spec["grantee"] = {"ephemeral": {}}
        spec["delivery"] = {"namespace": "ci", "secretName": "bench-kubeconfig"}
    elif kind == "named":
        spec["policy"] = "team-000"
    elif kind == "denied":
        username = "system:serviceaccount:ci:stranger"
    return AccessRequest.model_validate(
        {
            "metadata": {"name": "bench-4711", "namespace": namespace_of(0), "uid": "uid-bench-4711"},
            "spec": spec,
            "status": {"requester": {"username": username, "groups": ["system:serviceaccounts"]}},
        }
    )


@dataclass
class Case:
    policies: int
    grants: int
    request: str = "bind"

    @property
    def label(self) -> str:
        return f"{self.policies:>3} policies, {self.grants:>6} grants, {self.request}"


@dataclass
class Result:
    case: Case
    outcome: Outcome
    samples_ns: list[int]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples_ns)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index] / 1000

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples_ns) / 1000

    @property
    def mean_us(self) -> float:
        return statistics.fmean(self.samples_ns) / 1000


def time_calls(
    call: Callable[[], Decision], *, budget: float, min_calls: int, max_calls: int
) -> tuple[Decision, list[int]]:
    """The first decision and per-call durations: a warm-up, then calls until the time budget
    or max_calls is used up.

    A case whose single call takes longer than a second is timed 3 times, its first call
    included (warming up matters little at that size), and one slower than 50 ms at least 5
    times, so that the whole table stays within a few minutes; the `calls` column says how many.
    """
    clock = time.perf_counter_ns
    start = clock()
    decision = call()
    first = clock() - start
    samples: list[int] = []
    if first > 1_000_000_000:
        warm_up, min_calls, samples = 0, 3, [first]
        max_calls = min_calls
    elif first > 50_000_000:
        warm_up, min_calls = 1, min(min_calls, 5)
    else:
        warm_up = max(3, min_calls // 10)
    for _ in range(warm_up):
        call()
    gc.collect()
    stop_at = clock() + int(budget * 1e9)
    while len(samples) < max_calls and (len(samples) < min_calls or clock() < stop_at):
        start = clock()
        call()
        samples.append(clock() - start)
    return decision, samples


def build(
    case: Case, seed: int = 4711, adjust: Callable[[list[AccessPolicy], AccessRequest], None] | None = None
) -> Callable[[], Decision]:
    """One decision of `case`, ready to call; `adjust` may change the policies and the request first."""
    rng = random.Random(seed)
    policies = [make_policy(team) for team in range(case.policies)]
    grants = make_grants(case.grants, case.policies, rng)
    labels = namespace_labels()
    request = make_request(case.request)
    if adjust is not None:
        adjust(policies, request)
    index = GrantIndex()
    for grant in grants:
        index.put(grant.metadata.uid, grant)

    def call() -> Decision:
        return decide(request, policies, index, labels, NOW, catalog=CATALOG)

    return call


def run(cases: Sequence[Case], *, budget: float, min_calls: int, max_calls: int) -> list[Result]:
    results = []
    for case in cases:
        call = build(case)
        decision, samples = time_calls(call, budget=budget, min_calls=min_calls, max_calls=max_calls)
        result = Result(case, decision.outcome, samples)
        outcome = decision.outcome
        results.append(result)
        print(
            f"  {case.label:<42} {outcome.value:<8} n={len(samples):<6} "
            f"median {result.median_us:>10.1f} us   p99 {result.quantile(0.99):>10.1f} us",
            file=sys.stderr,
            flush=True,
        )
    return results


def table(results: Sequence[Result]) -> str:
    lines = [
        "| policies | live grants | request | outcome | calls | median | p99 | mean | calls/s |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.case.policies} | {r.case.grants:,} | {r.case.request} | {r.outcome.value} "
            f"| {len(r.samples_ns)} | {_fmt(r.median_us)} | {_fmt(r.quantile(0.99))} | {_fmt(r.mean_us)} "
            f"| {_rate(1e6 / r.mean_us)} |"
        )
    return "\n".join(lines)


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.2g}"


def _fmt(micros: float) -> str:
    return f"{micros:,.0f} µs" if micros < 10_000 else f"{micros / 1000:,.1f} ms"


def profile(case: Case, calls: int, top: int = 18) -> str:
    call = build(case)
    call()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(top)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs and short runs (a smoke test)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile 10 policies x the most grants afterwards"
    )
    parser.add_argument("--budget", type=float, default=None, help="seconds of timed calls per case")
    args = parser.parse_args(argv)

    if args.quick:
        policy_counts, grant_counts = (1, 10), (0, 1000)
        budget, min_calls, max_calls = args.budget or 0.2, 10, 2000
    else:
        policy_counts, grant_counts = (1, 10, 100), (0, 1000, 10_000)
        budget, min_calls, max_calls = args.budget or 1.5, 30, 20_000
    cases = [Case(p, g) for p in policy_counts for g in grant_counts]
    largest_p, largest_g = policy_counts[-1], grant_counts[-1]
    cases += [Case(largest_p, largest_g, kind) for kind in ("ephemeral", "named", "denied")]
    cases += [Case(1, largest_g, kind) for kind in ("ephemeral", "denied")]

    print(
        f"decide: {NAMESPACES} namespaces; Python {platform.python_version()}; "
        f"{budget}s per case (at least {min_calls} calls)",
        file=sys.stderr,
    )
    machine = describe()
    results = run(cases, budget=budget, min_calls=min_calls, max_calls=max_calls)
    print(f"{machine}\n- load average at the end: {load()}\n")
    print(table(results))
    if args.profile:
        case = Case(min(10, largest_p), largest_g)
        print(f"\ncProfile of {case.label.strip()}, 2 calls, by own time:\n")
        print(profile(case, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
