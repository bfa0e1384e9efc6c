"""Build an AccessRequest manifest from `zsp request` flags; no I/O.

Every problem with the flags is reported at once, each naming the flag and showing the
form it expects, before anything is sent to the API server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from zsp_operator.core import constants as c
from zsp_operator.core.durations import parse_duration
from zsp_operator.core.errors import describe
from zsp_operator.core.models import AccessRequestSpec

# `--rule` keys and the PolicyRule field each fills; the long names are accepted too.
_RULE_KEYS = {
    "verbs": "verbs",
    "groups": "apiGroups",
    "apiGroups": "apiGroups",
    "resources": "resources",
    "names": "resourceNames",
    "resourceNames": "resourceNames",
    "urls": "nonResourceURLs",
    "nonResourceURLs": "nonResourceURLs",
}
_RULE_FORM = "verbs=get,list;groups=apps;resources=deployments"

# `--task KIND/NAME[.NS]` kinds: the two a task usually is; anything else takes --task-ref.
_TASK_KINDS = {
    "job": ("batch/v1", "Job"),
    "jobs": ("batch/v1", "Job"),
    "job.batch": ("batch/v1", "Job"),
    "pod": ("v1", "Pod"),
    "pods": ("v1", "Pod"),
}

DEFAULT_WAIT = timedelta(minutes=5)


class BadFlags(Exception):
    """The flags cannot make a request; one message per problem."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)


@dataclass(frozen=True)
class RequestFlags:
    """What `zsp request` was told, as given on the command line."""

    reason: str
    name: str | None = None
    generate_name: str | None = None  # a prefix; "" asks for one derived from the permission
    grantee_sa: str | None = None
    ephemeral: bool = False
    permission: str | None = None
    rules: Sequence[str] = field(default_factory=tuple)
    ttl: str | None = None
    policy: str | None = None
    task: str | None = None
    task_ref: str | None = None
    delivery: str | None = None


def _split_pair(flag: str, text: str, what: str) -> tuple[str, str]:
    """`NS/NAME` -> (ns, name)."""
    first, sep, second = text.partition("/")
    if not sep or not first or not second or "/" in second:
        raise BadFlags([f"{flag}: {text!r} is not {what}"])
    return first, second


def parse_rule(text: str) -> dict[str, list[str]]:
    """`verbs=get,list;groups=apps;resources=deployments` -> a PolicyRule on the wire.

    Without `groups`, resources are in the core API group, as with `kubectl create role
    --resource`; `groups=` (empty) names the core group explicitly.
    """
    rule: dict[str, list[str]] = {}
    problems = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = item.partition("=")
        key = key.strip()
        wire = _RULE_KEYS.get(key)
        if not sep or wire is None:
            known = "verbs, groups, resources, names, urls"
            problems.append(f"--rule: {item!r} is not KEY=VALUES with KEY one of {known}")
            continue
        values = [v.strip() for v in value.split(",")]
        if wire != "apiGroups":
            values = [v for v in values if v]  # only the core group is spelt as an empty string
        rule.setdefault(wire, []).extend(values)
    if not problems:
        if not rule.get("verbs"):
            problems.append(f"--rule: {text!r} names no verbs, e.g. {_RULE_FORM}")
        if not rule.get("resources") and not rule.get("nonResourceURLs"):
            problems.append(f"--rule: {text!r} names no resources (or urls), e.g. {_RULE_FORM}")
    if problems:
        raise BadFlags(problems)
    if rule.get("resources") and "apiGroups" not in rule:
        rule["apiGroups"] = [""]
    order = ("apiGroups", "resources", "resourceNames", "nonResourceURLs", "verbs")
    return {key: rule[key] for key in order if key in rule}


def parse_task(text: str) -> dict[str, str]:
    """`job/deploy-4711.ci` -> a taskRef; without `.NS` the task is in the request's namespace.

    Namespace names hold no dots, so the namespace is whatever follows the last one; a task
    whose own name has dots needs its namespace spelt out (or `--task-ref`).
    """
    kind_text, sep, rest = text.partition("/")
    known = _TASK_KINDS.get(kind_text.lower())
    if not sep or not rest:
        raise BadFlags([f"--task: {text!r} is not KIND/NAME[.NAMESPACE], e.g. job/deploy-4711.ci"])
    if known is None:
        raise BadFlags(
            [
                f"--task: kind {kind_text!r} is not job or pod: name other kinds with --task-ref API,KIND,NS,NAME"
            ]
        )
    name, dot, namespace = rest.rpartition(".")
    if not dot:
        name, namespace = rest, ""
    if not name:
        raise BadFlags([f"--task: {text!r} has no name before the namespace"])
    api_version, kind = known
    ref = {"apiVersion": api_version, "kind": kind, "name": name}
    if namespace:
        ref["namespace"] = namespace
    return ref


