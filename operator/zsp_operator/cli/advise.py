"""`zsp advise POLICY`: the rules a policy's grants never used, and the smaller policy that would do.

It reads the usage the operator recorded on ended requests (`status.usage`, from the API
server's audit events) and prints a JSON merge patch as YAML, with what it found as comments:

    zsp advise ci-deployers --since 7d > advice.yaml
    kubectl patch accesspolicy ci-deployers --type merge --patch-file advice.yaml

Read-only. `--policy-file` and `--requests` work from files (`kubectl get accessrequests -A
-o yaml`) with no cluster. Exit status: 0; 2 on an error.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from zsp_operator.cli.cluster import EXIT_OK, CliError, Target, fail, run_verb
from zsp_operator.core.advice import PermissionAdvice, advise, merge_patch, recorded_usage, rule_wire
from zsp_operator.core.durations import format_duration, parse_duration
from zsp_operator.core.errors import describe
from zsp_operator.core.models import AccessPolicy, PolicyRule, format_time
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import ACCESS_POLICIES, ACCESS_REQUESTS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "advise",
        help="propose a smaller AccessPolicy from what its grants actually used",
        description=(
            "From the usage the operator recorded when grants ended (status.usage, joined from the "
            "API server's audit events), list each permission's rules no grant used and print a "
            "merge patch with the smaller rules that would have served every grant. Read-only."
        ),
    )
    parser.add_argument("policy", metavar="POLICY", help="the AccessPolicy's name")
    parser.add_argument(
        "--since",
        default="7d",
        metavar="DURATION",
        help="grants that ended this recently: 7d, 12h, 90m (default 7d)",
    )
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="output format")
    parser.add_argument("--policy-file", type=Path, metavar="FILE", help="read the policy from FILE")
    parser.add_argument(
        "--requests", type=Path, metavar="FILE", help="read AccessRequests from FILE (a List, or documents)"
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, then ~/.kube/config")
    parser.add_argument("--context", metavar="NAME", help="the kubeconfig context to use")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        since = _since(args.since)
    except ValueError as err:
        return fail(f"--since {args.since}: {err}")
    cutoff = datetime.now(UTC) - since
    try:  # files first: what they give is not asked of the cluster
        policy = _policy(_documents(args.policy_file), args.policy) if args.policy_file else None
        requests = _documents(args.requests) if args.requests else None
    except (CliError, OSError, yaml.YAMLError) as err:
        return fail(str(err))

    def show(chosen: AccessPolicy, listed: list[dict[str, Any]]) -> int:
        print(render(chosen, listed, cutoff, args.output, format_duration(since)))
        return EXIT_OK

    if policy is not None and requests is not None:
        return show(policy, requests)

    async def verb(kube: Kube, _: Target) -> int:
        chosen = policy
        if chosen is None:
            body = await kube.get(ACCESS_POLICIES, args.policy)
            if body is None:
                raise CliError(f"AccessPolicy {args.policy} not found")
            chosen = _policy([body], args.policy)
        return show(chosen, requests if requests is not None else await kube.list(ACCESS_REQUESTS))

    return run_verb(args, verb)


def _since(text: str) -> timedelta:
    """A duration as the policies write it (`90m`, `12h`), or whole days (`7d`)."""
    if text.endswith("d") and text[:-1].isdigit():
        return timedelta(days=int(text[:-1]))
    return parse_duration(text)


def _documents(path: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if isinstance(doc, dict) and isinstance(doc.get("items"), list):
            docs.extend(item for item in doc["items"] if isinstance(item, dict))
        elif isinstance(doc, dict):
            docs.append(doc)
    return docs


def _policy(docs: list[dict[str, Any]], name: str) -> AccessPolicy:
    for doc in docs:
        if doc.get("kind") == "AccessPolicy" and (doc.get("metadata") or {}).get("name") == name:
            try:
                return AccessPolicy.model_validate(doc)
            except ValidationError as err:
                raise CliError("; ".join(describe(err, f"AccessPolicy {name}"))) from None
    raise CliError(f"no AccessPolicy named {name}")


def render(
    policy: AccessPolicy, requests: list[dict[str, Any]], cutoff: datetime, output: str, since: str
) -> str:
    summaries = recorded_usage(policy.metadata.name, requests, cutoff)
    advice = advise(policy, summaries)
    patch = merge_patch(policy, advice)
    if output == "json":
        return json.dumps(
            {
                "policy": policy.metadata.name,
                "since": format_time(cutoff),
                "grants": len(summaries),
                "permissions": [_advice_json(a) for a in advice],
                "patch": patch,
            },
            indent=2,
        )
    lines = [
        f"# zsp advise {policy.metadata.name}: {len(summaries)} ended grants with recorded usage in the last {since}"
    ]
    for entry in advice:
        lines.append(f"# permission {entry.name}: {entry.why}")
        lines.extend(f"#   unused: {_rule_text(rule)}" for rule in entry.unused)
    if patch is None:
        lines.append("# nothing to change")
        return "\n".join(lines)
    lines.append(f"# apply: kubectl patch accesspolicy {policy.metadata.name} --type merge --patch-file FILE")
    return "\n".join(lines) + "\n" + yaml.safe_dump(patch, sort_keys=False).rstrip()


def _advice_json(entry: PermissionAdvice) -> dict[str, Any]:
    return {
        "name": entry.name,
        "grants": entry.grants,
        "why": entry.why,
        "unused": [rule_wire(rule) for rule in entry.unused],
        "proposed": [rule_wire(rule) for rule in entry.proposed] if entry.proposed is not None else None,
    }


def _rule_text(rule: PolicyRule) -> str:
    group = rule.api_groups[0] if rule.api_groups and rule.api_groups[0] else "core"
    names = f" (names {', '.join(rule.resource_names)})" if rule.resource_names else ""
    return f"{group} {', '.join(rule.resources)}: {', '.join(rule.verbs)}{names}"
