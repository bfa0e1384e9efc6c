"""The `zsp` command line (also `kubectl-zsp` and `python -m zsp_operator`).

Each sub-command lives in its own module under `zsp_operator.cli` and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from zsp_operator import __version__

# Modules that contribute sub-commands, in the order `zsp --help` lists them.
COMMAND_MODULES = (
    "demo",
    "run",
    "check",
    "crds",
    "sim",
    "verbs_request",
    "verbs_approve",
    "verbs_read",
    "standing_report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zsp",
        description="Zero standing privilege for non-human identities on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"zsp-operator {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"zsp_operator.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
