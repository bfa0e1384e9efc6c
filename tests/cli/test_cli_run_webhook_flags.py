"""`zsp run` flags, made from the settings model, and those of the operator-managed webhook
certificate in particular.

Covered: `--webhook-service`, `--webhook-secret` and `--webhook-configuration` reach the
settings; a service that is not NAMESPACE/NAME stops `zsp run` with exit 2 and a message
naming the flag, before anything connects; `--help` lists every setting with its ZSP_*
variable and its default; a flag wins over the environment, which fills in what no flag
gave, and `--no-X` turns off a switch the environment turned on; a model's new field is a
flag at once: a switch for a bool, choices for an Enum or a Literal, a number for an int.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from enum import StrEnum
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from zsp_operator.cli import build_parser, main
from zsp_operator.cli.run import add_settings_flags, flags_given
from zsp_operator.settings import Settings


def test_the_webhook_certificate_flags_reach_the_settings() -> None:
    args = build_parser().parse_args(
        [
            "run",
            "--webhook-service",
            "zsp-system/zsp-operator-webhook",
            "--webhook-secret",
            "webhook-tls",
            "--webhook-configuration",
            "zsp",
        ]
    )
    settings = Settings(**flags_given(args))
    assert (settings.webhook_service, settings.webhook_secret, settings.webhook_configuration) == (
        "zsp-system/zsp-operator-webhook",
        "webhook-tls",
        "zsp",
    )


def test_a_webhook_service_without_a_namespace_stops_zsp_run_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--webhook-service", "zsp-operator-webhook"]) == 2
    out = capsys.readouterr().out
    assert "webhook_service" in out or "webhook-service" in out, out
    assert "NAMESPACE/NAME" in out


def help_of_each_flag(out: str) -> dict[str, str]:
    """`--help`'s options, each flag spelling with its whole help text on one line."""
    blocks: list[list[str]] = []
    for line in out.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            blocks.append([])
        if blocks:
            blocks[-1].append(line.strip())
    helps: dict[str, str] = {}
    for block in blocks:
        text = " ".join(block)
        for word in text.split():
            if word.startswith("-"):
                helps.setdefault(word.rstrip(","), text)
    return helps


def test_help_lists_the_flags_with_their_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    helps = help_of_each_flag(capsys.readouterr().out)
    for name in Settings.model_fields:
        flag = "--namespace" if name == "namespaces" else f"--{name.replace('_', '-')}"
        assert flag in helps, f"no flag {flag}"
        assert f"ZSP_{name.upper()}" in helps[flag], flag
    assert "(ZSP_RESYNC; default 5m)" in helps["--resync"]
    assert "(ZSP_CATALOG; default view)" in helps["--catalog"]
    assert "(ZSP_LEADER_ELECT; default off)" in helps["--leader-elect"]
    assert "(ZSP_WEBHOOK_SERVICE)" in helps["--webhook-service"], "no default, none shown"
    assert helps["-n"] == helps["--namespace"]


def test_every_setting_has_a_flag() -> None:
    """`--help` lists every setting as a flag, so each must parse as one."""
    parser = build_parser()
    flags = {"namespaces": "--namespace"}  # kubectl's spelling
    values = {"sweep_mode": "audit"}  # a choice
    for name, field in Settings.model_fields.items():
        flag = flags.get(name, f"--{name.replace('_', '-')}")
        if field.annotation is bool:
            assert getattr(parser.parse_args(["run", flag]), name) is True, flag
        else:
            value = values.get(name, "1")
            assert getattr(parser.parse_args(["run", flag, value]), name) in (
                value,
                int(value) if value.isdigit() else value,
            ), flag


def test_a_flag_wins_and_the_environment_fills_in_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZSP_RESYNC", "7m")
    monkeypatch.setenv("ZSP_LEADER_ELECT", "true")
    parser = build_parser()
    from_environment = Settings(**flags_given(parser.parse_args(["run"])))
    assert (from_environment.resync, from_environment.leader_elect) == (timedelta(minutes=7), True)
    flagged = Settings(**flags_given(parser.parse_args(["run", "--resync", "1m", "--no-leader-elect"])))
    assert (flagged.resync, flagged.leader_elect) == (timedelta(minutes=1), False)


class Shade(StrEnum):
    LIGHT = "light"
    DARK = "dark"


class Later(BaseModel):
    """A settings model as it might grow: each field a flag with no other edit."""

    model_config = {"env_prefix": "ZSP_"}

    colour: Literal["red", "green"] = Field(default="red", description="what colour")
    shade: Shade = Field(default=Shade.DARK, description="how dark")
    retries: int | None = Field(default=None, description="how often")
    verbose_audit: bool = Field(default=False, description="say more")


def test_a_new_field_is_a_flag_with_no_second_edit() -> None:
    parser = argparse.ArgumentParser(prog="zsp later")
    add_settings_flags(parser, Later)
    args = parser.parse_args(["--colour", "green", "--shade", "light", "--retries", "3", "--verbose-audit"])
    assert Later(**flags_given(args, Later)) == Later(
        colour="green", shade=Shade.LIGHT, retries=3, verbose_audit=True
    )
    assert flags_given(parser.parse_args([]), Later) == {}, "nothing given, nothing overridden"
    for wrong in (["--colour", "blue"], ["--shade", "grey"], ["--retries", "often"]):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)
    helps = help_of_each_flag(parser.format_help())
    assert "what colour (ZSP_COLOUR; default red)" in helps["--colour"]
    assert "{light,dark}" in helps["--shade"]
    assert helps["--verbose-audit"] == helps["--no-verbose-audit"]
