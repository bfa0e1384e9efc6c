"""`zsp run` flags of the operator-managed webhook certificate.

Covered: `--webhook-service`, `--webhook-secret` and `--webhook-configuration` reach the
settings; a service that is not NAMESPACE/NAME stops `zsp run` with exit 2 and a message
naming the flag, before anything connects; `--help` lists each with its ZSP_* variable.
"""

from __future__ import annotations

import pytest

from zsp_operator.cli import build_parser, main
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
    given = {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None
    }
    settings = Settings(**given)
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


def test_help_lists_the_flags_with_their_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in ("webhook-service", "webhook-secret", "webhook-configuration"):
        variable = f"ZSP_{flag.upper().replace('-', '_')}"
        assert f"--{flag} " in out, f"no flag --{flag}"
        assert any(
            line.split()[:2] == [f"--{flag}", variable] for line in out.splitlines() if line.strip()
        ), flag


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
