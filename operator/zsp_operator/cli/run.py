"""`zsp run`: the operator itself (controllers, webhooks, metrics)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from zsp_operator.core.errors import describe
from zsp_operator.settings import Settings

# Flags mirror Settings; each is also ZSP_<NAME> in the environment.
_FLAGS: tuple[tuple[str, dict[str, object]], ...] = (
    ("kubeconfig", {}),
    ("context", {}),
    ("namespaces", {"metavar": "NS[,NS...]"}),
    ("metrics_port", {"type": int}),
    ("health_port", {"type": int}),
    ("webhook_port", {"type": int}),
    ("webhook_cert_dir", {}),
    ("webhook_service", {"metavar": "NAMESPACE/NAME"}),
    ("webhook_secret", {}),
    ("webhook_configuration", {}),
    ("webhook_cert_refresh", {"metavar": "DURATION"}),
    ("catalog", {"metavar": "CLUSTERROLE[,...]"}),
    ("break_glass_max_ttl", {"metavar": "DURATION"}),
    ("token_seconds", {"type": int}),
    ("delivery_server", {"metavar": "URL"}),
    ("sweep_mode", {"choices": ["audit", "enforce"]}),
    ("sweep_allowlist", {"metavar": "NS/NAME[,...]"}),
    ("resync", {"metavar": "DURATION"}),
    ("revoke_concurrency", {"type": int}),
    ("audit_file", {"metavar": "FILE"}),
    ("lease_namespace", {}),
    ("lease_name", {}),
    ("lease_duration", {"metavar": "DURATION"}),
    ("renew_deadline", {"metavar": "DURATION"}),
    ("retry_period", {"metavar": "DURATION"}),
)
_SWITCHES = ("dev", "enforce_cluster_bindings", "leader_elect")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lines = [
        f"  --{name.replace('_', '-'):<26} ZSP_{name.upper():<26} {field.description}"
        for name, field in Settings.model_fields.items()
    ]
    parser = subparsers.add_parser(
        "run",
        help="run the operator",
        description="Run the operator against the current kubeconfig or in-cluster config.",
        epilog="settings (flag, environment variable, meaning):\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-n", "--namespace", dest="namespaces", help="limit to these namespaces (comma-separated)"
    )
    for name, extra in _FLAGS:
        if name != "namespaces":
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, **extra)  # type: ignore[arg-type]
    for name in _SWITCHES:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_true", default=None)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf says "Handler ... succeeded" for every watch event of every object: at ten
        # thousand grants that is most of the log and a visible share of the CPU.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    given = {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None
    }
    try:
        settings = Settings(**given)
    except ValidationError as err:
        for message in describe(err, "zsp run"):
            print(message)
        return 2
    from zsp_operator.process.leader import LeadershipLost
    from zsp_operator.process.runner import run_operator  # kopf is heavy: only `run` pays for it

    try:
        asyncio.run(run_operator(settings))
    except LeadershipLost as err:
        # Exiting is the safe way down: the pod restarts and stands by for the Lease.
        print(f"zsp run: stepped down as leader: {err}", file=sys.stderr)
        return 1
    return 0
