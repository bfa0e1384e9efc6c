"""Three CEL implementations from PyPI, measured for the AccessPolicy's `conditions`.

- `cel-expr-python` (import `cel_expr_python.cel`): the CEL project's C++ runtime, with its type
  checker;
- `common-expression-language` (import `cel`): a runtime written in Rust;
- `cel-python` (import `celpy`): pure Python, what the in-memory API server uses for CRD rules.

Three measurements:

1. Conformance: the CEL specification's own test cases (google/cel-spec,
   `tests/simple/testdata/*.textproto`), read at run time from a checkout or a bare git mirror
   given as `--spec`, and run on each library. Only the cases that apply to how the operator uses
   CEL are run: expressions over JSON-like data (bool, int, uint, double, string, bytes, null,
   list, map, timestamp, duration), the standard macros and functions. Skipped: protobuf
   messages and enums, optionals, unknowns, extension libraries, containers, type values as
   results, check-only cases, cases without macros, and declarations other than primitive, list,
   map, timestamp and duration types. A case passes when the library returns the expected value
   (or fails, at compile or evaluation time, when the spec expects an error). Results are compared
   as Python sees them: int and uint are both Python ints, timestamps and durations are compared
   to the microsecond (Python's datetime resolution).
2. Speed: compile time and time per evaluation (median, p99) of a representative set of
   conditions over Python dicts and a timezone-aware datetime.
3. Safety: whether a library rejects ill-typed conditions at compile time (with a position), and
   whether it stops a runaway evaluation (nested comprehensions).

    python bench/cel_libraries.py --spec /path/to/cel-spec            # the full run
    python bench/cel_libraries.py --spec /path/to/cel-spec --quick    # a smoke test

The Markdown report goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import math
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machine import describe, load

UTC = dt.UTC

# ---------------------------------------------------------------------------------------------
# Reading the spec's test data: a text-format protobuf reader for what the test files use.
# A message is a list of (field name, value) pairs; a scalar is ("str", bytes) or ("word", text).
# ---------------------------------------------------------------------------------------------

Message = list[tuple[str, Any]]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<ext>\[[A-Za-z0-9_./]+\])
  | (?P<word>[-+]?(?:[0-9.]+[eE][-+]?[0-9]+[fF]?|[A-Za-z0-9_.]+))
  | (?P<punct>[{}<>:\[\],;])
    """,
    re.VERBOSE,
)
_SIMPLE_ESCAPES = {
    "a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11,
    "\\": 92, "'": 39, '"': 34, "?": 63,
}  # fmt: skip


def _unescape(body: str) -> bytes:
    """A text-format string literal's bytes: C escapes, octal and hex bytes, \\u and \\U."""
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
        elif nxt in "xX":
            match = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 2 :])
            assert match
            out.append(int(match.group(), 16))
            i += 2 + len(match.group())
        elif nxt in "01234567":
            match = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert match
            out.append(int(match.group(), 8) & 0xFF)
            i += 1 + len(match.group())
        elif nxt in "uU":
            width = 4 if nxt == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode("utf-8", "surrogatepass")
            i += 2 + width
        else:
            raise ValueError(f"unknown escape \\{nxt}")
    return bytes(out)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"cannot read text proto at {text[pos : pos + 40]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
    return tokens


def parse_textproto(text: str) -> Message:
    tokens = _tokens(text)
    pos = 0

    def scalar() -> tuple[str, Any]:
        nonlocal pos
        kind, value = tokens[pos]
        if kind == "str":  # adjacent literals concatenate
            data = b""
            while pos < len(tokens) and tokens[pos][0] == "str":
                data += _unescape(tokens[pos][1][1:-1])
                pos += 1
            return ("str", data)
        if kind != "word":
            raise ValueError(f"expected a value, got {value!r}")
        pos += 1
        return ("word", value)

    def value() -> Any:
        nonlocal pos
        if tokens[pos][1] in ("{", "<"):
            close = "}" if tokens[pos][1] == "{" else ">"
            pos += 1
            return message(close)
        return scalar()

    def message(close: str | None) -> Message:
        nonlocal pos
        fields: Message = []
        while pos < len(tokens) and tokens[pos][1] != close:
            name = tokens[pos][1]
            pos += 1
            if tokens[pos][1] == ":":
                pos += 1
            if tokens[pos][1] == "[":  # a repeated field written as a list
                pos += 1
                while tokens[pos][1] != "]":
                    fields.append((name, value()))
                    if tokens[pos][1] == ",":
                        pos += 1
                pos += 1
            else:
                fields.append((name, value()))
            if pos < len(tokens) and tokens[pos][1] in (",", ";"):
                pos += 1
        pos += 1
        return fields

    return message(None)


