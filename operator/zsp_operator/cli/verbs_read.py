"""`zsp list`, `zsp describe` and `zsp token`: reading AccessRequests and what they delivered.

Exit status: 0 success; 2 not found, refused, or an API error.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from zsp_operator.cli.cluster import (
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    Target,
    add_cluster_flags,
    api_error_message,
    fail,
    not_found,
    note,
    run_verb,
)
from zsp_operator.cli.describe import render
from zsp_operator.cli.output import as_list, dump, object_name, table, until
from zsp_operator.cli.summary import (
    awaits_approval_of,
    list_headers,
    list_row,
    names,
    pending_headers,
    pending_row,
    phase,
    status_of,
)
from zsp_operator.core import constants as c
from zsp_operator.core.admission import userinfo
from zsp_operator.core.models import AccessPolicySpec, Phase, UserInfo
from zsp_operator.kube import Forbidden, Kube, KubeError
from zsp_operator.kube.resources import ACCESS_POLICIES, ACCESS_REQUESTS, EVENTS, SECRETS, TASK_GRANTS
from zsp_operator.observe.chain import chain_from

Body = dict[str, Any]


def register(subparsers: Any) -> None:
    _register_list(subparsers)
    _register_describe(subparsers)
    _register_token(subparsers)


def _register_list(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list AccessRequests (--pending: those waiting for your approval)",
        description=(
            "List AccessRequests like `kubectl get`: name, phase, grantee, permission, time left on a "
            "live grant, age. --pending lists only the requests waiting for your approval."
        ),
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these requests")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    parser.add_argument(
        "--pending",
        action="store_true",
        help="only Pending requests you may approve and have not decided yet (never your own, "
        "unless the policy allows self-approval)",
    )
    parser.add_argument("-o", "--output", choices=("wide", "json", "yaml", "name"), help="output format")
    add_cluster_flags(parser)
    parser.set_defaults(func=run_list)


def _register_describe(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "describe",
        help="the whole story of one AccessRequest",
        description=(
            "Show one AccessRequest in full: what was asked, the decision, approvals, the grant and the "
            "objects it created, conditions, a timeline from its status and Events, and the Events."
        ),
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "-o",
        "--output",
        choices=("json", "yaml"),
        help="the request, its TaskGrant, chain and Events as data",
    )
    add_cluster_flags(parser)
    parser.set_defaults(func=run_describe)


def _register_token(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "token",
        help="print (or write) the kubeconfig delivered for an ephemeral grant",
        description=(
            "Read the kubeconfig the operator delivered for an Active ephemeral AccessRequest from its "
            "delivery Secret, and print it, or write it to a file readable by you alone (mode 0600)."
        ),
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the kubeconfig here instead of stdout")
    add_cluster_flags(parser)
    parser.set_defaults(func=run_token)


# --- zsp list ---------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    if args.names and args.all_namespaces:
        return fail("a request cannot be named across all namespaces: drop -A, or the names")
    if args.names and args.pending:
        return fail("--pending lists what waits for you; it takes no names")

    async def verb(kube: Kube, target: Target) -> int:
        namespace = None if args.all_namespaces else target.namespace
        missing: list[str] = []
        if args.names:
            items = []
            for name in args.names:
                body = await kube.get(ACCESS_REQUESTS, name, target.namespace)
                if body is None:
                    missing.append(name)
                else:
                    items.append(body)
        else:
            items = await kube.list(ACCESS_REQUESTS, namespace)
        items.sort(key=lambda b: (b["metadata"].get("namespace", ""), b["metadata"]["name"]))
        policies: dict[str, AccessPolicySpec | None] = {}
        if args.pending:
            caller = userinfo(await kube.whoami())  # as the API server authenticates us
            items = [b for b in items if await _awaits(kube, b, caller, policies)]
        _print_list(items, args, target, policies)
        for name in missing:
            fail(not_found(name, target.namespace).args[0])
        return EXIT_ERROR if missing else EXIT_OK

    return run_verb(args, verb)


async def _awaits(
    kube: Kube, body: Body, caller: UserInfo, policies: dict[str, AccessPolicySpec | None]
) -> bool:
    if phase(body) is not Phase.PENDING:
        return False
    name = status_of(body).policy
    if not name:
        return False  # not decided yet: no policy has said who approves
    if name not in policies:
        policies[name] = await _policy(kube, name, strict=True)
    return awaits_approval_of(body, policies[name], caller)


async def _policy(kube: Kube, name: str, *, strict: bool) -> AccessPolicySpec | None:
    """The policy's spec; None if it is gone, unreadable (strict: an error) or invalid."""
    try:
        body = await kube.get(ACCESS_POLICIES, name)
    except Forbidden as err:
        if strict:
            raise CliError(f"cannot read AccessPolicy {name} to see who may approve: {err.message}") from err
        return None
    if body is None:
        return None
    try:
        return AccessPolicySpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None


