"""What AccessPolicy conditions add to a decision: `decide` with 0, 1 and 4 conditions on the matching policy.

The world is decide_bench's (1 000 namespaces, P policies, G grants); the policy the request
matches (team 0's) gets the conditions of docs/conditions.md: working hours unless the
requester is on call, a ticket in the reason, no `tier=prod` namespace unless the requester
is in a group, and at most one live grant of the grantee. Each condition holds, so every one
is evaluated on every call (a condition that fails first would hide the cost of the rest).
The difference between the rows is what the conditions cost; the table gives it per
condition. Compiling happens once per distinct expression, outside the timed calls.

    python bench/conditions_bench.py            # 10 policies x 10 000 grants, and 100 x 10 000
    python bench/conditions_bench.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from decide_bench import Case, time_calls
from decide_bench import build as build_case
from machine import describe

from zsp_operator.core.models import AccessPolicy, AccessRequest
from zsp_operator.core.policy import Decision, Outcome

CONDITIONS: list[dict[str, Any]] = [
    {
        "name": "working-hours",
        "expression": '(now.getHours() >= 9 && now.getHours() < 17) || "platform-oncall" in requester.groups',
        "message": "outside 09:00-17:00 UTC only the on-call group may ask",
    },
    {
        "name": "ticket",
        "expression": r'request.spec.reason.matches("^(OPS|CHG)-[0-9]+ ")',
        "message": "the reason must start with a ticket",
    },
    {
        "name": "not-prod",
        "expression": '!("tier" in namespaceObject.metadata.labels) || namespaceObject.metadata.labels["tier"] '
        '!= "prod" || "sre" in requester.groups',
        "message": "tier=prod only for sre",
    },
    {"name": "one-at-a-time", "expression": "activeGrants.grantee < 1", "message": "one grant at a time"},
]


def with_conditions(policy: AccessPolicy, count: int) -> AccessPolicy:
    wire = policy.to_wire()
    wire["spec"]["conditions"] = CONDITIONS[:count]
    return AccessPolicy.model_validate(wire)


def build(case: Case, conditions: int) -> Callable[[], Decision]:
    def adjust(policies: list[AccessPolicy], request: AccessRequest) -> None:
        policies[0] = with_conditions(policies[0], conditions)
        request.spec.reason = "OPS-4711 deploy build 88"

    return build_case(case, adjust=adjust)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs and short runs")
    args = parser.parse_args(argv)
    cases = [Case(10, 1_000)] if args.quick else [Case(10, 10_000), Case(100, 10_000)]
    budget, min_calls, max_calls = (0.5, 50, 2_000) if args.quick else (5.0, 500, 50_000)
    print(describe())
    print()
    print("| world | conditions | outcome | median µs | p99 µs | added per condition (median) |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        baseline = 0.0
        for count in (0, 1, 4):
            decision, samples = time_calls(
                build(case, count), budget=budget, min_calls=min_calls, max_calls=max_calls
            )
            if decision.outcome is not Outcome.ALLOWED:
                print(f"unexpected: {decision.reason}", file=sys.stderr)
                return 1
            ordered = sorted(samples)
            median = ordered[len(ordered) // 2] / 1000
            p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] / 1000
            if count == 0:
                baseline = median
                added = "-"
            else:
                added = f"{(median - baseline) / count:.1f} µs"
            print(
                f"| {case.label} | {count} | {decision.outcome.value} | {median:.1f} | {p99:.1f} | {added} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
