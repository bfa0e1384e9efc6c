"""A security scan of the rendered chart and of the operator image's Dockerfile, with checkov.

Why checkov: an actively maintained open-source scanner on PyPI (Apache-2.0, released
weekly) whose Kubernetes checks cover pod security (privileges, capabilities, root, probes,
resources, images) and RBAC (escalate, bind, webhooks, secrets), with a Dockerfile framework
too; it reads plain manifests, so it scans exactly what `helm template` renders, offline
(`--skip-download`).

Covered: the chart rendered with its defaults, with every optional part switched on, and
with the image pinned by digest (checkov's whole Kubernetes framework), and the Dockerfile
(its Dockerfile framework); every failed check is one of tests/chart/accepted-findings.yaml,
each of which carries its reason and still fires (none is stale); the digest variant passes
the digest check.

checkov is not a test dependency (it pins dozens of packages of its own): `.ci/run` installs
it into a virtual environment of its own and names it in ZSP_CHECKOV. Without it the scan
skips and says so, or fails with ZSP_REQUIRE_REAL_TIER=1 as in CI.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartkit import chart_values, render

ACCEPTED = Path(__file__).resolve().parent / "accepted-findings.yaml"
DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"
DIGEST = "sha256:" + "0" * 64


def checkov() -> str:
    found = os.environ.get("ZSP_CHECKOV") or shutil.which("checkov")
    if found:
        return found
    if os.environ.get("ZSP_REQUIRE_REAL_TIER") == "1":
        pytest.fail("checkov is required (ZSP_CHECKOV or on PATH): .ci/run installs it")
    pytest.skip("checkov not installed: set ZSP_CHECKOV (see .ci/run) to scan the chart")


# What an optional part needs besides `enabled: true` to render.
NEEDED_WITH: dict[str, dict[str, Any]] = {
    "auditWebhook": {
        "certSecret": "zsp-audit-tls",
        "tokenSecret": {"name": "zsp-audit-token"},
        "clientCASecret": {"name": "zsp-audit-client-ca"},
    },
}


def everything_on() -> dict[str, Any]:
    """Every optional part of the chart switched on (top-level `enabled: false` toggles)."""
    return {
        key: {"enabled": True, **NEEDED_WITH.get(key, {})}
        for key, value in chart_values().items()
        if isinstance(value, dict) and value.get("enabled") is False
    }


VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything": everything_on(),
    "digest": {"image": {"digest": DIGEST}},
}


def run_checkov(binary: str, *target: str) -> list[dict[str, Any]]:
    """[{check, resource, result}] for every check checkov ran on the target."""
    done = subprocess.run(
        [binary, *target, "--output", "json", "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: some check failed
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    checks = (report or {}).get("results", {})
    results = [
        {"check": c["check_id"], "resource": c["resource"], "result": outcome}
        for outcome, key in (("failed", "failed_checks"), ("passed", "passed_checks"))
        for c in checks.get(key, [])
    ]
    assert results, f"checkov ran no check on {target}: {done.stderr[-2000:]}"
    return results


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """checkov's results per chart variant, and for the Dockerfile."""
    binary = checkov()
    results: dict[str, list[dict[str, Any]]] = {}
    for variant, values in VARIANTS.items():
        folder = tmp_path_factory.mktemp(f"chart-{variant}")
        (folder / "rendered.yaml").write_text(yaml.safe_dump_all(render(values).docs), encoding="utf-8")
        results[variant] = run_checkov(binary, "--directory", str(folder), "--framework", "kubernetes")
    results["dockerfile"] = run_checkov(binary, "--file", str(DOCKERFILE), "--framework", "dockerfile")
    return results


def accepted() -> list[dict[str, str]]:
    entries: list[dict[str, str]] = yaml.safe_load(ACCEPTED.read_text(encoding="utf-8"))
    return entries


def covers(entry: dict[str, str], check: str, resource: str) -> bool:
    """An entry names one check on one resource (a `*` pattern where checkov's name is long)."""
    return entry["check"] == check and fnmatch.fnmatchcase(resource, entry["resource"])


def test_every_accepted_finding_says_why() -> None:
    for entry in accepted():
        assert set(entry) == {"check", "resource", "reason"}, entry
        assert len(entry["reason"].split()) >= 12, f"{entry['check']}: explain it"


@pytest.mark.parametrize("variant", [*sorted(VARIANTS), "dockerfile"])
def test_no_unexplained_finding(scan: dict[str, list[dict[str, Any]]], variant: str) -> None:
    failed = {(f["check"], f["resource"]) for f in scan[variant] if f["result"] == "failed"}
    unexplained = {finding for finding in failed if not any(covers(e, *finding) for e in accepted())}
    assert unexplained == set(), f"findings without an entry in {ACCEPTED.name}"


def test_no_accepted_finding_is_stale(scan: dict[str, list[dict[str, Any]]]) -> None:
    failed = {
        (f["check"], f["resource"]) for results in scan.values() for f in results if f["result"] == "failed"
    }
    stale = [e["check"] for e in accepted() if not any(covers(e, *finding) for finding in failed)]
    assert stale == [], f"remove these from {ACCEPTED.name}: the chart passes them now"


def test_a_pinned_digest_passes_the_digest_check(scan: dict[str, list[dict[str, Any]]]) -> None:
    digest = [f for f in scan["digest"] if f["check"] == "CKV_K8S_43"]
    assert digest, "the digest check ran"
    assert {f["result"] for f in digest} == {"passed"}