def first(msg: Message, name: str) -> Any:
    return next((v for k, v in msg if k == name), None)


def every(msg: Message, name: str) -> list[Any]:
    return [v for k, v in msg if k == name]


def text_of(scalar: Any) -> str:
    kind, raw = scalar
    return raw.decode("utf-8") if kind == "str" else str(raw)


class NotApplicable(Exception):
    """A case outside what the operator's conditions use."""


# A spec value, as one of: ("int"|"uint"|"double"|"string"|"bytes"|"bool"|"null"|"timestamp"|
# "duration", python value), ("list", [values]), ("map", [(key, value)]).
Val = tuple[str, Any]


def _double(word: str) -> float:
    lowered = word.lower().lstrip("+")
    if lowered in ("inf", "infinity"):
        return math.inf
    if lowered in ("-inf", "-infinity"):
        return -math.inf
    if lowered in ("nan", "-nan"):
        return math.nan
    return float(word.rstrip("fF") if "x" not in lowered else float.fromhex(word))


def spec_value(msg: Message) -> Val:
    name, raw = msg[0]
    if name == "null_value":
        return ("null", None)
    if name == "bool_value":
        return ("bool", text_of(raw) == "true")
    if name == "int64_value":
        return ("int", int(text_of(raw), 0))
    if name == "uint64_value":
        return ("uint", int(text_of(raw), 0))
    if name == "double_value":
        return ("double", _double(text_of(raw)))
    if name == "string_value":
        return ("string", raw[1].decode("utf-8", "surrogatepass"))
    if name == "bytes_value":
        return ("bytes", raw[1])
    if name == "list_value":
        return ("list", [spec_value(v) for v in every(raw, "values")])
    if name == "map_value":
        return (
            "map",
            [(spec_value(first(e, "key")), spec_value(first(e, "value"))) for e in every(raw, "entries")],
        )
    if name == "object_value":
        type_url, body = raw[0]
        seconds = int(text_of(first(body, "seconds") or ("word", "0")))
        nanos = int(text_of(first(body, "nanos") or ("word", "0")))
        if type_url == "[type.googleapis.com/google.protobuf.Timestamp]":
            epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
            return ("timestamp", epoch + dt.timedelta(seconds=seconds, microseconds=nanos // 1000))
        if type_url == "[type.googleapis.com/google.protobuf.Duration]":
            return ("duration", dt.timedelta(seconds=seconds, microseconds=int(nanos / 1000)))
        raise NotApplicable("protobuf message value")
    if name == "type_value":
        raise NotApplicable("type value")
    if name == "enum_value":
        raise NotApplicable("enum value")
    raise NotApplicable(f"value {name}")


class Uint(int):
    """A uint for the one library that has a Python type for them (cel-python)."""


def plain(value: Val, uint: type[int] = int) -> Any:
    """The Python value a library receives for a spec value."""
    kind, inner = value
    if kind == "list":
        return [plain(v, uint) for v in inner]
    if kind == "map":
        return {plain(k, uint): plain(v, uint) for k, v in inner}
    if kind == "uint":
        return uint(inner)
    return inner


# ---------------------------------------------------------------------------------------------
# Test cases: which apply.
# ---------------------------------------------------------------------------------------------

SKIPPED_FILES = {
    "proto2": "protobuf messages",
    "proto3": "protobuf messages",
    "proto2_ext": "protobuf extensions",
    "enums": "protobuf enums",
    "wrappers": "protobuf wrapper types",
    "dynamic": "protobuf JSON types: google.protobuf.Value, Struct, Any",
    "optionals": "optional values",
    "unknowns": "partial evaluation",
    "namespace": "containers",
    "type_deduction": "checker's deduced types",
    "macros2": "two-variable comprehensions, an extension",
    "bindings_ext": "extension library",
    "block_ext": "extension library",
    "encoders_ext": "extension library",
    "math_ext": "extension library",
    "network_ext": "extension library",
    "string_ext": "extension library",
}
_PROTO_EXPR = re.compile(
    r"google\.protobuf|TestAllTypes|cel\.expr|GlobalEnum|NestedEnum|\boptional\.|\.\?|\[\?"
    r"|\b[A-Z]\w*\s*\{"
)
# checker types the libraries here can be told about: name -> kind for cel-expr-python
_PRIMITIVES = {"BOOL": "BOOL", "INT64": "INT", "UINT64": "UINT", "DOUBLE": "DOUBLE", "STRING": "STRING",
               "BYTES": "BYTES"}  # fmt: skip
_WELL_KNOWN = {"TIMESTAMP": "TIMESTAMP", "DURATION": "DURATION"}


@dataclass
class Case:
    file: str
    section: str
    name: str
    expr: str
    check: bool
    decls: dict[str, Any]  # variable -> a declared type (see declared_type)
    bindings: dict[str, Val]
    expected: Val | None  # None: an error is expected


def declared_type(type_msg: Message) -> Any:
    """A spec type as a nested tuple: ("INT",), ("LIST", t), ("MAP", k, v), ("DYN",)."""
    name, raw = type_msg[0]
    if name == "primitive" and text_of(raw) in _PRIMITIVES:
        return (_PRIMITIVES[text_of(raw)],)
    if name == "well_known" and text_of(raw) in _WELL_KNOWN:
        return (_WELL_KNOWN[text_of(raw)],)
    if name == "dyn":
        return ("DYN",)
    if name == "null":
        return ("NULL",)
    if name == "list_type":
        return ("LIST", declared_type(first(raw, "elem_type")))
    if name == "map_type":
        return ("MAP", declared_type(first(raw, "key_type")), declared_type(first(raw, "value_type")))
    raise NotApplicable(f"declaration of a {name}")


def read_case(file: str, section: str, test: Message) -> Case:
    expr = text_of(first(test, "expr"))
    for flag, reason in (("check_only", "check only"), ("disable_macros", "without macros")):
        if first(test, flag) and text_of(first(test, flag)) == "true":
            raise NotApplicable(reason)
    if first(test, "container"):
        raise NotApplicable("containers")
    if _PROTO_EXPR.search(expr):
        raise NotApplicable("protobuf message, enum or optional in the expression")
    for result in ("unknown", "any_unknowns"):
        if first(test, result) is not None:
            raise NotApplicable("unknowns")
    decls: dict[str, Any] = {}
    for decl in every(test, "type_env"):
        ident = first(decl, "ident")
        if ident is None:
            raise NotApplicable("function declaration")
        decls[text_of(first(decl, "name"))] = declared_type(first(ident, "type"))
    bindings = {
        text_of(first(b, "key")): spec_value(first(first(b, "value"), "value"))
        for b in every(test, "bindings")
    }
    expected: Val | None
    if first(test, "eval_error") is not None or first(test, "any_eval_errors") is not None:
        expected = None
    elif first(test, "value") is not None:
        expected = spec_value(first(test, "value"))
    elif first(test, "typed_result") is not None:
        expected = spec_value(first(first(test, "typed_result"), "result"))
    else:
        expected = ("bool", True)  # the spec's default result
    disable_check = first(test, "disable_check")
    return Case(
        file, section, text_of(first(test, "name")), expr,
        not (disable_check and text_of(disable_check) == "true"), decls, bindings, expected,
    )  # fmt: skip


class SpecData:
    """tests/simple/testdata of a cel-spec checkout, or of a bare git mirror (read with git show)."""

    def __init__(self, location: Path) -> None:
        self.location = location
        self.bare = not (location / "tests").is_dir()
        if self.bare:
            self.commit = self._git("rev-parse", "HEAD").strip()
        else:
            try:
                self.commit = self._git("rev-parse", "HEAD").strip()
            except (OSError, subprocess.CalledProcessError):
                self.commit = "unknown (not a git checkout)"

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.location), *args], capture_output=True, text=True, check=True
        ).stdout

    def files(self) -> Iterator[tuple[str, str]]:
        folder = "tests/simple/testdata"
        if self.bare:
            names = self._git("ls-tree", "--name-only", f"HEAD:{folder}").split()
        else:
            names = sorted(p.name for p in (self.location / folder).iterdir())
        for name in sorted(names):
            if name.endswith(".textproto"):
                if self.bare:
                    text = self._git("show", f"HEAD:{folder}/{name}")
                else:
                    text = (self.location / folder / name).read_text(encoding="utf-8")
                yield name.removesuffix(".textproto"), text


