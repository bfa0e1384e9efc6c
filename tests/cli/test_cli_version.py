"""`zsp version`: the package version, the git commit when known, the API versions served.

Covered: the text and JSON outputs agree with the installed distribution and with the
generated CRDs; ZSP_GIT_COMMIT (what the operator image sets) wins; without any source the
commit reads as unknown instead of failing.
"""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from zsp_operator.cli import main, version
from zsp_operator.core.constants import API_VERSION


def test_version_prints_package_commit_and_api_versions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(version.COMMIT_VARIABLE, "0123456789abcdef")
    assert main(["version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"zsp-operator {metadata.version('zsp-operator')}"
    assert "git commit:   0123456789abcdef" in lines
    assert f"serves:       {API_VERSION} (AccessPolicy, AccessRequest, TaskGrant)" in lines


def test_version_as_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(version.COMMIT_VARIABLE, "feedface")
    assert main(["version", "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gitCommit"] == "feedface"
    assert report["apiVersions"] == {API_VERSION: ["AccessPolicy", "AccessRequest", "TaskGrant"]}
    assert report["version"] == metadata.version("zsp-operator")


def test_an_unknown_commit_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(version.COMMIT_VARIABLE, raising=False)
    monkeypatch.setattr(version, "_from_direct_url", lambda: None)
    monkeypatch.setattr(version, "_from_checkout", lambda: None)
    assert main(["version"]) == 0
    assert "git commit:   unknown" in capsys.readouterr().out.splitlines()


def test_a_source_checkout_knows_its_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(version.COMMIT_VARIABLE, raising=False)
    monkeypatch.setattr(version, "_from_direct_url", lambda: None)
    commit = version.git_commit()
    assert commit is None or len(commit) == 40  # None only when git is missing
