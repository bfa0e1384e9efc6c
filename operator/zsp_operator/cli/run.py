"""`zsp run`: the operator itself (controllers, webhooks, metrics).

Its flags are made from the fields of `Settings`, so a new setting is a flag, and a `ZSP_*`
variable, with nothing else to edit: `--kebab-case` of the name, the description as help
with the variable and the default, a switch for a bool, choices for an Enum or a Literal.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import types
from datetime import timedelta
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from zsp_operator.core.errors import describe
from zsp_operator.settings import Settings

# kubectl's spelling, for the one setting that has one.
_SPELLINGS: dict[str, tuple[str, ...]] = {"namespaces": ("-n", "--namespace")}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the operator",
        description="Run the operator against the current kubeconfig or in-cluster config. "
        "Every setting is a flag and a ZSP_* environment variable; a flag wins.",
    )
    add_settings_flags(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(func=run)


def add_settings_flags(parser: argparse.ArgumentParser, model: type[BaseModel] = Settings) -> None:
    """One flag per field of `model`; a flag not given stays None, so the environment or
    the field's default applies."""
    prefix = str(model.model_config.get("env_prefix") or "")
    defaults = model.model_construct().model_dump(mode="json")  # as the environment spells them
    for name, field in model.model_fields.items():
        flags = _SPELLINGS.get(name, (f"--{name.replace('_', '-')}",))
        variable = f"{prefix}{name}".upper()
        parser.add_argument(
            *flags, dest=name, default=None, help=_help(field, variable, defaults.get(name)), **_reading(field)
        )


def flags_given(args: argparse.Namespace, model: type[BaseModel] = Settings) -> dict[str, Any]:
    """The settings given as flags; they win over the environment, which fills in the rest."""
    return {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}


def _help(field: FieldInfo, variable: str, default: object) -> str:
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    if isinstance(shown, bool):
        shown = "on" if shown else "off"
    where = f"{variable}; default {shown}" if shown not in (None, "") else variable
    return f"{field.description or ''} ({where})".strip().replace("%", "%%")


def _reading(field: FieldInfo) -> dict[str, Any]:
    """How argparse reads the value: a switch, a choice, a number, or text for pydantic."""
    kind = _without_none(field.annotation)
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    named = {"metavar": extra["metavar"]} if "metavar" in extra else {}
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if isinstance(kind, type) and issubclass(kind, Enum):
        return {"choices": [member.value for member in kind]}
    if get_origin(kind) is Literal:
        values = get_args(kind)
        return {"choices": list(values), "type": type(values[0])}
    if kind is int:
        return {"type": int, "metavar": "N", **named}
    if kind is timedelta:
        return {"metavar": "DURATION", **named}
    if get_origin(kind) is list:
        return {"metavar": "VALUE[,...]", **named}
    return named


def _without_none(annotation: Any) -> Any:
    """`X | None` is read as X: leaving the flag out is how it stays None."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf says "Handler ... succeeded" for every watch event of every object: at ten
        # thousand grants that is most of the log and a visible share of the CPU.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        settings = Settings(**flags_given(args))
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
