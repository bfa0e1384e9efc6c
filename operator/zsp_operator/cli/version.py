"""`zsp version`: the package version, the git commit it was built from when known, and the
API versions it serves (read from the CRDs the package generates, so it cannot drift).

The commit comes from, in this order: `ZSP_GIT_COMMIT` (the operator image sets it at build
time); pip's record of a VCS install (`direct_url.json`); `git rev-parse` when the package
runs from a git checkout. Otherwise it is unknown, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from zsp_operator import __version__

DISTRIBUTION = "zsp-operator"
COMMIT_VARIABLE = "ZSP_GIT_COMMIT"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "version",
        help="print the version, the git commit when known, and the API versions served",
        description=(
            "The package version, the git commit it was built from (when known), and the "
            "API versions of the resources this operator serves."
        ),
    )
    parser.add_argument("-o", "--output", choices=("json",), help="print it as JSON")
    parser.set_defaults(func=run)


def package_version() -> str:
    """The installed distribution's version; the source's own when not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__


def _from_direct_url() -> str | None:
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    commit = (json.loads(text).get("vcs_info") or {}).get("commit_id")
    return str(commit) if commit else None


def _from_checkout() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments, git found on PATH
            [git, "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def git_commit() -> str | None:
    """The commit this package was built from, or None when nothing says."""
    return os.environ.get(COMMIT_VARIABLE) or _from_direct_url() or _from_checkout()


def served_api_versions() -> dict[str, list[str]]:
    """`group/version` -> the kinds served there, from the generated CRDs."""
    from zsp_operator.tools.crdgen import build_crds  # pydantic models: only for this command

    served: dict[str, list[str]] = {}
    for crd in build_crds():
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                served.setdefault(f"{spec['group']}/{version['name']}", []).append(spec["names"]["kind"])
    return served


def run(args: argparse.Namespace) -> int:
    commit = git_commit()
    served = served_api_versions()
    report: dict[str, object] = {
        "version": package_version(),
        "gitCommit": commit,
        "python": platform.python_version(),
        "apiVersions": served,
    }
    if args.output == "json":
        print(json.dumps(report, indent=2))
        return 0
    print(f"zsp-operator {report['version']}")
    print(f"git commit:   {commit or 'unknown'}")
    print(f"python:       {report['python']}")
    for api_version, kinds in served.items():
        print(f"serves:       {api_version} ({', '.join(kinds)})")
    return 0