# ---------------------------------------------------------------------------------------------
# The libraries, behind one small interface.
# ---------------------------------------------------------------------------------------------


class Failed(Exception):
    """The library reported an error (at compile or evaluation time)."""


class Library:
    name = ""
    package = ""

    def compile(self, expr: str, decls: dict[str, Any], check: bool = True) -> Any:
        raise NotImplementedError

    def evaluate(self, program: Any, data: dict[str, Any]) -> Any:
        """The result as plain Python (bool, int, float, str, bytes, None, list, dict, ...)."""
        raise NotImplementedError

    def prepare(self, data: dict[str, Any], decls: dict[str, Any]) -> Any:
        """The activation as the library takes it, from plain Python: built once per request."""
        return data

    def version(self) -> str:
        return importlib.metadata.version(self.package)


class CelExprPython(Library):
    name = "cel-expr-python"
    package = "cel-expr-python"

    def __init__(self) -> None:
        from cel_expr_python import cel

        self.cel = cel
        self._envs: dict[tuple[tuple[str, Any], ...], Any] = {}

    def _type(self, declared: Any) -> Any:
        kind = declared[0]
        if kind == "LIST":
            return self.cel.Type.List(self._type(declared[1]))
        if kind == "MAP":
            return self.cel.Type.Map(self._type(declared[1]), self._type(declared[2]))
        return getattr(self.cel.Type, kind)

    def env(self, decls: dict[str, Any]) -> Any:
        key = tuple(sorted(decls.items()))
        if key not in self._envs:
            variables = {name: self._type(t) for name, t in decls.items()}
            self._envs[key] = self.cel.NewEnv(variables=variables)
        return self._envs[key]

    def compile(self, expr: str, decls: dict[str, Any], check: bool = True) -> Any:
        try:
            return self.env(decls).compile(expr, disable_check=not check)
        except Exception as error:
            raise Failed(str(error)) from error

    def prepare(self, data: dict[str, Any], decls: dict[str, Any]) -> Any:
        return self.env(decls).Activation(data=data)

    def evaluate(self, program: Any, data: Any) -> Any:
        try:
            value = program.eval(activation=data)
        except Exception as error:
            raise Failed(str(error)) from error
        kind = value.type().name()
        if kind in ("ERROR", "UNKNOWN"):
            raise Failed(str(value.value()))
        return value.plain_value()


