"""`zsp approve` and `zsp deny`: set `zsp.dev/approve` / `zsp.dev/deny` on an AccessRequest.

The admission webhook turns the annotation into an approval record carrying the API
server's authenticated userInfo (never who the caller claims to be), and refuses it with a
message when the request is not Pending or the caller is no approver; that message is shown.

Exit status: 0 recorded; 2 refused, not found, or an API error.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

from zsp_operator.cli.cluster import EXIT_OK, CliError, Target, add_cluster_flags, not_found, run_verb
from zsp_operator.cli.output import object_name
from zsp_operator.cli.summary import approval_records
from zsp_operator.core import constants as c
from zsp_operator.kube import Kube, NotFound
from zsp_operator.kube.resources import ACCESS_REQUESTS

Decision = Literal["approve", "deny"]
_ANNOTATION: dict[Decision, str] = {"approve": c.ANNOTATION_APPROVE, "deny": c.ANNOTATION_DENY}
_PAST: dict[Decision, str] = {"approve": "approved", "deny": "denied"}


def register(subparsers: Any) -> None:
    for decision, summary in (
        ("approve", "approve a Pending AccessRequest (as yourself, as the API server authenticates you)"),
        ("deny", "deny a Pending AccessRequest; one eligible denial ends it"),
    ):
        parser = subparsers.add_parser(
            decision, help=summary, description=summary[0].upper() + summary[1:] + "."
        )
        parser.add_argument("name", metavar="NAME")
        parser.add_argument("--comment", default="", help="recorded with your decision in the audit trail")
        add_cluster_flags(parser)
        parser.set_defaults(func=run_decision, decision=decision)


def decision_patch(decision: Decision, comment: str) -> dict[str, Any]:
    """The merge patch asking the webhook to record `decision`; the value is the comment."""
    return {"metadata": {"annotations": {_ANNOTATION[decision]: comment.strip()}}}


def run_decision(args: argparse.Namespace) -> int:
    decision: Decision = args.decision

    async def verb(kube: Kube, target: Target) -> int:
        namespace, name = target.namespace, args.name
        before = await kube.get(ACCESS_REQUESTS, name, namespace)
        if before is None:
            raise not_found(name, namespace)
        try:
            after = await kube.patch(ACCESS_REQUESTS, name, decision_patch(decision, args.comment), namespace)
        except NotFound:
            raise not_found(name, namespace) from None
        annotations = after["metadata"].get("annotations") or {}
        if _ANNOTATION[decision] in annotations:
            # Nothing consumed it, so no authenticated record exists; left in place, a later
            # update by someone else would be recorded in their name. Take it back.
            await kube.patch(
                ACCESS_REQUESTS, name, {"metadata": {"annotations": {_ANNOTATION[decision]: None}}}, namespace
            )
            raise CliError(
                f"the {decision} was not recorded: no admission webhook took {_ANNOTATION[decision]} "
                "(is the zsp operator running with its webhooks?)"
            )
        records = approval_records(after)
        known = len(approval_records(before))
        mine = records[known:] or records[-1:]
        by = f" by {mine[-1].username}" if mine else ""
        print(f"{object_name(name)} {_PAST[decision]}{by}")
        return EXIT_OK

    return run_verb(args, verb)
