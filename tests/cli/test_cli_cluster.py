"""Finding the cluster and namespace like kubectl, and failures as one line each: the
kubeconfig search order, the context's namespace, API errors in the API's own words,
unreachable servers named, and `zsp` itself exiting 2 with no traceback."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from zsp_operator import cli
from zsp_operator.cli.cluster import (
    CliError,
    api_error_message,
    context_namespace,
    kubeconfig_path,
    resolve_target,
)
from zsp_operator.kube import Forbidden, Invalid, KubeError, NotFound, Unauthorized
from zsp_operator.kube.errors import AlreadyExists

SERVER = "https://10.0.0.1:6443"


def test_kubeconfig_flag_comes_first(tmp_path: Path) -> None:
    assert kubeconfig_path("/x/flag", {"KUBECONFIG": "/x/env"}, tmp_path) == "/x/flag"


def test_then_the_first_file_of_kubeconfig(tmp_path: Path) -> None:
    assert kubeconfig_path(None, {"KUBECONFIG": "/x/a:/x/b"}, tmp_path) == "/x/a"


def test_then_the_home_kubeconfig_if_it_exists(tmp_path: Path) -> None:
    assert kubeconfig_path(None, {}, tmp_path) is None, "none: the in-cluster config"
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    assert kubeconfig_path(None, {"KUBECONFIG": ""}, tmp_path) == str(tmp_path / ".kube" / "config")


CONFIG: dict[str, Any] = {
    "current-context": "dev",
    "contexts": [
        {"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "payments"}},
        {"name": "ops", "context": {"cluster": "c", "user": "u"}},
    ],
}


@pytest.mark.parametrize(
    ("context", "namespace"),
    [(None, "payments"), ("dev", "payments"), ("ops", None), ("missing", None)],
)
def test_namespace_of_the_chosen_or_current_context(context: str | None, namespace: str | None) -> None:
    assert context_namespace(CONFIG, context) == namespace


def _args(**given: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"kubeconfig": None, "context": None, "namespace": None, **given})


def test_target_namespace_flag_then_context_then_default(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(CONFIG))
    assert resolve_target(_args(kubeconfig=str(path))).namespace == "payments"
    assert resolve_target(_args(kubeconfig=str(path), namespace="ci")).namespace == "ci"
    assert resolve_target(_args(kubeconfig=str(path), context="ops")).namespace == "default"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read kubeconfig"), ("a: [", "is not valid YAML"), ("- 1", "is not a kubeconfig")],
)
def test_unreadable_kubeconfigs_are_named(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "config"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CliError, match=message):
        resolve_target(_args(kubeconfig=str(path)))


def test_no_cluster_at_all_is_one_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(CliError, match="no cluster to talk to"):
        resolve_target(_args())


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            Forbidden(403, "Forbidden", 'accessrequests.zsp.dev "x" is forbidden: User "dave" cannot patch'),
            'accessrequests.zsp.dev "x" is forbidden: User "dave" cannot patch',
        ),
        (Invalid(422, "Invalid", "spec.reason: Required value"), "spec.reason: Required value"),
        (
            NotFound(404, "NotFound", 'accessrequests.zsp.dev "x" not found'),
            'accessrequests.zsp.dev "x" not found',
        ),
        (
            AlreadyExists(409, "AlreadyExists", 'accessrequests.zsp.dev "x" already exists'),
            'accessrequests.zsp.dev "x" already exists',
        ),
        (
            KubeError(400, "BadRequest", 'admission webhook "identity" denied the request: x is Active'),
            'admission webhook "identity" denied the request: x is Active',
        ),
        (
            Unauthorized(401, "Unauthorized", "Unauthorized"),
            f"the API server at {SERVER} refused the credentials (Unauthorized): check the kubeconfig's user",
        ),
        (
            KubeError(0, "Unreachable", "Cannot connect to host 10.0.0.1:6443"),
            f"cannot reach the API server at {SERVER}: Cannot connect to host 10.0.0.1:6443",
        ),
        (
            KubeError(503, "ServiceUnavailable", "etcd is down"),
            f"the API server at {SERVER} answered 503 ServiceUnavailable: etcd is down",
        ),
        (KubeError(500, "InternalError", ""), f"the API server at {SERVER} answered 500 InternalError"),
    ],
)
def test_api_errors_in_the_apis_own_words(error: KubeError, message: str) -> None:
    assert api_error_message(error, SERVER) == message


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_a_missing_kubeconfig_file_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(["list", "--kubeconfig", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"zsp: cannot read kubeconfig {tmp_path / 'nope'}")
    assert err.count("\n") == 1


def test_a_kubeconfig_without_the_context_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(CONFIG))
    code = _run(["describe", "x", "--kubeconfig", str(path), "--context", "prod"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"zsp: cannot use kubeconfig {path} (context prod): ")
    assert err.count("\n") == 1