class CommonExpressionLanguage(Library):
    name = "common-expression-language"
    package = "common-expression-language"

    def __init__(self) -> None:
        import cel

        self.cel = cel

    def compile(self, expr: str, decls: dict[str, Any], check: bool = True) -> Any:
        try:
            return self.cel.compile(expr)
        except Exception as error:
            raise Failed(str(error)) from error

    def prepare(self, data: dict[str, Any], decls: dict[str, Any]) -> Any:
        return self.cel.Context(variables=data)

    def evaluate(self, program: Any, data: Any) -> Any:
        try:
            return program.execute(data)
        except Exception as error:
            raise Failed(str(error)) from error


class CelPython(Library):
    name = "cel-python"
    package = "cel-python"

    def __init__(self) -> None:
        import celpy
        from celpy import celtypes
        from celpy.adapter import json_to_cel

        self.celpy = celpy
        self.celtypes = celtypes
        self.json_to_cel = json_to_cel
        self.environment = celpy.Environment()

    def compile(self, expr: str, decls: dict[str, Any], check: bool = True) -> Any:
        try:
            return self.environment.program(self.environment.compile(expr))
        except Exception as error:
            raise Failed(str(error)) from error

    def to_cel(self, value: Any) -> Any:
        t = self.celtypes
        if isinstance(value, Uint):
            return t.UintType(value)
        if isinstance(value, bool):
            return t.BoolType(value)
        if isinstance(value, dt.datetime):
            return t.TimestampType(value)
        if isinstance(value, dt.timedelta):
            return t.DurationType(value)
        if isinstance(value, bytes):
            return t.BytesType(value)
        if isinstance(value, list):
            return t.ListType([self.to_cel(v) for v in value])
        if isinstance(value, dict):
            return t.MapType({self.to_cel(k): self.to_cel(v) for k, v in value.items()})
        return self.json_to_cel(value)

    def prepare(self, data: dict[str, Any], decls: dict[str, Any]) -> Any:
        return {name: self.to_cel(value) for name, value in data.items()}

    def evaluate(self, program: Any, data: dict[str, Any]) -> Any:
        try:
            result = program.evaluate(data)
        except Exception as error:
            raise Failed(str(error)) from error
        if isinstance(result, Exception):
            raise Failed(str(result))
        return self.from_cel(result)

    def from_cel(self, value: Any) -> Any:
        t = self.celtypes
        if isinstance(value, t.BoolType):
            return bool(value)
        if isinstance(value, (t.IntType, t.UintType)):
            return int(value)
        if isinstance(value, t.DoubleType):
            return float(value)
        if isinstance(value, t.StringType):
            return str(value)
        if isinstance(value, t.BytesType):
            return bytes(value)
        if isinstance(value, t.TimestampType):
            return dt.datetime(
                value.year, value.month, value.day, value.hour, value.minute, value.second,
                value.microsecond, tzinfo=value.tzinfo,
            )  # fmt: skip
        if isinstance(value, t.DurationType):
            return dt.timedelta(seconds=value.total_seconds())
        if isinstance(value, list):
            return [self.from_cel(v) for v in value]
        if isinstance(value, dict):
            return {self.from_cel(k): self.from_cel(v) for k, v in value.items()}
        if isinstance(value, type):
            raise Failed(f"a type value {value!r}")
        return value


