"""The files the package carries for `zsp demo` and the CLI, read through importlib.resources.

`zsp_operator/bundled/` links to the repository's `examples/` and `deploy/operator-rbac.yaml`;
a built wheel holds copies of them (package data), so an installed `zsp` reads the same files
a source checkout does, with no path into the source tree.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import yaml

_ROOT = "bundled"


def bundled(*parts: str) -> Traversable:
    """A file or folder of the bundle, e.g. `bundled("examples", "ci-pipeline", "policy.yaml")`."""
    found = files("zsp_operator") / _ROOT
    for part in parts:
        found = found / part
    return found


def example(situation: str, name: str) -> Traversable:
    """One manifest of one example, e.g. `example("ci-pipeline", "policy.yaml")`."""
    return bundled("examples", situation, name)


def operator_rbac() -> Traversable:
    """The operator's own ServiceAccount and least-privilege RBAC (deploy/operator-rbac.yaml)."""
    return bundled("operator-rbac.yaml")


def documents(file: Traversable) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a bundled file."""
    return [doc for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")) if doc]