def _print_list(
    items: list[Body], args: argparse.Namespace, target: Target, policies: dict[str, AccessPolicySpec | None]
) -> None:
    if args.output in ("json", "yaml"):
        single = len(args.names) == 1 and len(items) == 1
        print(dump(items[0] if single else as_list(items), args.output))
        return
    if args.output == "name":
        for line in names(items):
            print(line)
        return
    if not items:
        if not args.names:
            where = "any namespace" if args.all_namespaces else f'namespace "{target.namespace}"'
            what = "No AccessRequests await your approval" if args.pending else "No AccessRequests found"
            note(f"{what} in {where}.")
        return
    now = datetime.now(UTC)
    across = bool(args.all_namespaces)
    if args.pending:
        rows = [pending_row(b, policies.get(status_of(b).policy or ""), now, namespace=across) for b in items]
        print(table(pending_headers(namespace=across), rows))
        return
    wide = args.output == "wide"
    rows = [list_row(b, now, wide=wide, namespace=across) for b in items]
    print(table(list_headers(wide=wide, namespace=across), rows))


# --- zsp describe -----------------------------------------------------------------------------


def run_describe(args: argparse.Namespace) -> int:
    async def verb(kube: Kube, target: Target) -> int:
        namespace, name = target.namespace, args.name
        body = await kube.get(ACCESS_REQUESTS, name, namespace)
        if body is None:
            raise not_found(name, namespace)
        status = status_of(body)
        grant = None
        if status.grant is not None:
            with contextlib.suppress(Forbidden):
                grant = await kube.get(TASK_GRANTS, status.grant.name, namespace)
            if grant is not None and grant["metadata"].get("uid") != status.grant.uid:
                grant = None  # a same-named grant of another request
        # The operator posts Events on the request and on its TaskGrant (which may be gone).
        uids = [body["metadata"].get("uid", ""), *([status.grant.uid] if status.grant else [])]
        events: list[Body] | None = None
        events_error = None
        try:
            found: list[Body] = []
            for uid in filter(None, uids):
                found += await kube.list(EVENTS, namespace, field_selector=f"involvedObject.uid={uid}")
            events = found
        except KubeError as err:
            # Describing must not fail because one part is unreadable: say so in its place.
            events_error = api_error_message(err, kube.connection.server)
        policy_name = status.policy or (body.get("spec") or {}).get("policy")
        policy = await _policy(kube, policy_name, strict=False) if policy_name else None
        if args.output in ("json", "yaml"):
            story = {
                "request": body,
                "taskGrant": grant,
                "chain": [step.to_dict() for step in chain_from(body, events or [])],
                "events": events,
            }
            print(dump(story, args.output))
            return EXIT_OK
        now = datetime.now(UTC)
        print(render(body, events=events, grant=grant, policy=policy, now=now, events_error=events_error))
        return EXIT_OK

    return run_verb(args, verb)


# --- zsp token --------------------------------------------------------------------------------


def delivery_of(body: Body) -> tuple[str, str]:
    """(namespace, Secret name) holding the request's kubeconfig, or CliError saying why none."""
    meta, spec = body["metadata"], body.get("spec") or {}
    name, namespace = meta["name"], meta.get("namespace", "")
    account = (spec.get("grantee") or {}).get("serviceAccount")
    if account:
        who = f"{account.get('namespace')}/{account.get('name')}"
        raise CliError(
            f'accessrequest "{name}" binds ServiceAccount {who} (bind mode): no kubeconfig is delivered; '
            "that ServiceAccount acts with its own credentials"
        )
    current = phase(body)
    if current is not Phase.ACTIVE:
        raise CliError(
            f'accessrequest "{name}" in namespace "{namespace}" is {current.value}, not Active: no live kubeconfig'
        )
    delivery = spec.get("delivery")
    if not delivery:
        raise CliError(
            f'accessrequest "{name}" has no spec.delivery: its kubeconfig was not written to a Secret'
        )
    return str(delivery["namespace"]), str(delivery["secretName"])


def kubeconfig_from_secret(secret: Body, where: str) -> bytes:
    encoded = (secret.get("data") or {}).get(c.DELIVERY_KEY)
    if not encoded:
        raise CliError(f"Secret {where} holds no {c.DELIVERY_KEY!r} key yet")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise CliError(f"Secret {where}: key {c.DELIVERY_KEY!r} is not base64") from err


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner alone, replacing it whole or not at all."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def run_token(args: argparse.Namespace) -> int:
    async def verb(kube: Kube, target: Target) -> int:
        body = await kube.get(ACCESS_REQUESTS, args.name, target.namespace)
        if body is None:
            raise not_found(args.name, target.namespace)
        namespace, secret_name = delivery_of(body)
        where = f"{namespace}/{secret_name}"
        secret = await kube.get(SECRETS, secret_name, namespace)
        if secret is None:
            raise CliError(f"delivery Secret {where} of accessrequest {args.name!r} does not exist")
        data = kubeconfig_from_secret(secret, where)
        if not args.output or args.output == "-":
            sys.stdout.write(data.decode("utf-8", errors="replace"))
            sys.stdout.flush()
            return EXIT_OK
        path = Path(args.output)
        try:
            write_private(path, data)
        except OSError as err:
            raise CliError(f"cannot write {path}: {err.strerror or err}") from err
        status = status_of(body)
        left = until(status.expires_at, datetime.now(UTC))
        who = (
            f" (ServiceAccount {status.identity.namespace}/{status.identity.name})" if status.identity else ""
        )
        print(f"kubeconfig of {object_name(args.name)}{who} written to {path} (mode 0600); expires in {left}")
        return EXIT_OK

    return run_verb(args, verb)