def bindings_for(library: Library, case: Case) -> tuple[dict[str, Any], dict[str, Any]]:
    """(declarations, activation) for a case: uint bindings as typed values where possible."""
    decls = dict(case.decls)
    for name, value in case.bindings.items():
        decls.setdefault(name, ("UINT",) if value[0] == "uint" else ("DYN",))
    uint = Uint if isinstance(library, CelPython) else int
    data = {name: plain(value, uint) for name, value in case.bindings.items()}
    return decls, library.prepare(data, decls)


# ---------------------------------------------------------------------------------------------
# Comparing a result with the spec's expected value.
# ---------------------------------------------------------------------------------------------


def same(expected: Val, got: Any) -> bool:
    kind, inner = expected
    if kind == "bool":
        return isinstance(got, bool) and got == inner
    if kind in ("int", "uint"):
        return isinstance(got, int) and not isinstance(got, bool) and got == inner
    if kind == "double":
        if not isinstance(got, float):
            return False
        return (math.isnan(inner) and math.isnan(got)) or got == inner
    if kind == "string":
        return isinstance(got, str) and got == inner
    if kind == "bytes":
        return isinstance(got, (bytes, bytearray)) and bytes(got) == inner
    if kind == "null":
        return got is None
    if kind == "timestamp":
        return isinstance(got, dt.datetime) and got.tzinfo is not None and got == inner
    if kind == "duration":
        return isinstance(got, dt.timedelta) and got == inner
    if kind == "list":
        return isinstance(got, list) and len(got) == len(inner) and all(map(same, inner, got))
    if kind == "map":
        if not isinstance(got, dict) or len(got) != len(inner):
            return False
        for key, value in inner:
            matches = [v for k, v in got.items() if same(key, k)]
            if len(matches) != 1 or not same(value, matches[0]):
                return False
        return True
    return False


def show(value: Val | None) -> str:
    return "an error" if value is None else repr(plain(value))


# ---------------------------------------------------------------------------------------------
# Conformance.
# ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    applicable: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0


@dataclass
class Conformance:
    cases: dict[str, list[Case]] = field(default_factory=dict)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)  # (library, file)
    misses: dict[str, list[tuple[Case, str]]] = field(default_factory=dict)  # library -> misses


def load_cases(spec: SpecData) -> Conformance:
    result = Conformance()
    for file, text in spec.files():
        skipped: Counter[str] = Counter()
        cases: list[Case] = []
        document = parse_textproto(text)
        for section in every(document, "section"):
            section_name = text_of(first(section, "name"))
            for test in every(section, "test"):
                if file in SKIPPED_FILES:
                    skipped[SKIPPED_FILES[file]] += 1
                    continue
                try:
                    cases.append(read_case(file, section_name, test))
                except NotApplicable as reason:
                    skipped[str(reason)] += 1
        result.cases[file] = cases
        result.skipped[file] = skipped
    return result


def run_case(library: Library, case: Case) -> tuple[str, str]:
    """("passed"|"failed"|"errored", what the library did)."""
    try:
        decls, data = bindings_for(library, case)
        program = library.compile(case.expr, decls, case.check)
        got = library.evaluate(program, data)
    except Failed as error:
        if case.expected is None:
            return "passed", ""
        return "errored", str(error).splitlines()[0][:160] if str(error) else "error"
    except (RecursionError, OverflowError, ValueError, TypeError) as error:  # raised past the API
        if case.expected is None:
            return "passed", ""
        return "errored", f"{type(error).__name__}: {error}"[:160]
    if case.expected is None:
        return "failed", f"returned {got!r:.100} instead of an error"
    if same(case.expected, got):
        return "passed", ""
    return "failed", f"returned {got!r:.100}, expected {show(case.expected):.100}"


