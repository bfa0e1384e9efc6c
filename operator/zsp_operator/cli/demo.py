"""`zsp demo`: the story of one grant, from request to nothing left, on the in-memory API server."""

from __future__ import annotations

import argparse
import logging
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="play the whole story on the built-in in-memory API server (no cluster needed)",
        description=(
            "Start the in-memory API server, run the operator against it, apply examples/, and "
            "print the timeline: request, decision, issuance, the grant working, its end, the "
            "identity refused, nothing left. Exits 0 only if every step behaved."
        ),
    )
    parser.add_argument(
        "--kubeconfig",
        help="play the same story on this cluster instead (a local control plane: the webhooks listen on 127.0.0.1)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the operator's own log")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The timeline is the output; the operator's log only on request.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL)
    from zsp_operator.tools.demo import run_demo  # kopf and the server load only for this command

    return run_demo(args.kubeconfig, sys.stdout)
