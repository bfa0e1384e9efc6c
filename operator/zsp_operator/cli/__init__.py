"""The `zsp` command line (also `kubectl-zsp` and `python -m zsp_operator`).

Each sub-command lives in a module under `zsp_operator.cli` that exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`.
Modules are imported only when their command runs: `zsp --help` lists the
commands from `COMMANDS`, and `zsp run` never loads the in-memory API server
behind `zsp sim` and `zsp demo`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from zsp_operator import __version__


class Command(NamedTuple):
    name: str
    module: str  # under zsp_operator.cli
    summary: str  # the one line of `zsp --help`; the module's own help must match it


# In the order `zsp --help` lists them.
COMMANDS = (
    Command("demo", "demo", "play the whole story on the built-in in-memory API server (no cluster needed)"),
    Command("run", "run", "run the operator"),
    Command("check", "check", "decide an AccessRequest offline against AccessPolicy files"),
    Command("crds", "crds", "print, write or check the CRD manifests generated from the models"),
    Command("sim", "sim", "run the in-memory Kubernetes API server (for tests and demos)"),
    Command("request", "verbs_request", "file an AccessRequest (and wait for its outcome)"),
    Command("done", "verbs_request", "end a grant now (spec.done: true)"),
    Command(
        "approve",
        "verbs_approve",
        "approve a Pending AccessRequest (as yourself, as the API server authenticates you)",
    ),
    Command("deny", "verbs_approve", "deny a Pending AccessRequest; one eligible denial ends it"),
    Command("list", "verbs_read", "list AccessRequests (--pending: those waiting for your approval)"),
    Command("describe", "verbs_read", "the whole story of one AccessRequest"),
    Command("token", "verbs_read", "print (or write) the kubeconfig delivered for an ephemeral grant"),
    Command(
        "audit",
        "standing_report",
        "report standing privilege: who can do what without a live grant (read-only)",
    ),
    Command("advise", "advise", "propose a smaller AccessPolicy from what its grants actually used"),
    Command(
        "version", "version", "print the version, the git commit when known, and the API versions served"
    ),
)


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    _SubParsers = argparse._SubParsersAction


class _LazySubParsers(_SubParsers):
    """Sub-parsers that start as placeholders and import their module once chosen."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        # argparse has already checked values[0] against the choices, so it is in the table.
        self.load(values[0])
        super().__call__(parser, namespace, values, option_string)

    def load(self, name: str) -> argparse.ArgumentParser:
        """Replace the placeholder of `name` (and its module's siblings) by the real parsers."""
        placeholder = self._name_parser_map[name]
        module = getattr(placeholder, "zsp_module", None)
        if module is None:
            return placeholder
        real = _SubParsers(option_strings=[], prog=self._prog_prefix, parser_class=self._parser_class)
        importlib.import_module(f"zsp_operator.cli.{module}").register(real)
        # Assigning to existing keys keeps the order `zsp --help` and argparse errors list.
        self._name_parser_map.update(real._name_parser_map)
        return self._name_parser_map[name]


def build_parser() -> argparse.ArgumentParser:
    """The `zsp` parser; a command's module is imported when parsing reaches that command."""
    parser = argparse.ArgumentParser(
        prog="zsp",
        description="Zero standing privilege for non-human identities on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"zsp-operator {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", action=_LazySubParsers)
    for command in COMMANDS:
        placeholder = subparsers.add_parser(command.name, help=command.summary)
        placeholder.zsp_module = command.module  # type: ignore[attr-defined]
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
