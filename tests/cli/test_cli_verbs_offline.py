"""Verbs before (or without) the cluster: `request --dry-run=client` prints the manifest,
flag problems exit 2 naming each flag, `token` refuses what has no kubeconfig and writes
files for the owner alone, `approve`/`deny` patch the annotation the webhook consumes, and
every verb is registered under `zsp` (also what `kubectl zsp` runs)."""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_bodies import EPHEMERAL_SPEC, decided, issued, request

from zsp_operator import cli
from zsp_operator.cli.cluster import CliError
from zsp_operator.cli.verbs_approve import decision_patch
from zsp_operator.cli.verbs_read import delivery_of, kubeconfig_from_secret, write_private

VERBS = ("request", "done", "approve", "deny", "list", "describe", "token")


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def _no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def test_every_verb_is_a_subcommand() -> None:
    parser = cli.build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(VERBS) <= set(choices or {})


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_client_dry_run_prints_the_manifest_without_a_cluster(
    fmt: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_cluster(monkeypatch, tmp_path)
    argv = ["request", "--dry-run", "deploy-1", "-n", "payments", "--grantee-sa", "ci/deployer"]
    argv += ["--permission", "deploy", "--reason", "deploy 4711", "-o", fmt]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    manifest = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert manifest["metadata"] == {"namespace": "payments", "name": "deploy-1"}
    assert manifest["spec"]["grantee"] == {"serviceAccount": {"namespace": "ci", "name": "deployer"}}


def test_client_dry_run_takes_the_contexts_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump({"current-context": "a", "contexts": [{"name": "a", "context": {"namespace": "ops"}}]})
    )
    argv = ["request", "r", "--dry-run=client", "--ephemeral", "--rule", "verbs=get;resources=pods"]
    argv += ["--reason", "triage", "--kubeconfig", str(path), "-o", "name"]
    assert _run(argv) == 0
    assert capsys.readouterr().out.strip() == "accessrequest.zsp.dev/r"
    argv[-1] = "yaml"
    _run(argv)
    assert yaml.safe_load(capsys.readouterr().out)["metadata"]["namespace"] == "ops"


def test_flag_problems_exit_2_one_line_each_before_any_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_cluster(monkeypatch, tmp_path)
    argv = ["request", "--grantee-sa", "deployer", "--permission", "deploy", "--ttl", "soon", "--reason", "x"]
    assert _run(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "zsp: name the request: give NAME, or --generate-name to let the API server pick one",
        "zsp: --grantee-sa: 'deployer' is not NAMESPACE/NAME",
        "zsp: --ttl: 'soon' is not a duration: use a number and unit, e.g. 90s, 15m, 1h30m",
    ]


def test_wait_and_dry_run_do_not_mix(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["request", "r", "--ephemeral", "--permission", "p", "--reason", "x", "--dry-run=server", "--wait"]
    assert _run(argv) == 2
    assert "--wait cannot be combined with --dry-run" in capsys.readouterr().err


def test_argparse_refusals_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _run(["request", "r", "--grantee-sa", "a/b", "--ephemeral", "--permission", "p", "--reason", "x"])
        == 2
    )
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list", "a", "-A"], "a request cannot be named across all namespaces"),
        (["list", "a", "--pending"], "--pending lists what waits for you; it takes no names"),
    ],
)
def test_list_refuses_contradictory_flags(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(argv) == 2
    assert message in capsys.readouterr().err


# --- token ---------------------------------------------------------------------------------------

ACTIVE_EPHEMERAL = request((0.1, decided()), (1, issued()), spec=EPHEMERAL_SPEC)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            request((0.1, decided()), (1, issued())),
            "binds ServiceAccount ci/deployer (bind mode): no kubeconfig",
        ),
        (request(spec=EPHEMERAL_SPEC), "is Pending, not Active: no live kubeconfig"),
        (
            request((0.1, decided()), (1, issued()), spec={**EPHEMERAL_SPEC, "delivery": None}),
            "has no spec.delivery",
        ),
    ],
)
def test_token_refuses_what_has_no_live_kubeconfig(body: dict[str, Any], message: str) -> None:
    with pytest.raises(CliError, match=re.escape(message)):
        delivery_of(body)


def test_token_reads_the_delivery_secret() -> None:
    assert delivery_of(ACTIVE_EPHEMERAL) == ("ci", "agent-kubeconfig")
    data = base64.b64encode(b"apiVersion: v1\nkind: Config\n").decode()
    assert kubeconfig_from_secret({"data": {"kubeconfig": data}}, "ci/s") == b"apiVersion: v1\nkind: Config\n"
    with pytest.raises(CliError, match="holds no 'kubeconfig' key yet"):
        kubeconfig_from_secret({"data": {}}, "ci/s")
    with pytest.raises(CliError, match="is not base64"):
        kubeconfig_from_secret({"data": {"kubeconfig": "not base64!"}}, "ci/s")


def test_written_kubeconfigs_are_for_the_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "agent.kubeconfig"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "even when the file existed with wider rights"
    assert [p.name for p in tmp_path.iterdir()] == ["agent.kubeconfig"], "no temporary file left behind"


# --- approve / deny ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "comment", "patch"),
    [
        ("approve", "", {"metadata": {"annotations": {"zsp.dev/approve": ""}}}),
        ("approve", " build is green ", {"metadata": {"annotations": {"zsp.dev/approve": "build is green"}}}),
        (
            "deny",
            "not during the freeze",
            {"metadata": {"annotations": {"zsp.dev/deny": "not during the freeze"}}},
        ),
    ],
)
def test_decisions_are_the_annotation_the_webhook_consumes(
    decision: Any, comment: str, patch: dict[str, Any]
) -> None:
    assert decision_patch(decision, comment) == patch