def parse_task_ref(text: str) -> dict[str, str]:
    """`batch/v1,Job,ci,deploy-4711` -> a taskRef; an empty namespace means the request's."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 4 or not parts[0] or not parts[1] or not parts[3]:
        raise BadFlags(
            [f"--task-ref: {text!r} is not API_VERSION,KIND,NAMESPACE,NAME, e.g. batch/v1,Job,ci,deploy-4711"]
        )
    api_version, kind, namespace, name = parts
    ref = {"apiVersion": api_version, "kind": kind, "name": name}
    if namespace:
        ref["namespace"] = namespace
    return ref


def _ttl(text: str) -> str:
    try:
        value = parse_duration(text)
    except ValueError as err:
        raise BadFlags([f"--ttl: {err}"]) from err
    if value <= timedelta(0):
        raise BadFlags(["--ttl: must be longer than 0s"])
    return text


def _collect(problems: list[str], step: Any, *args: Any) -> Any:
    try:
        return step(*args)
    except BadFlags as err:
        problems.extend(err.messages)
        return None


def build_request(flags: RequestFlags, namespace: str) -> dict[str, Any]:
    """The AccessRequest these flags describe, in `namespace`.

    Raises:
        BadFlags: one message per problem, each naming its flag.
    """
    problems: list[str] = []
    metadata: dict[str, Any] = {"namespace": namespace}
    if flags.name and flags.generate_name is not None:
        problems.append("give either NAME or --generate-name, not both")
    elif flags.name:
        metadata["name"] = flags.name
    elif flags.generate_name is not None:
        metadata["generateName"] = flags.generate_name or f"{flags.permission or 'access'}-"
    else:
        problems.append("name the request: give NAME, or --generate-name to let the API server pick one")

    spec: dict[str, Any] = {}
    if flags.policy:
        spec["policy"] = flags.policy
    if flags.ephemeral == bool(flags.grantee_sa):
        problems.append("give exactly one of --grantee-sa NS/NAME or --ephemeral")
    elif flags.grantee_sa:
        pair = _collect(problems, _split_pair, "--grantee-sa", flags.grantee_sa, "NAMESPACE/NAME")
        if pair:
            spec["grantee"] = {"serviceAccount": {"namespace": pair[0], "name": pair[1]}}
    else:
        spec["grantee"] = {"ephemeral": {}}

    if bool(flags.permission) == bool(flags.rules):
        problems.append("give exactly one of --permission NAME or --rule (repeatable)")
    elif flags.permission:
        spec["permission"] = flags.permission
    else:
        rules = [_collect(problems, parse_rule, text) for text in flags.rules]
        spec["rules"] = [rule for rule in rules if rule]

    if flags.ttl is not None:
        spec["ttl"] = _collect(problems, _ttl, flags.ttl)
    if not flags.reason.strip():
        problems.append("--reason: say why the access is needed; it is the audit record's first line")
    spec["reason"] = flags.reason

    if flags.task and flags.task_ref:
        problems.append("give either --task or --task-ref, not both")
    elif flags.task:
        spec["taskRef"] = _collect(problems, parse_task, flags.task)
    elif flags.task_ref:
        spec["taskRef"] = _collect(problems, parse_task_ref, flags.task_ref)

    if flags.delivery:
        if not flags.ephemeral:
            problems.append(
                "--delivery is only for --ephemeral: a bound ServiceAccount has its own credentials"
            )
        pair = _collect(problems, _split_pair, "--delivery", flags.delivery, "NAMESPACE/SECRET")
        if pair:
            spec["delivery"] = {"namespace": pair[0], "secretName": pair[1]}

    if problems:
        raise BadFlags(problems)
    try:
        # The same model the webhook and operator use: what passes here, the API will parse.
        AccessRequestSpec.model_validate(spec)
    except ValidationError as err:
        raise BadFlags(describe(err, "AccessRequest", prefix=("spec",))) from err
    return {"apiVersion": c.API_VERSION, "kind": c.KIND_REQUEST, "metadata": metadata, "spec": spec}


def resolve_wait(wait: str | None, name: str | None) -> tuple[timedelta | None, str | None]:
    """(how long `--wait` waits, the request's NAME) from the raw `--wait` value.

    `--wait` takes an optional TIMEOUT, so in `zsp request --wait deploy-1 ...` argparse hands
    it the NAME; a value that is no duration while NAME is missing is taken as the NAME.
    A zero timeout means no limit. None means: do not wait.
    """
    if wait is None:
        return None, name
    if wait == "":
        return DEFAULT_WAIT, name
    try:
        timeout = parse_duration(wait)
    except ValueError as err:
        if name is None:
            return DEFAULT_WAIT, wait
        raise BadFlags([f"--wait: {err}"]) from err
    return timeout, name


def resolve_dry_run(value: str | None, name: str | None) -> tuple[str | None, str | None]:
    """(`client`, `server` or None, the request's NAME) from the raw `--dry-run` value.

    Like `--wait`, a bare `--dry-run` (client) may have swallowed the NAME that follows it.
    """
    if value is None or value in ("client", "server"):
        return value, name
    if name is None:
        return "client", value
    raise BadFlags([f"--dry-run: {value!r} is neither client nor server"])
