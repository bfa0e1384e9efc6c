"""`zsp request` (file an AccessRequest from flags, optionally wait for its outcome) and
`zsp done` (end a grant early by setting `spec.done: true`).

Exit status: 0 granted (or done); 1 not granted (Denied, TimedOut, Failed) or no outcome
before `--wait` ran out; 2 bad flags or an API error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from zsp_operator.cli.cluster import (
    EXIT_NOT_GRANTED,
    EXIT_OK,
    CliError,
    Target,
    add_cluster_flags,
    fail,
    not_found,
    note,
    resolve_target,
    run_verb,
)
from zsp_operator.cli.manifest import BadFlags, RequestFlags, build_request, resolve_dry_run, resolve_wait
from zsp_operator.cli.output import dump, object_name
from zsp_operator.cli.summary import (
    NOT_GRANTED_PHASES,
    is_outcome,
    outcome_line,
    phase,
    waiting_for,
)
from zsp_operator.core.durations import format_duration
from zsp_operator.core.models import TERMINAL_PHASES
from zsp_operator.kube import Forbidden, Gone, Kube
from zsp_operator.kube.resources import ACCESS_REQUESTS

Body = dict[str, Any]
_POLL_SECONDS = 1.0  # only when the caller may not watch


def register(subparsers: Any) -> None:
    _register_request(subparsers)
    _register_done(subparsers)


def _register_request(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "request",
        help="file an AccessRequest (and wait for its outcome)",
        description=(
            "Build an AccessRequest from flags and create it in the namespace where access is wanted. "
            "With --wait, follow it until it is granted (Active) or refused, and print the outcome. "
            "Exit 0 granted, 1 not granted (Denied, TimedOut, Failed, or still waiting when --wait "
            "ran out), 2 bad input or API error."
        ),
        epilog=(
            "examples:\n"
            "  zsp request deploy-4711 -n payments-staging --grantee-sa ci/deployer --permission deploy \\\n"
            "      --ttl 10m --reason 'deploy build 4711' --task job/deploy-4711.ci --wait\n"
            "  zsp request --generate-name --ephemeral --delivery ci/agent-kubeconfig \\\n"
            "      --rule 'verbs=get,list;groups=apps;resources=deployments' --reason 'triage incident 42'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="name of the AccessRequest")
    parser.add_argument(
        "--generate-name",
        nargs="?",
        const="",
        metavar="PREFIX",
        help="let the API server name it PREFIX<random> (default prefix: PERMISSION-)",
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--grantee-sa", metavar="NS/NAME", help="the existing ServiceAccount to receive it")
    who.add_argument("--ephemeral", action="store_true", help="mint a ServiceAccount for this grant alone")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--permission", metavar="NAME", help="a permission set the policy names")
    what.add_argument(
        "--rule",
        dest="rules",
        action="append",
        metavar="verbs=..;groups=..;resources=..",
        help="explicit rule (repeatable); keys verbs, groups, resources, names, urls; values comma-separated",
    )
    parser.add_argument("--ttl", metavar="DURATION", help="how long, e.g. 10m (default: the policy's)")
    parser.add_argument("--reason", required=True, help="why the access is needed (the audit record)")
    parser.add_argument("--policy", metavar="NAME", help="the AccessPolicy to ask (default: any that allows)")
    task = parser.add_mutually_exclusive_group()
    task.add_argument(
        "--task", metavar="KIND/NAME[.NS]", help="job/NAME or pod/NAME whose end ends the grant"
    )
    task.add_argument("--task-ref", metavar="API,KIND,NS,NAME", help="any object whose end ends the grant")
    parser.add_argument(
        "--delivery", metavar="NS/SECRET", help="with --ephemeral: Secret to write the kubeconfig to"
    )
    parser.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        metavar="client|server",
        help="client: print the manifest; server: let the API server and webhooks check it, store nothing",
    )
    parser.add_argument(
        "--wait",
        nargs="?",
        const="",
        metavar="TIMEOUT",
        help="wait until granted or refused (default 5m; 0 waits without limit); write --wait=TIMEOUT",
    )
    parser.add_argument("-o", "--output", choices=("json", "yaml", "name"), help="print the object this way")
    add_cluster_flags(parser)
    parser.set_defaults(func=run_request)


def _register_done(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "done",
        help="end a grant now (spec.done: true)",
        description="Mark an AccessRequest done: the operator revokes its grant at once.",
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--wait",
        nargs="?",
        const="",
        metavar="TIMEOUT",
        help="wait until the request has ended (default 5m); write --wait=TIMEOUT",
    )
    add_cluster_flags(parser)
    parser.set_defaults(func=run_done)


# --- zsp request ------------------------------------------------------------------------------


def _flags(args: argparse.Namespace, name: str | None) -> RequestFlags:
    return RequestFlags(
        reason=args.reason,
        name=name,
        generate_name=args.generate_name,
        grantee_sa=args.grantee_sa,
        ephemeral=args.ephemeral,
        permission=args.permission,
        rules=tuple(args.rules or ()),
        ttl=args.ttl,
        policy=args.policy,
        task=args.task,
        task_ref=args.task_ref,
        delivery=args.delivery,
    )


def _namespace_for_client_dry_run(args: argparse.Namespace) -> str:
    # A client dry run needs no cluster; it still takes the context's namespace when there is one.
    try:
        return resolve_target(args).namespace
    except CliError:
        return str(args.namespace or "default")


def run_request(args: argparse.Namespace) -> int:
    try:
        dry_run, name = resolve_dry_run(args.dry_run, args.name)
        timeout, name = resolve_wait(args.wait, name)
        if timeout is not None and dry_run:
            raise BadFlags(["--wait cannot be combined with --dry-run: nothing is created to wait for"])
        if dry_run == "client":
            manifest = build_request(_flags(args, name), _namespace_for_client_dry_run(args))
            print(_printed(manifest, args.output or "yaml", "(dry run)"))
            return EXIT_OK
        flags = _flags(args, name)
        build_request(flags, "default")  # every flag problem before any connection is made
    except BadFlags as err:
        return fail(str(err))

    async def verb(kube: Kube, target: Target) -> int:
        manifest = build_request(flags, target.namespace)
        created = await kube.create(ACCESS_REQUESTS, manifest, dry_run=dry_run == "server")
        if dry_run == "server":
            print(_printed(created, args.output, "created (server dry run)"))
            return EXIT_OK
        if timeout is None:
            print(_printed(created, args.output, "created"))
            return EXIT_OK
        if args.output is None:
            print(_printed(created, None, "created"))
        return await _wait_and_report(kube, created, timeout, args.output)

    return run_verb(args, verb)


def _printed(body: Body, output: str | None, verb: str) -> str:
    name = object_name(
        body["metadata"].get("name") or body["metadata"].get("generateName", "") + "<generated>"
    )
    if output in ("json", "yaml"):
        return dump(body, output)
    if output == "name":
        return name
    return f"{name} {verb}"


async def _wait_and_report(kube: Kube, created: Body, limit: timedelta, output: str | None) -> int:
    meta = created["metadata"]
    final = await wait_for(kube, meta["namespace"], meta["name"], limit, stop=is_outcome)
    if final is None:
        current = await _get_or_fail(kube, meta["namespace"], meta["name"])
        print(
            f"zsp: no outcome after {format_duration(limit)}: {object_name(meta['name'])} is still "
            f"{phase(current).value}: {waiting_for(current)}",
            file=sys.stderr,
        )
        return EXIT_NOT_GRANTED
    if output in ("json", "yaml"):
        print(dump(final, output))
    elif output == "name":
        print(object_name(meta["name"]))
    else:
        print(outcome_line(final, datetime.now(UTC)))
    return EXIT_NOT_GRANTED if phase(final) in NOT_GRANTED_PHASES else EXIT_OK


# --- waiting ----------------------------------------------------------------------------------


async def _get_or_fail(kube: Kube, namespace: str, name: str) -> Body:
    body = await kube.get(ACCESS_REQUESTS, name, namespace)
    if body is None:
        raise not_found(name, namespace)
    return body


class _Progress:
    """Tell a waiting person about each new phase or reason, once, on stderr."""

    def __init__(self) -> None:
        self.last: str | None = None

    def __call__(self, body: Body) -> None:
        if is_outcome(body):
            return  # the outcome itself is printed by the verb, on stdout
        line = f"{object_name(body['metadata']['name'])} {phase(body).value}: {waiting_for(body)}"
        if line != self.last:
            self.last = line
            note(line)


async def wait_for(
    kube: Kube,
    namespace: str,
    name: str,
    limit: timedelta,
    *,
    stop: Callable[[Body], bool],
) -> Body | None:
    """The request once `stop(body)` holds; None if `limit` (zero: none) ran out first."""
    seconds = limit.total_seconds() or None
    try:
        async with asyncio.timeout(seconds):
            return await _follow(kube, namespace, name, stop, _Progress())
    except TimeoutError:
        return None


async def _follow(
    kube: Kube, namespace: str, name: str, stop: Callable[[Body], bool], progress: _Progress
) -> Body:
    can_watch = True
    while True:
        body = await _get_or_fail(kube, namespace, name)
        progress(body)
        if stop(body):
            return body
        if not can_watch:
            await asyncio.sleep(_POLL_SECONDS)
            continue
        version = body["metadata"].get("resourceVersion")
        try:
            async for kind, obj in kube.watch(
                ACCESS_REQUESTS,
                namespace,
                field_selector=f"metadata.name={name}",
                resource_version=version,
                timeout_seconds=60,
            ):
                if kind == "DELETED":
                    raise CliError(
                        f'accessrequest "{name}" was deleted in namespace "{namespace}" while waiting'
                    )
                if kind in ("ADDED", "MODIFIED"):
                    progress(obj)
                    if stop(obj):
                        return dict(obj)
        except Gone:
            continue  # the version is too old: read the object again and watch from there
        except Forbidden:
            can_watch = False  # may get but not watch: poll instead


# --- zsp done ---------------------------------------------------------------------------------


def run_done(args: argparse.Namespace) -> int:
    try:
        timeout, _ = resolve_wait(args.wait, args.name)
    except BadFlags as err:
        return fail(str(err))

    async def verb(kube: Kube, target: Target) -> int:
        namespace, name = target.namespace, args.name
        body = await _get_or_fail(kube, namespace, name)
        current = phase(body)
        if current in TERMINAL_PHASES:
            print(f"{object_name(name)} is already {current.value}: nothing to end")
            return EXIT_OK
        await kube.patch(ACCESS_REQUESTS, name, {"spec": {"done": True}}, namespace)
        print(f"{object_name(name)} marked done")
        if timeout is None:
            return EXIT_OK
        final = await wait_for(kube, namespace, name, timeout, stop=lambda b: is_outcome(b, terminal=True))
        if final is None:
            note(f"zsp: {object_name(name)} has not ended after {format_duration(timeout)}")
            return EXIT_NOT_GRANTED
        print(outcome_line(final, datetime.now(UTC)))
        return EXIT_OK

    return run_verb(args, verb)
