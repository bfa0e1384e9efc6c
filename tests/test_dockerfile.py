"""The operator image's Dockerfile, checked statically (no image can be built here).

Covered: at least two stages from one base, every base pinned to an exact version (or a digest), never
`latest`; the runtime stage copies only the built environment from the build stage, runs as a
numeric non-root user equal to the chart's podSecurityContext (runAsUser, runAsGroup), is not
switched back to root, writes no bytecode at run time (readOnlyRootFilesystem), puts `zsp` on
PATH for the chart's `command: [zsp, run]`, exposes the chart's ports and records the git
commit for `zsp version`; the build stage copies every file the package ships (the targets of
operator/zsp_operator/bundled/), and .dockerignore lets exactly those in.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
VALUES = yaml.safe_load((REPO / "charts" / "zsp-operator" / "values.yaml").read_text(encoding="utf-8"))
# An exact release: 3.11.11, 3.11.11-slim-bookworm; or a digest.
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, args = pending.partition(" ")
        found.append((keyword.upper(), args.strip()))
        pending = ""
    return found


def parse() -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


ARGS, STAGES = parse()
RUNTIME = STAGES[-1]


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def test_the_image_is_built_in_stages() -> None:
    assert len(STAGES) >= 2
    assert [s.name for s in STAGES] == ["build", "runtime"]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_base_is_pinned(stage: Stage) -> None:
    assert PINNED.match(stage.base), f"{stage.base}: pin an exact version or a digest"
    assert ":" in stage.base or "@sha256:" in stage.base
    assert not stage.base.endswith(":latest")


def test_both_stages_share_the_base() -> None:
    """The runtime runs the virtual environment with the interpreter it was made with."""
    assert len({stage.base for stage in STAGES}) == 1


def test_the_runtime_takes_only_the_built_environment() -> None:
    copies = RUNTIME.all("COPY")
    assert copies == ["--from=build /opt/zsp /opt/zsp"], copies
    assert not any("pip install" in run for run in RUNTIME.all("RUN")), "nothing is built at run time"


def test_the_runtime_user_is_the_charts_non_root_user() -> None:
    pod = VALUES["podSecurityContext"]
    users = RUNTIME.all("USER")
    assert users, "the runtime stage sets USER"
    assert users[-1] == f"{pod['runAsUser']}:{pod['runAsGroup']}", "numeric, so runAsNonRoot can verify it"
    assert pod["runAsUser"] != 0
    assert pod["runAsNonRoot"] is True
    last_user = max(i for i, (k, _) in enumerate(RUNTIME.instructions) if k == "USER")
    assert all(k not in ("RUN", "USER") for k, _ in RUNTIME.instructions[last_user + 1 :]), (
        "nothing runs as root after the switch"
    )


def test_nothing_is_written_outside_tmp_at_run_time() -> None:
    container = VALUES["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    env = env_of(RUNTIME)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp", "the chart mounts an emptyDir at /tmp, the only writable path"
    assert any("compileall" in run for run in STAGES[0].all("RUN")), "bytecode compiled at build time"


def test_zsp_is_the_entry_point_the_chart_calls() -> None:
    deployment = (REPO / "charts" / "zsp-operator" / "templates" / "deployment.yaml").read_text(
        encoding="utf-8"
    )
    assert "command: [zsp, run]" in deployment
    assert env_of(RUNTIME)["PATH"].startswith("/opt/zsp/bin:")
    assert RUNTIME.all("ENTRYPOINT") == ['["zsp"]']
    assert RUNTIME.all("CMD") == ['["run"]']


def test_the_charts_ports_are_exposed() -> None:
    exposed = {int(p) for args in RUNTIME.all("EXPOSE") for p in args.split()}
    assert exposed == set(VALUES["ports"].values())


def test_the_commit_reaches_zsp_version() -> None:
    assert "GIT_COMMIT" in " ".join(RUNTIME.all("ARG"))
    assert env_of(RUNTIME)["ZSP_GIT_COMMIT"] == "${GIT_COMMIT}"


def test_the_build_copies_what_the_package_ships() -> None:
    # COPY SOURCE... DEST: every word but the last is a source.
    copied = {word.rstrip("/") for args in STAGES[0].all("COPY") for word in args.split()[:-1]}
    bundled = REPO / "operator" / "zsp_operator" / "bundled"
    targets = {
        (link.parent / link.readlink()).resolve().relative_to(REPO).parts[0] for link in bundled.iterdir()
    }
    for needed in {"pyproject.toml", "README.md", "operator", *targets}:
        assert needed in copied, f"the build stage does not copy {needed}"
    ignore = [line for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines() if line]
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, "the context is an allowlist"
    assert {"pyproject.toml", "README.md", "operator", *targets} <= allowed
    assert not any(fnmatch.fnmatch(".venv", pattern[1:]) for pattern in ignore if pattern.startswith("!"))
