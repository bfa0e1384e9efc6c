"""AccessPolicy conditions: CEL expressions decided at request time and re-checked while live. No I/O.

CEL runs on cel-expr-python, the CEL project's own runtime (bench/cel_libraries.py and
bench/RESULTS.md compare it with the other runtimes on PyPI). It type-checks an expression
against the variables below when it is compiled, so a policy is refused at admission with
the position of its mistake, and its evaluation cannot stall the operator: regular
expressions are RE2 (linear time) and a comprehension stops at the runtime's iteration
budget. An expression is compiled once per distinct text, never per request.

`namespace` is a reserved word in CEL, so the target namespace is `namespaceObject`, as in
Kubernetes' own admission CEL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cel_expr_python import cel

_T = cel.Type
# The variables every condition sees, and their CEL types.
VARIABLES: Mapping[str, cel.Type] = {
    "request": _T.Map(_T.STRING, _T.DYN),  # the AccessRequest: metadata and spec
    "requester": _T.Map(_T.STRING, _T.DYN),  # who filed it, as authenticated: username, uid, groups
    "namespaceObject": _T.Map(_T.STRING, _T.DYN),  # the target namespace: metadata.name, .labels
    "grantee": _T.Map(_T.STRING, _T.DYN),  # the ServiceAccount object, or {"ephemeral": true}
    "task": _T.DYN,  # the object spec.taskRef names, or null
    "now": _T.TIMESTAMP,
    "activeGrants": _T.Map(_T.STRING, _T.INT),  # live grants of this grantee, requester, policy
}
_ENV = cel.NewEnv(variables=VARIABLES)
# `<input>:1:5: message` in the runtime's error text, with the source and a caret after it.
_ERROR = re.compile(r"<input>:(\d+):(\d+): ([^\n]*)")
_STRINGS = re.compile(r"""'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*\"""", re.S)
# Time-dependent conditions are re-checked at the next minute boundary they could change
# at, found by evaluating ahead; the exact second by halving within that minute.
_STEP = timedelta(minutes=1)
_MAX_STEPS = 24 * 60


class ConditionError(ValueError):
    """A condition that does not compile, or does not evaluate to a bool; says where and why."""


@functools.lru_cache(maxsize=4096)
def compile_condition(expression: str) -> cel.Expression:
    """The compiled, type-checked expression; raises ConditionError naming line and column."""
    try:
        compiled = _ENV.compile(expression)
    except RuntimeError as err:
        raise ConditionError(_describe(str(err))) from None
    result = compiled.return_type()
    if result != _T.BOOL and result != _T.DYN:
        raise ConditionError(
            f"evaluates to {result.name().lower()}, not a bool: a condition must be true or false"
        )
    return compiled


def _describe(error: str) -> str:
    found = _ERROR.search(error)
    if found is None:
        return error.strip().splitlines()[0] if error.strip() else "does not compile"
    line, column, message = found.groups()
    for proto, name in (("google.protobuf.Timestamp", "timestamp"), ("google.protobuf.Duration", "duration")):
        message = message.replace(proto, name)
    return f"at line {line}, column {column}: {message.strip()}"


@functools.lru_cache(maxsize=4096)
def references(expression: str, variable: str) -> bool:
    """Whether the expression names `variable` outside its string literals."""
    code = _STRINGS.sub('""', expression)
    return re.search(rf"(?<![\w.]){re.escape(variable)}\b", code) is not None


@dataclass(frozen=True)
class Inputs:
    """What conditions see, as plain data (JSON-shaped objects, an aware `now`)."""

    request: Mapping[str, Any]
    requester: Mapping[str, Any]
    namespace: Mapping[str, Any]
    grantee: Mapping[str, Any]
    task: Mapping[str, Any] | None
    now: datetime
    active_grants: Mapping[str, int]

    def data(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "request": self.request,
            "requester": self.requester,
            "namespaceObject": self.namespace,
            "grantee": self.grantee,
            "task": self.task,
            "now": now or self.now,
            "activeGrants": self.active_grants,
        }


@dataclass(frozen=True)
class Unmet:
    """The first condition that does not hold: its name, and its message (or the error)."""

    name: str
    index: int
    message: str


class _Condition(Protocol):
    """What a condition is to this module: a name, an expression, and the message if it fails."""

    @property
    def name(self) -> str: ...
    @property
    def expression(self) -> str: ...
    @property
    def message(self) -> str | None: ...


def first_unmet(
    conditions: Sequence[_Condition], inputs: Inputs, now: datetime | None = None
) -> Unmet | None:
    """The first condition, in order, that is not true at `now` (default: `inputs.now`).

    An evaluation error (a missing key, a type the data did not have) is a condition not
    met: access is only ever given on a plain `true`.
    """
    activation = _ENV.Activation(inputs.data(now))  # converted once for all the conditions
    for index, condition in enumerate(conditions):
        try:
            value = compile_condition(condition.expression).eval(activation)
        except (ConditionError, RuntimeError) as err:
            return Unmet(condition.name, index, f"could not be evaluated: {_describe(str(err))}")
        if value.type() == _T.ERROR:
            return Unmet(condition.name, index, f"could not be evaluated: {value.value()}")
        if value.value() is not True:
            return Unmet(condition.name, index, condition.message or f"condition {condition.name} is not met")
    return None


def next_change(conditions: Sequence[_Condition], inputs: Inputs, until: datetime) -> datetime | None:
    """The first moment after `inputs.now`, up to `until`, at which a condition stops holding.

    Only conditions that read `now` can change with time alone; None when none of them does
    before `until` (the grant ends first) or none reads the clock.
    """
    timed = [c for c in conditions if references(c.expression, "now")]
    if not timed:
        return None
    start = inputs.now
    earlier = start
    for step in range(1, _MAX_STEPS + 1):
        at = min(_minute_floor(start) + step * _STEP, until)
        if first_unmet(timed, inputs, at) is not None:
            return _bisect(timed, inputs, earlier, at)
        if at >= until:
            return None
        earlier = at
    return until  # further than a day: look again then


def _minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _bisect(conditions: Sequence[_Condition], inputs: Inputs, holds: datetime, fails: datetime) -> datetime:
    """The first whole second in (holds, fails] at which a condition fails."""
    while (fails - holds) > timedelta(seconds=1):
        middle = holds + (fails - holds) / 2
        middle = middle.replace(microsecond=0)
        if middle <= holds:
            break
        if first_unmet(conditions, inputs, middle) is None:
            holds = middle
        else:
            fails = middle
    return fails
