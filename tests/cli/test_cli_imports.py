"""`zsp` imports a command's module only when that command runs.

Covered, each in a fresh interpreter through `python -m zsp_operator`: `zsp --help` lists
every command of the table with its one line and loads no command module; `zsp run --help`,
and what `zsp run` imports before it connects, load neither the in-memory API server
(`zsp_operator.sim`) nor the demo; `zsp sim` and `zsp demo` still reach their modules. In
process: the table names exactly the commands each module registers, with the same help.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zsp_operator.cli import COMMANDS, build_parser, main

# Runs the `python -m zsp_operator` entry with ARGV, then imports EXTRA (what the command
# would import next), then writes the loaded module names to OUT.
_SNIPPET = """
import json, runpy, sys
out, extra, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.argv = ["zsp", *argv]
try:
    runpy.run_module("zsp_operator", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
for name in filter(None, extra.split(",")):
    __import__(name)
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
"""

TEST_DOUBLE = ("zsp_operator.sim", "zsp_operator.tools.demo")


def _zsp(tmp_path: Path, argv: list[str], extra: tuple[str, ...] = ()) -> tuple[str, set[str]]:
    """stdout of `python -m zsp_operator ARGV` and the modules loaded by then (plus EXTRA)."""
    out = tmp_path / "modules.json"
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("KUBECONFIG", None)
    result = subprocess.run(
        [sys.executable, "-c", _SNIPPET, str(out), ",".join(extra), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.exists(), result.stderr
    return result.stdout, set(json.loads(out.read_text()))


def _loaded(modules: set[str], prefix: str) -> set[str]:
    return {m for m in modules if m == prefix or m.startswith(prefix + ".")}


def test_top_level_help_lists_every_command_and_loads_no_command_module(tmp_path: Path) -> None:
    stdout, modules = _zsp(tmp_path, ["--help"])
    flat = " ".join(stdout.split())  # argparse wraps the summaries
    for command in COMMANDS:
        assert " ".join(f"{command.name} {command.summary}".split()) in flat, command.name
    assert {m for m in modules if m.startswith("zsp_operator.cli.")} == set()


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["run", "--help"], ()),
        # What `zsp run` imports once its flags parse, before it connects to anything.
        (["run", "--help"], ("zsp_operator.process.runner", "zsp_operator.process.leader")),
        (["check", "--help"], ()),
        (["crds", "--help"], ()),
        (["request", "--help"], ()),
        (["list", "--help"], ()),
        (["audit", "--help"], ()),
    ],
    ids=["run-help", "run-imports", "check", "crds", "request", "list", "audit"],
)
def test_product_commands_do_not_load_the_test_double(
    tmp_path: Path, argv: list[str], extra: tuple[str, ...]
) -> None:
    stdout, modules = _zsp(tmp_path, argv, extra)
    assert stdout.startswith(f"usage: zsp {argv[0]}"), stdout[:200]
    for prefix in TEST_DOUBLE:
        assert _loaded(modules, prefix) == set(), prefix
    assert _loaded(modules, "zsp_operator.cli.sim") | _loaded(modules, "zsp_operator.cli.demo") == set()


@pytest.mark.parametrize("command", ["sim", "demo"])
def test_only_the_chosen_command_module_is_imported(tmp_path: Path, command: str) -> None:
    stdout, modules = _zsp(tmp_path, [command, "--help"])
    assert stdout.startswith(f"usage: zsp {command}")
    assert {m for m in modules if m.startswith("zsp_operator.cli.")} == {f"zsp_operator.cli.{command}"}


def test_the_table_matches_what_each_module_registers() -> None:
    table: dict[str, dict[str, str]] = {}
    for command in COMMANDS:
        table.setdefault(command.module, {})[command.name] = command.summary
    for module, expected in table.items():
        subparsers = argparse.ArgumentParser(prog="zsp").add_subparsers()
        importlib.import_module(f"zsp_operator.cli.{module}").register(subparsers)
        registered = {action.dest: action.help for action in subparsers._choices_actions}
        assert registered == expected, module


def test_a_chosen_command_gets_its_real_parser() -> None:
    """Placeholders are swapped on parse: flags, defaults and the prog of the real parser apply."""
    args = build_parser().parse_args(["approve", "r1", "--comment", "ok"])
    assert (args.command, args.name, args.comment, args.decision) == ("approve", "r1", "ok", "approve")
    assert callable(args.func)


def test_an_unknown_command_exits_2_listing_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["grant"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert all(f"'{command.name}'" in err for command in COMMANDS), err


def test_no_command_prints_the_list_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(command.name in err for command in COMMANDS)
