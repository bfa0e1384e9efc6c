"""`zsp check`: decide an AccessRequest offline against policy files, as the operator would.

Exit status: 0 allowed, 1 denied or pending approval, 2 bad input (the message names the file,
the object and the field). No cluster is contacted, so there are no live grants: limits and
exclusive environments cannot fail here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError

from zsp_operator.core.constants import API_VERSION, KIND_POLICY, KIND_REQUEST
from zsp_operator.core.durations import format_duration, parse_duration
from zsp_operator.core.errors import InvalidObject, describe, parse
from zsp_operator.core.grantindex import GrantIndex
from zsp_operator.core.models import AccessPolicy, AccessRequest, PolicyRule, UserInfo
from zsp_operator.core.policy import ConditionObjects, Decision, Outcome, decide
from zsp_operator.core.rbac import describe_rule

EXIT_ALLOWED, EXIT_NOT_ALLOWED, EXIT_BAD_INPUT = 0, 1, 2

_RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
_SA_PREFIX = "system:serviceaccount:"
_RULES = TypeAdapter(list[PolicyRule])

T = TypeVar("T")


class BadInput(Exception):
    """The inputs cannot be evaluated; one message per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Inputs:
    request: AccessRequest
    policies: list[AccessPolicy]
    catalog: dict[str, list[PolicyRule]]
    labels: dict[str, str]
    now: datetime
    objects: ConditionObjects


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="decide an AccessRequest offline against AccessPolicy files",
        description=(
            "Evaluate an AccessRequest against AccessPolicies without a cluster, and explain "
            "the decision. Exit 0 if allowed, 1 if denied or pending approval, 2 on bad input."
        ),
    )
    parser.add_argument(
        "--policy",
        nargs="+",
        action="extend",
        required=True,
        type=Path,
        metavar="FILE",
        help="YAML files; every AccessPolicy document in them is a candidate",
    )
    parser.add_argument(
        "--request", required=True, type=Path, metavar="FILE", help="YAML file holding one AccessRequest"
    )
    parser.add_argument(
        "-n", "--namespace", metavar="NAMESPACE", help="namespace of the request if its file names none"
    )
    parser.add_argument(
        "--namespace-labels",
        default="",
        metavar="KEY=VALUE,...",
        help="labels of the request's namespace, e.g. team=payments",
    )
    parser.add_argument(
        "--as", dest="as_user", metavar="USER", help="the requester's username, as for kubectl --as"
    )
    parser.add_argument(
        "--as-group",
        dest="as_groups",
        action="append",
        default=[],
        metavar="GROUP",
        help="a group of the requester (repeatable)",
    )
    parser.add_argument(
        "--cluster-role",
        nargs="+",
        action="extend",
        default=[],
        type=Path,
        metavar="FILE",
        help="YAML files of ClusterRoles the operator's catalog holds",
    )
    parser.add_argument(
        "--now",
        metavar="RFC3339",
        help="evaluate at this time (default: now); conditions that read `now` see it",
    )
    parser.add_argument(
        "--task",
        type=Path,
        metavar="FILE",
        help="YAML of the object spec.taskRef names, for conditions reading `task`",
    )
    parser.add_argument(
        "--grantee",
        type=Path,
        metavar="FILE",
        help="YAML of the grantee ServiceAccount, for conditions reading `grantee` (default: its name only)",
    )
    parser.add_argument(
        "--break-glass-max-ttl",
        default="1h",
        metavar="DURATION",
        help="longest TTL a break-glass policy may grant (default 1h)",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        inputs = load_inputs(args)
        requester = resolve_requester(args.as_user, args.as_groups, inputs.request)
        cap = _duration("--break-glass-max-ttl", args.break_glass_max_ttl)
    except BadInput as err:
        for message in err.messages:
            print(f"zsp check: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    request = inputs.request.model_copy(deep=True)
    request.status.requester = requester
    decision = decide(
        request,
        inputs.policies,
        GrantIndex(),
        {request.namespace: inputs.labels},
        inputs.now,
        catalog=inputs.catalog,
        break_glass_max_ttl=cap,
        objects=inputs.objects,
    )
    if args.output == "json":
        print(json.dumps(as_json(decision, request), indent=2))
    else:
        print(render_text(decision, request, inputs.catalog))
    return EXIT_ALLOWED if decision.outcome is Outcome.ALLOWED else EXIT_NOT_ALLOWED


# --- Reading the files ------------------------------------------------------------------------


def read_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a file, each of which must be a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise BadInput([f"{path}: cannot read: {err.strerror or err}"]) from err
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise BadInput([f"{path}: {where}malformed YAML: {err.problem or err}"]) from err
    except yaml.YAMLError as err:
        raise BadInput([f"{path}: malformed YAML: {err}"]) from err
    problems = [
        f"{path}: document {i + 1}: expected a Kubernetes object (a mapping), got {type(d).__name__}"
        for i, d in enumerate(documents)
        if not isinstance(d, dict)
    ]
    if problems:
        raise BadInput(problems)
    return documents


def _name_of(document: dict[str, Any]) -> str:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return str(name) if name else "(unnamed)"


def _check_api_version(document: dict[str, Any], expected: str, source: str) -> list[str]:
    actual = document.get("apiVersion")
    if actual == expected:
        return []
    return [f"{source}: apiVersion: expected {expected}, got {actual or 'nothing'}"]


def _objects(paths: Sequence[Path], kind: str, api_version: str) -> list[tuple[str, dict[str, Any]]]:
    """(source, document) of every object of `kind`; other kinds in the files are skipped."""
    found, problems = [], []
    for path in paths:
        try:
            documents = read_documents(path)
        except BadInput as err:
            problems.extend(err.messages)
            continue
        for document in documents:
            if document.get("kind") != kind:
                continue
            source = f"{path}: {kind} {_name_of(document)}"
            problems.extend(_check_api_version(document, api_version, source))
            if _name_of(document) == "(unnamed)":
                problems.append(f"{source}: metadata.name: this field is required")
            found.append((source, document))
    if problems:
        raise BadInput(problems)
    return found


def load_policies(paths: Sequence[Path]) -> list[AccessPolicy]:
    policies, problems = [], []
    for source, document in _objects(paths, KIND_POLICY, API_VERSION):
        try:
            policies.append(parse(AccessPolicy, document, source))
        except InvalidObject as err:
            problems.extend(err.messages)
    names = [p.name for p in policies]
    repeated = sorted({n for n in names if names.count(n) > 1})
    problems += [f"AccessPolicy {n}: defined more than once in --policy files" for n in repeated]
    if not policies and not problems:
        files = ", ".join(map(str, paths))
        problems.append(f"{files}: no AccessPolicy found: --policy needs at least one")
    if problems:
        raise BadInput(problems)
    return policies


def load_request(path: Path, namespace: str | None) -> AccessRequest:
    found = _objects([path], KIND_REQUEST, API_VERSION)
    if len(found) != 1:
        names = ", ".join(_name_of(d) for _, d in found)
        what = f"{len(found)} AccessRequests ({names})" if found else "no AccessRequest"
        raise BadInput([f"{path}: holds {what}: give exactly one to --request"])
    source, document = found[0]
    try:
        request = parse(AccessRequest, document, source)
    except InvalidObject as err:
        raise BadInput(err.messages) from err
    if request.metadata.namespace and namespace and request.metadata.namespace != namespace:
        raise BadInput(
            [
                f"{source}: metadata.namespace is {request.metadata.namespace!r} but --namespace "
                f"is {namespace!r}: drop one of them"
            ]
        )
    request.metadata.namespace = request.metadata.namespace or namespace
    if not request.metadata.namespace:
        raise BadInput(
            [
                f"{source}: metadata.namespace: an AccessRequest lives in the namespace where access "
                f"is wanted: set it, or pass --namespace"
            ]
        )
    return request


def load_catalog(paths: Sequence[Path]) -> dict[str, list[PolicyRule]]:
    catalog, problems = {}, []
    for source, document in _objects(paths, "ClusterRole", _RBAC_API_VERSION):
        try:
            catalog[_name_of(document)] = _RULES.validate_python(document.get("rules") or [])
        except ValidationError as err:
            problems.extend(describe(err, source, prefix=("rules",)))
    if problems:
        raise BadInput(problems)
    return catalog


def parse_labels(text: str) -> dict[str, str]:
    """`team=payments,zsp.dev/environment=staging` -> a dict; empty text -> no labels."""
    labels, problems = {}, []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(f"--namespace-labels: {item!r} is not KEY=VALUE")
        labels[key] = value
    if problems:
        raise BadInput(problems)
    return labels


def parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)  # the CLI may read the clock; the core never does
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        example = "2026-03-01T12:00:00Z"
        raise BadInput([f"--now: {text!r} is not an RFC 3339 time, e.g. {example}"]) from err
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _duration(flag: str, text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise BadInput([f"{flag}: {err}"]) from err


def load_inputs(args: argparse.Namespace) -> Inputs:
    """Read and validate every input, reporting all problems at once."""
    problems: list[str] = []

    def attempt(step: Callable[[], T]) -> T | None:
        try:
            return step()
        except BadInput as err:
            problems.extend(err.messages)
            return None

    policies = attempt(lambda: load_policies(args.policy))
    request = attempt(lambda: load_request(args.request, args.namespace))
    catalog = attempt(lambda: load_catalog(args.cluster_role))
    labels = attempt(lambda: parse_labels(args.namespace_labels))
    now = attempt(lambda: parse_now(args.now))
    task = attempt(lambda: load_object("--task", getattr(args, "task", None)))
    grantee = attempt(lambda: load_object("--grantee", getattr(args, "grantee", None)))
    if policies is None or request is None or catalog is None or labels is None or now is None or problems:
        raise BadInput(problems)
    return Inputs(request, policies, catalog, labels, now, ConditionObjects(grantee=grantee, task=task))


def load_object(flag: str, path: Path | None) -> dict[str, Any] | None:
    """One Kubernetes object from a YAML file, as conditions see it (no schema: any kind)."""
    if path is None:
        return None
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BadInput([f"{flag}: {path}: {err}"]) from err
    if not isinstance(document, dict) or not isinstance(document.get("metadata"), dict):
        raise BadInput([f"{flag}: {path}: not a Kubernetes object (no metadata): give one object's YAML"])
    return document


def resolve_requester(user: str | None, groups: list[str], request: AccessRequest) -> UserInfo | None:
    """The requester from --as/--as-group, else from the file's status.requester.

    Like the API server when impersonating: a ServiceAccount with no groups given gets its
    ServiceAccount groups, and everyone but system:anonymous is in system:authenticated.
    """
    if user is None:
        if groups:
            raise BadInput(["--as-group needs --as: name the requester's username too"])
        return request.status.requester
    all_groups = list(groups)
    if user.startswith(_SA_PREFIX) and not groups:
        namespace = user.removeprefix(_SA_PREFIX).split(":", 1)[0]
        all_groups += ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    if user != "system:anonymous" and "system:authenticated" not in all_groups:
        all_groups.append("system:authenticated")
    return UserInfo(username=user, groups=all_groups)


# --- Printing the decision --------------------------------------------------------------------


def _grantee(request: AccessRequest) -> str:
    account = request.spec.grantee.service_account
    if account is not None:
        return f"ServiceAccount {account.namespace}/{account.name}"
    delivery = request.spec.delivery
    if delivery is None:
        return "ephemeral ServiceAccount"
    secret = f"{delivery.namespace}/{delivery.secret_name}"
    return f"ephemeral ServiceAccount, kubeconfig to Secret {secret}"


def _headline(decision: Decision) -> str:
    if decision.outcome is Outcome.ALLOWED:
        kind = "break-glass policy" if decision.break_glass else "policy"
        return f'ALLOWED by {kind} "{decision.policy}"'
    if decision.outcome is Outcome.PENDING:
        count = decision.approvals_required
        noun = "approval" if count == 1 else "approvals"
        return f'PENDING under policy "{decision.policy}": needs {count} {noun}'
    closest = f' (closest policy: "{decision.policy}")' if decision.policy else ""
    return f"DENIED{closest}"


def render_text(decision: Decision, request: AccessRequest, catalog: dict[str, list[PolicyRule]]) -> str:
    """The decision as a policy author wants to read it."""
    requester = request.status.requester
    who = "(none: pass --as, or set status.requester in the request file)"
    if requester is not None:
        groups = f" (groups: {', '.join(requester.groups)})" if requester.groups else ""
        who = requester.username + groups
    lines = [
        _headline(decision),
        f"  request:     {request.namespace}/{request.name}",
        f"  requester:   {who}",
        f"  grantee:     {_grantee(request)}",
        f"  permission:  {decision.permission or '(explicit rules)'}",
    ]
    if decision.ttl is not None:
        lines.append(f"  ttl:         {format_duration(decision.ttl)}")
    rules = list(decision.rules)
    if decision.cluster_role is not None:
        lines.append(f"  clusterRole: {decision.cluster_role}")
        rules = list(catalog.get(decision.cluster_role, []))
    if rules:
        lines.append("  rules:")
        lines += [f"    - {describe_rule(rule)}" for rule in rules]
    if decision.persistence:
        lines.append("  persistence (can outlive revocation):")
        lines += [f"    ! {finding}" for finding in decision.persistence]
    else:
        lines.append("  persistence: none found")
    if decision.outcome is Outcome.DENIED:
        lines.append("  why not:")
        lines += [f"    - {mismatch}" for mismatch in decision.mismatches]
    else:
        lines.append(f"  reason:      {decision.reason}")
    lines.append("  note: offline check without live grants; limits cannot fail here")
    return "\n".join(lines)


def as_json(decision: Decision, request: AccessRequest) -> dict[str, Any]:
    requester = request.status.requester
    return {
        "outcome": decision.outcome.value,
        "reason": decision.reason,
        "policy": decision.policy,
        "request": {"namespace": request.namespace, "name": request.name},
        "requester": requester.to_wire() if requester else None,
        "ttl": format_duration(decision.ttl) if decision.ttl is not None else None,
        "permission": decision.permission,
        "clusterRole": decision.cluster_role,
        "rules": [rule.to_wire() for rule in decision.rules],
        "persistence": list(decision.persistence),
        "breakGlass": decision.break_glass,
        "approvalsRequired": decision.approvals_required,
        "mismatches": list(decision.mismatches),
        "unmetCondition": {"name": decision.unmet.name, "message": decision.unmet.message}
        if decision.unmet is not None
        else None,
    }