def run_conformance(libraries: list[Library], conformance: Conformance) -> None:
    for library in libraries:
        print(f"conformance: {library.name}", file=sys.stderr)
        misses = conformance.misses.setdefault(library.name, [])
        for file, cases in conformance.cases.items():
            tally = conformance.tallies.setdefault((library.name, file), Tally())
            for case in cases:
                tally.applicable += 1
                outcome, detail = run_case(library, case)
                setattr(tally, outcome, getattr(tally, outcome) + 1)
                if outcome != "passed":
                    misses.append((case, f"{outcome}: {detail}"))


# ---------------------------------------------------------------------------------------------
# Speed and safety on the operator's conditions.
# ---------------------------------------------------------------------------------------------

CONDITIONS = {
    "business hours": "now.getHours() >= 9 && now.getHours() < 17",
    "ticket in reason": 'request.spec.reason.matches("^[A-Z]+-[0-9]+")',
    "prod needs sre": '!("tier" in namespaceObject.metadata.labels) || '
    'namespaceObject.metadata.labels["tier"] != "prod" || "sre" in requester.groups',
    "task images": 'task == null || task.spec.template.spec.containers.all(c, c.image.startsWith("registry.example.com/"))',
    "grant limit": "activeGrants.grantee < 2",
}
# what the operator would declare to a type checker
DECLS: dict[str, Any] = {
    "now": ("TIMESTAMP",),
    "request": ("MAP", ("STRING",), ("DYN",)),
    "namespaceObject": ("MAP", ("STRING",), ("DYN",)),
    "requester": ("MAP", ("STRING",), ("DYN",)),
    "task": ("DYN",),
    "activeGrants": ("MAP", ("STRING",), ("INT",)),
}
ILL_TYPED = {
    "undeclared variable": 'requestr.spec.reason == "x"',
    "timestamp + int": "now + 1",
    "size() of nothing": 'size() > "a"',
}
RUNAWAY = "l.all(a, l.all(b, l.all(c, l.all(d, a + b + c + d >= 0))))"


def activation() -> dict[str, Any]:
    containers = [
        {"name": f"step-{i}", "image": f"registry.example.com/team/tool-{i}:1.{i}", "args": ["--x", str(i)]}
        for i in range(3)
    ]
    return {
        "now": dt.datetime(2026, 12, 3, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "request": {
            "metadata": {"name": "req-1", "namespace": "payments"},
            "spec": {
                "reason": "OPS-1234 rotate the payment certificates",
                "role": "deploy",
                "duration": "1h",
            },
        },
        "namespaceObject": {
            "metadata": {"name": "payments", "labels": {"tier": "prod", "team": "payments", "env": "prod"}}
        },
        "requester": {"username": "alice@example.com", "groups": ["developers", "payments", "sre"]},
        "task": {
            "metadata": {"name": "rotate-certs", "namespace": "payments"},
            "spec": {"template": {"spec": {"containers": containers}}},
        },
        "activeGrants": {"grantee": 1, "policy": 4, "namespace": 2},
    }


def percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def timed(call: Callable[[], Any], budget: float, minimum: int = 50) -> list[int]:
    for _ in range(20):
        call()
    samples: list[int] = []
    gc.collect()
    deadline = time.perf_counter() + budget
    while len(samples) < minimum or time.perf_counter() < deadline:
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return samples


@dataclass
class Timing:
    compile_us: float
    median_us: float
    p99_us: float
    calls: int
    result: Any


def time_conditions(library: Library, budget: float) -> dict[str, Timing]:
    data = library.prepare(activation(), DECLS)
    timings: dict[str, Timing] = {}
    for label, source in CONDITIONS.items():
        compiles = timed(lambda s=source: library.compile(s, DECLS), budget / 4, minimum=20)  # type: ignore[misc]
        program = library.compile(source, DECLS)
        try:
            result = library.evaluate(program, data)
        except Failed as error:
            result = f"error: {error}"
        samples = timed(lambda p=program: _quiet_eval(library, p, data), budget)  # type: ignore[misc]
        timings[label] = Timing(
            statistics.median(compiles) / 1000,
            statistics.median(samples) / 1000,
            percentile(samples, 0.99) / 1000,
            len(samples),
            result,
        )
    return timings


def _quiet_eval(library: Library, program: Any, data: Any) -> Any:
    try:
        return library.evaluate(program, data)
    except Failed as error:
        return error


def check_ill_typed(library: Library) -> dict[str, str]:
    data = library.prepare(activation(), DECLS)
    outcome: dict[str, str] = {}
    for label, source in ILL_TYPED.items():
        try:
            program = library.compile(source, DECLS)
        except Failed as error:
            outcome[label] = "rejected at compile: " + _first_line(error)
            continue
        try:
            value = library.evaluate(program, data)
        except Failed as error:
            outcome[label] = "compiles; fails at evaluation: " + _first_line(error)
            continue
        outcome[label] = f"compiles and evaluates to {value!r}"
    return outcome


def _first_line(error: Exception) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines()[:3] if line.strip())
    return text[:150] + ("…" if len(text) > 150 else "")


