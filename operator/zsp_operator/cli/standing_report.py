"""`zsp audit`: a read-only report of standing privilege on any cluster.

It lists RBAC objects, namespaces and ServiceAccounts (and TaskGrants where the operator is
installed) and writes nothing. Exit status: 0; 1 when `--fail-on` finds what it names; 2 on
an error (the API refused, or could not be reached).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
from collections.abc import Iterator
from typing import Any

from zsp_operator.cli.cluster import EXIT_OK, Target, run_verb
from zsp_operator.cli.output import table
from zsp_operator.core.standing_report import BindingFinding, Report, SubjectReport, build_report, report_json
from zsp_operator.kube import Forbidden, Kube, NotFound
from zsp_operator.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    TASK_GRANTS,
    Resource,
)

EXIT_FOUND = 1
Body = dict[str, Any]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="report standing privilege: who can do what without a live grant (read-only)",
        description=(
            "Report every non-system subject that RBAC bindings give privilege, grouped by subject: "
            "its bindings (held by a live grant, orphaned, tampered, forged, or unmanaged), what it "
            "can do in each namespace, and which rules can outlive revocation. Needs only list on "
            "RBAC objects, namespaces and ServiceAccounts; works on clusters without the operator."
        ),
    )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    parser.add_argument(
        "-n",
        "--namespace",
        metavar="NAMESPACE",
        help="only RoleBindings in this namespace (ClusterRoleBindings apply everywhere and are kept)",
    )
    parser.add_argument(
        "--fail-on",
        choices=("standing", "persistence"),
        help="exit 1 if any subject holds standing privilege (standing), or standing privilege "
        "that can outlive revocation (persistence); for CI gates",
    )
    parser.add_argument(
        "--allowlist",
        default="",
        metavar="NS/NAME[,...]",
        help="bindings accepted as they are (same syntax as `zsp run --sweep-allowlist`); "
        "shown, but not counted as standing",
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, then ~/.kube/config")
    parser.add_argument("--context", metavar="NAME", help="the kubeconfig context to use")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def verb(kube: Kube, _: Target) -> int:
        allowlist = [entry.strip() for entry in args.allowlist.split(",") if entry.strip()]
        with gc_paused():
            report = await collect(kube, args.namespace, allowlist)
            print(render_json(report) if args.output == "json" else render(report))
        return exit_status(report, args.fail_on)

    return run_verb(args, verb)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cycle collection while the report is built.

    Listing and analysing a large cluster allocates millions of small objects, nearly all
    acyclic, and the collector would rescan the whole heap again and again: pausing it halves
    the time for 10 000 bindings. One short-lived command can afford the memory.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def exit_status(report: Report, fail_on: str | None) -> int:
    if fail_on == "standing" and report.summary.standing:
        return EXIT_FOUND
    if fail_on == "persistence" and report.summary.persistence:
        return EXIT_FOUND
    return EXIT_OK


async def _optional_list(kube: Kube, res: Resource, namespace: str | None = None) -> list[Body] | None:
    """A list that may be refused (None: unknown) or not served at all (404: there are none)."""
    try:
        return await kube.list(res, namespace)
    except NotFound:
        return []
    except Forbidden:
        return None


async def _namespaces(kube: Kube, namespace: str | None) -> list[Body]:
    if namespace is None:
        return await kube.list(NAMESPACES)
    found = await kube.get(NAMESPACES, namespace)
    return [found] if found is not None else []


async def collect(kube: Kube, namespace: str | None = None, allowlist: list[str] | None = None) -> Report:
    """List what the report needs (concurrently) and build it."""
    lists = [
        asyncio.ensure_future(kube.list(res, namespace if res.namespaced else None))
        for res in (CLUSTER_ROLE_BINDINGS, ROLE_BINDINGS, ROLES, CLUSTER_ROLES)
    ]
    namespaces = asyncio.ensure_future(_namespaces(kube, namespace))
    # Subjects may live in other namespaces than their binding: the whole cluster is asked.
    accounts = asyncio.ensure_future(_optional_list(kube, SERVICE_ACCOUNTS))
    grants = asyncio.ensure_future(_optional_list(kube, TASK_GRANTS))
    try:
        crbs, rbs, roles, cluster_roles = [await task for task in lists]
        return build_report(
            bindings=[
                *({**b, "kind": CLUSTER_ROLE_BINDINGS.kind} for b in crbs),
                *({**b, "kind": ROLE_BINDINGS.kind} for b in rbs),
            ],
            roles=roles,
            cluster_roles=cluster_roles,
            namespaces=await namespaces,
            service_accounts=await accounts,
            grants=await grants,
            allowlist=allowlist or (),
        )
    finally:
        for task in (*lists, namespaces, accounts, grants):
            task.cancel()


def render_json(report: Report) -> str:
    """The report as JSON, one subject per line.

    Indenting every level would make Python's encoder fall back from C to pure Python, which
    takes seconds on a large cluster; a line per subject stays readable, greppable and fast.
    """
    data = report_json(report)
    subjects = ",\n".join(f"    {json.dumps(s)}" for s in data["subjects"])
    summary = json.dumps(data["summary"], indent=2).replace("\n", "\n  ")
    return "{\n" + f'  "subjects": [\n{subjects}\n  ],\n  "summary": {summary}\n' + "}"


# --- the table ---------------------------------------------------------------------------------


def _heading(subject: SubjectReport) -> str:
    flags = ["standing privilege" if subject.standing else "granted only"]
    if subject.persistence_capable:
        flags.append("persistence-capable")
    if subject.persistence_capable_grant:
        flags.append("persistence-capable grant")
    if subject.exists is False:
        flags.append("ServiceAccount does not exist: whoever creates it inherits this")
    return f"{subject.subject}  [{', '.join(flags)}]"


def _note(finding: BindingFinding) -> str:
    notes = []
    if finding.grant:
        notes.append(f"grant {finding.grant}")
    if finding.persistence_capable_grant:
        notes.append("persistence-capable")
    if finding.role_missing:
        notes.append("role missing")
    if finding.enforced:
        notes.append("enforced namespace")
    return ", ".join(notes)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def render_subject(subject: SubjectReport) -> str:
    rows = [[str(f.binding), str(f.binding.role_ref), f.state.value, _note(f)] for f in subject.bindings]
    lines = [_heading(subject), _indent(table(["binding", "role", "state", "note"], rows), "  ")]
    for scope in subject.scopes:
        if not scope.rules:
            continue
        lines.append(f"  can, {'in ' + scope.namespace if scope.namespace else 'cluster-wide'}:")
        for rule in scope.rules:
            marks = "" if rule.standing else "  (granted)"
            if rule.risks:
                marks += f"  ! {', '.join(rule.risks)}"
            lines.append(f"    {rule.text}{marks}")
    return "\n".join(lines)


def render(report: Report) -> str:
    """The human report: one block per subject, then the summary line."""
    blocks = [render_subject(s) for s in report.subjects]
    blocks.append(f"Summary: {report.summary.line()}")
    return "\n\n".join(blocks)
