"""The documentation site and its generated field reference.

Covered: docs/reference/ is what tools/refdocs.py makes of crds/ (and says how to regenerate
when it is not); every field of every kind is described and no description names a field
the CRDs lost; the generator's rendering of types, defaults, requirements and CEL rules;
`mkdocs build --strict` succeeds (so every page is in the navigation and every link and
anchor resolves), and the lifecycle diagram reaches the page as a diagram, not as code;
the strict build does fail on a broken link, a broken anchor and a page left out of the
navigation; every test file and test function the pages cite (the threat model's evidence)
exists, and so does every repository path and module the pages name (`examples/...`,
`engine/revoker.py`); the policy and request the guide walks through are allowed by `zsp check`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from zsp_operator.core.durations import DURATION_PATTERN
from zsp_operator.tools import refdocs
from zsp_operator.tools.fielddocs import FIELD_DOCS

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"
REFERENCE = ROOT / "docs" / "reference"


def _crds() -> list[tuple[str, dict[str, Any]]]:
    return [
        (p.name, yaml.safe_load(p.read_text(encoding="utf-8"))) for p in sorted(CRDS.glob("*.zsp.dev.yaml"))
    ]


@pytest.mark.parametrize(("file", "crd"), _crds(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_field_of_every_kind_is_described(file: str, crd: dict[str, Any]) -> None:
    try:
        refdocs.build_reference(crd, file)
    except ValueError as error:
        pytest.fail(f"{error}\nthen run `{refdocs.REGENERATE}` and commit docs/reference/")


def test_the_committed_field_reference_matches_the_crds() -> None:
    pages = refdocs.render_all(CRDS)
    assert sorted(pages) == ["accesspolicy.md", "accessrequest.md", "taskgrant.md"]
    problems = refdocs.stale_pages(pages, REFERENCE)
    assert not problems, (
        "docs/reference/ is stale:\n  "
        + "\n  ".join(problems)
        + f"\nrun `zsp crds --out crds` (if the models changed), then `{refdocs.REGENERATE}`, and commit both"
    )


def test_the_check_mode_exits_1_on_a_stale_page(tmp_path: Path) -> None:
    for name, text in refdocs.render_all(CRDS).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert refdocs.main(["--out", str(tmp_path), "--check"]) == 0
    page = tmp_path / "taskgrant.md"
    page.write_text(page.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    assert refdocs.main(["--out", str(tmp_path), "--check"]) == 1
    assert refdocs.main(["--crds", str(tmp_path), "--out", str(tmp_path), "--check"]) == 2, (
        "no CRDs is no pass"
    )


def _tiny_crd(spec_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "spec": {
            "group": "zsp.dev",
            "names": {"kind": "Tiny", "plural": "tinies", "shortNames": ["tn"]},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {"spec": spec_schema},
                        }
                    },
                }
            ],
        }
    }


def test_types_defaults_requirements_and_rules_come_from_the_schema() -> None:
    crd = _tiny_crd(
        {
            "type": "object",
            "required": ["ttl"],
            "properties": {
                "ttl": {"type": "string", "pattern": DURATION_PATTERN, "description": "how long"},
                "labels": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "default": {},
                    "description": "labels",
                },
                "who": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "description": "one subject",
                        "properties": {
                            "kind": {"type": "string", "enum": ["User", "Group"], "description": "k"}
                        },
                        "x-kubernetes-validations": [{"rule": "size(self.kind) > 0", "message": "say who"}],
                    },
                },
            },
        }
    )
    ref = refdocs.build_reference(crd, "tiny.yaml")
    rows = {row.path: row for row in ref.rows}
    assert rows["spec.ttl"].type == "duration"
    assert rows["spec.ttl"].required is True
    assert rows["spec.labels"].type == "map[string]string"
    assert rows["spec.labels"].default == {}
    assert rows["spec.who"].type == "[]object"
    assert rows["spec.who"].description == "one subject", (
        "a list without text of its own says what its items are"
    )
    assert rows["spec.who[].kind"].constraints == ["one of `User`, `Group`"]
    assert ref.rules == [("spec.who", "size(self.kind) > 0", "say who")]
    page = refdocs.render_reference(ref)
    assert "`spec.who[].kind`" in page
    assert "**required**" in page
    assert "<code>size(self.kind) &gt; 0</code>" in page, "a CEL rule is shown as code, escaped for HTML"


def test_a_field_without_description_fails_and_names_the_field() -> None:
    crd = _tiny_crd({"type": "object", "properties": {"silent": {"type": "boolean"}}})
    with pytest.raises(ValueError, match=r"spec\.silent: no description"):
        refdocs.build_reference(crd, "tiny.yaml")


def test_a_description_of_a_field_the_crd_lost_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    crd = _tiny_crd({"type": "object", "properties": {"kept": {"type": "boolean", "description": "k"}}})
    monkeypatch.setitem(FIELD_DOCS, "Tiny", {"spec.gone": "a field that was removed"})
    with pytest.raises(ValueError, match=r"spec\.gone: described in tools/fielddocs\.py but not in the CRD"):
        refdocs.build_reference(crd, "tiny.yaml")


def _build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # Never --quiet: it drops the warnings, and --strict then has nothing to fail on.
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = _build(ROOT, site)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    concepts = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    assert 'class="mermaid"' in concepts, (
        "the lifecycle diagram must be rendered by the theme, not shown as code"
    )
    for page in ("policies", "operating", "threat-model", "comparison", "reference/accesspolicy"):
        assert (site / page / "index.html").is_file(), f"{page} is missing from the site"


def test_code_in_a_table_cell_shows_pipes_and_markdown_characters_as_written() -> None:
    # A `|` would split the table's cell, and `\|` inside a code span would show the backslash.
    assert refdocs._code("a || b_c*d <e>") == "<code>a &#124;&#124; b&#95;c&#42;d &lt;e&gt;</code>"


TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?")


def test_every_test_the_docs_cite_exists() -> None:
    """The threat model and the guides name the tests behind their claims: those must exist."""
    missing = []
    threat_model = (ROOT / "docs" / "threat-model.md").read_text(encoding="utf-8")
    assert len([f for _, f in TEST_REFERENCE.findall(threat_model) if f]) >= 30, (
        "the threat model names its tests"
    )
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for file, function in TEST_REFERENCE.findall(page.read_text(encoding="utf-8")):
            path = ROOT / file
            if not path.is_file():
                missing.append(f"{page.name}: {file} does not exist")
            elif function and not re.search(
                rf"^(async )?def {function}\(", path.read_text(encoding="utf-8"), re.M
            ):
                missing.append(f"{page.name}: {file} has no {function}")
    assert not missing, "\n".join(missing)


def test_the_strict_build_fails_on_a_broken_link_a_broken_anchor_and_a_page_outside_the_nav(
    tmp_path: Path,
) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a", encoding="utf-8") as handle:
        handle.write("\n[a page that is not there](nowhere.md), [an anchor](concepts.md#nowhere)\n")
    (tmp_path / "docs" / "stray.md").write_text("# A page the navigation leaves out\n", encoding="utf-8")
    result = _build(tmp_path, tmp_path / "site")
    assert result.returncode != 0, "the strict build let them through"
    for complaint in ("'nowhere.md'", "'#nowhere'", "stray.md"):
        assert complaint in result.stderr, f"no warning names {complaint}:\n{result.stderr}"


def test_the_guides_first_policy_allows_its_request(tmp_path: Path) -> None:
    """docs/policies.md walks through one policy and one request: `zsp check` must allow it."""
    blocks = re.findall(
        r"```yaml\n(.*?)```", (ROOT / "docs" / "policies.md").read_text(encoding="utf-8"), re.S
    )
    policy = next(b for b in blocks if "kind: AccessPolicy" in b)
    request = next(b for b in blocks if "kind: AccessRequest" in b)
    (tmp_path / "policy.yaml").write_text(policy, encoding="utf-8")
    (tmp_path / "request.yaml").write_text(request, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "zsp_operator",
            "check",
            "--policy",
            str(tmp_path / "policy.yaml"),
            "--request",
            str(tmp_path / "request.yaml"),
            "--namespace-labels",
            "team=payments,zsp.dev/environment=staging",
            "--as",
            "system:serviceaccount:ci:pipeline",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'ALLOWED by policy "ci-deployers"' in result.stdout


# Paths the pages name in code spans: repository paths, and modules relative to the package.
REPO_PATH = re.compile(r"`((?:examples|charts|deploy|crds|bench|operator|tests|docs)/[^`\s]*)`")
MODULE_PATH = re.compile(
    r"(?<![\w/])((?:core|engine|kube|observe|handlers|process|tools|serving|cli|sim)/[\w/]+\.py)"
)


def test_every_path_the_docs_name_exists() -> None:
    missing = []
    named_at_all = 0
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        named_at_all += len(REPO_PATH.findall(text)) + len(MODULE_PATH.findall(text))
        for named in REPO_PATH.findall(text):
            path = named.split("::")[0].rstrip(".,:;)")
            if not any(c in path for c in "<*{") and not (ROOT / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
        for module in MODULE_PATH.findall(text):
            if not (ROOT / "operator" / "zsp_operator" / module).is_file():
                missing.append(f"{page.relative_to(ROOT)}: {module} (under operator/zsp_operator/)")
    assert named_at_all > 50, "the pages name the files they describe"
    assert not missing, "the docs name paths that do not exist:\n" + "\n".join(missing)