def check_runaway(library: Library) -> tuple[str, float]:
    decls = {"l": ("LIST", ("INT",))}
    data = library.prepare({"l": list(range(10))}, decls)
    start = time.perf_counter()
    try:
        program = library.compile(RUNAWAY, decls)
        value = library.evaluate(program, data)
        outcome = f"runs to the end: {value!r}"
    except Failed as error:
        outcome = "stopped: " + _first_line(error)
    return outcome, (time.perf_counter() - start) * 1000


def check_hours(library: Library) -> str:
    """getHours() with no time zone is UTC in CEL, whatever the datetime's own offset."""
    decls = {"now": ("TIMESTAMP",)}
    data = library.prepare({"now": activation()["now"]}, decls)
    try:
        value = library.evaluate(library.compile("now.getHours()", decls), data)
    except Failed as error:
        return "error: " + _first_line(error)
    return f"{value!r} ({'as the spec says' if value == 9 else 'spec: 9, UTC'})"


# ---------------------------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------------------------


def report_conformance(libraries: list[Library], conformance: Conformance, spec: SpecData) -> None:
    names = [lib.name for lib in libraries]
    print("### Conformance on the CEL spec's test cases that apply\n")
    print(f"cel-spec `tests/simple/testdata` at commit `{spec.commit[:12]}`; each cell is")
    print("passed / applicable (failed, errored): failed = wrong value or no error where one is")
    print("expected; errored = an error where a value is expected.\n")
    print("| file | applicable | skipped | " + " | ".join(names) + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    totals = {name: Tally() for name in names}
    for file, cases in conformance.cases.items():
        if not cases:
            continue
        cells = []
        for name in names:
            tally = conformance.tallies[(name, file)]
            total = totals[name]
            for attr in ("applicable", "passed", "failed", "errored"):
                setattr(total, attr, getattr(total, attr) + getattr(tally, attr))
            cells.append(f"{tally.passed}/{tally.applicable} ({tally.failed}, {tally.errored})")
        skipped = sum(conformance.skipped[file].values())
        print(f"| {file} | {len(cases)} | {skipped} | " + " | ".join(cells) + " |")
    applicable = sum(len(c) for c in conformance.cases.values())
    skipped_all = sum(sum(s.values()) for s in conformance.skipped.values())
    cells = [
        f"**{t.passed}/{t.applicable}** ({t.failed}, {t.errored}) {100 * t.passed / max(1, t.applicable):.1f} %"
        for t in totals.values()
    ]
    print(f"| **total** | {applicable} | {skipped_all} | " + " | ".join(cells) + " |\n")

    reasons: Counter[str] = Counter()
    for per_file in conformance.skipped.values():
        reasons.update(per_file)
    whole = ", ".join(sorted(f"{f} ({r})" for f, r in SKIPPED_FILES.items()))
    print(f"Files skipped whole: {whole}.\n")
    print("Cases skipped, by reason: " + "; ".join(f"{r}: {n}" for r, n in reasons.most_common()) + ".\n")

    print("#### Misses by file and section\n")
    for name in names:
        groups: Counter[str] = Counter()
        for case, _ in conformance.misses[name]:
            groups[f"{case.file}/{case.section}"] += 1
        listed = ", ".join(f"{group} {count}" for group, count in groups.most_common())
        print(f"- **{name}** ({len(conformance.misses[name])}): {listed or 'none'}")
    print()


def report_misses(libraries: list[Library], conformance: Conformance) -> None:
    print("#### Every miss\n")
    for lib in libraries:
        print(f"<details><summary>{lib.name}: {len(conformance.misses[lib.name])} misses</summary>\n")
        for case, detail in conformance.misses[lib.name]:
            expr = case.expr if len(case.expr) < 90 else case.expr[:87] + "..."
            expr = expr.replace("`", "'").replace("\n", "\\n")
            detail = detail.replace("|", "\\|")
            print(f"- `{case.file}/{case.section}/{case.name}` `{expr}`: {detail}")
        print("\n</details>\n")


def report_speed(libraries: list[Library], budget: float) -> None:
    print("### Compile and evaluation time of the operator's conditions\n")
    print("Per condition: compile (median), evaluation median and p99 in µs. The activation (Python")
    print("dicts and a timezone-aware datetime, made into each library's own activation object) is")
    print("built once, outside the timed calls; building it is the last row, once per request.\n")
    names = [lib.name for lib in libraries]
    header = " | ".join(f"{n} compile | {n} median | {n} p99" for n in names)
    print(f"| condition | result | {header} |")
    print("|---|---|" + "---:|---:|---:|" * len(names))
    per_lib: dict[str, dict[str, Timing]] = {}
    for lib in libraries:
        print(f"timing: {lib.name}", file=sys.stderr)
        per_lib[lib.name] = time_conditions(lib, budget)
    for label, source in CONDITIONS.items():
        results = {repr(per_lib[n][label].result) for n in names}
        result = results.pop() if len(results) == 1 else "differ: " + ", ".join(sorted(results))
        cells = " | ".join(
            f"{t.compile_us:,.1f} | {t.median_us:,.1f} | {t.p99_us:,.1f}"
            for t in (per_lib[n][label] for n in names)
        )
        print(f"| {label}: `{source}` | {result} | {cells} |")
    data = activation()
    builds = []
    for lib in libraries:
        samples = timed(lambda lib=lib: lib.prepare(data, DECLS), budget)  # type: ignore[misc]
        builds.append(
            f" | {statistics.median(samples) / 1000:,.1f} | {percentile(samples, 0.99) / 1000:,.1f}"
        )
    print("| building the activation from the dicts, once per request | |" + " |".join(builds) + " |")
    calls = {n: sum(t.calls for t in per_lib[n].values()) for n in names}
    print("\nTimed calls per library: " + ", ".join(f"{n} {c:,}" for n, c in calls.items()) + ".\n")


def report_safety(libraries: list[Library]) -> None:
    print("### Type checking at compile time, and runaway evaluation\n")
    names = [lib.name for lib in libraries]
    print("| check | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    checks = {lib.name: check_ill_typed(lib) for lib in libraries}
    for label, source in ILL_TYPED.items():
        cells = " | ".join(checks[n][label].replace("|", "\\|") for n in names)
        print(f"| {label}: `{source}` | {cells} |")
    runaway = {lib.name: check_runaway(lib) for lib in libraries}
    cells = " | ".join(f"{runaway[n][0]} ({runaway[n][1]:,.0f} ms)".replace("|", "\\|") for n in names)
    print(f"| runaway: `{RUNAWAY}`, `l` = 10 ints (10⁴ iterations) | {cells} |")
    hours = {lib.name: check_hours(lib) for lib in libraries}
    print("| `now.getHours()`, now = 10:30+01:00 | " + " | ".join(hours[n] for n in names) + " |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, required=True, help="a cel-spec checkout or bare git mirror")
    parser.add_argument("--quick", action="store_true", help="short timings, to check that it runs")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per condition")
    parser.add_argument("--misses", action="store_true", help="also list every conformance miss")
    args = parser.parse_args()
    budget = 0.05 if args.quick else args.budget

    libraries: list[Library] = [CelExprPython(), CommonExpressionLanguage(), CelPython()]
    spec = SpecData(args.spec)
    print("## CEL libraries for policy conditions\n")
    print(describe())
    print("- libraries: " + ", ".join(f"{lib.package} {lib.version()}" for lib in libraries))
    print(f"- cel-spec: {spec.commit}\n")
    conformance = load_cases(spec)
    run_conformance(libraries, conformance)
    report_conformance(libraries, conformance, spec)
    report_speed(libraries, budget)
    report_safety(libraries)
    if args.misses:
        report_misses(libraries, conformance)
    print(f"- load average at the end: {load()}")


if __name__ == "__main__":
    main()
