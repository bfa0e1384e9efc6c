"""The field reference of the documentation site, generated from the CRD schemas.

`docs/reference/<kind>.md` lists every field of AccessPolicy, AccessRequest and TaskGrant
with its type, default and validation as the CRD in `crds/` declares them, so the reference
cannot disagree with what the API server accepts. The meaning of each field is the text in
`tools/fielddocs.py`, else the schema's own `description`; a field with neither is an error,
and so is text for a field the schema no longer has.

    python -m zsp_operator.tools.refdocs            # rewrite docs/reference/ from crds/
    python -m zsp_operator.tools.refdocs --check    # exit 1 when docs/reference/ is stale

tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zsp_operator.core.durations import DURATION_PATTERN
from zsp_operator.tools.fielddocs import FIELD_DOCS, KIND_DOCS

REGENERATE = "python -m zsp_operator.tools.refdocs"
HEADER = (
    "<!-- Generated from crds/{file} by `{command}`. Do not edit: change the models "
    "(core/models.py) or tools/fielddocs.py, run `zsp crds --out crds`, then `{command}`. -->\n"
)


@dataclass(frozen=True)
class FieldRow:
    """One field of a kind, as the reference table shows it."""

    path: str
    type: str
    required: bool
    default: Any
    constraints: list[str]
    description: str


@dataclass
class KindReference:
    """Everything the page of one kind says, derived from its CRD."""

    kind: str
    file: str
    group: str
    version: str
    scope: str
    plural: str
    short_names: list[str]
    description: str
    columns: list[dict[str, Any]]
    rows: list[FieldRow] = field(default_factory=list)
    rules: list[tuple[str, str, str]] = field(default_factory=list)  # (path, rule, message)


def _type_of(node: dict[str, Any]) -> str:
    kind = node.get("type", "")
    if kind == "array":
        return f"[]{_type_of(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type_of(node['additionalProperties'])}"
    if kind == "string" and node.get("pattern") == DURATION_PATTERN:
        return "duration"
    if kind == "string" and node.get("format") == "date-time":
        return "time"
    return str(kind)


def _constraints(node: dict[str, Any]) -> list[str]:
    found = []
    if "enum" in node:
        found.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if node.get("minLength") == 1:
        found.append("not empty")
    elif "minLength" in node:
        found.append(f"at least {node['minLength']} characters")
    if "maxLength" in node:
        found.append(f"at most {node['maxLength']} characters")
    if "minimum" in node:
        found.append(f"at least {node['minimum']}")
    if "maximum" in node:
        found.append(f"at most {node['maximum']}")
    if "minItems" in node:
        found.append(f"at least {node['minItems']} item{'s' if node['minItems'] != 1 else ''}")
    if "maxItems" in node:
        found.append(f"at most {node['maxItems']} item{'s' if node['maxItems'] != 1 else ''}")
    if "pattern" in node and node["pattern"] != DURATION_PATTERN:
        found.append(f"matches {_code(node['pattern'])}")
    if node.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(f"`{k}`" for k in node.get("x-kubernetes-list-map-keys", []))
        found.append(f"unique by {keys}")
    items = node.get("items")
    if isinstance(items, dict) and items.get("type") != "object":
        found.extend(f"each {c}" for c in _constraints(items))
    return found


def _walk(node: dict[str, Any], path: str, required: bool) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every field below `node` (depth first, in schema order), with whether it is required."""
    yield path, node, required
    target = node.get("items") if node.get("type") == "array" else node
    if not isinstance(target, dict):
        return
    prefix = f"{path}[]" if node.get("type") == "array" else path
    needed = set(target.get("required", []))
    for name, child in target.get("properties", {}).items():
        yield from _walk(child, f"{prefix}.{name}", name in needed)


def _rules_of(node: dict[str, Any], path: str) -> Iterator[tuple[str, str, str]]:
    for owner in (node, node.get("items") or {}):
        for rule in owner.get("x-kubernetes-validations", []):
            yield path, rule["rule"], rule["message"]


def field_paths(crd: dict[str, Any]) -> list[str]:
    """The documented paths of a CRD: everything under spec and status (apiVersion etc. aside)."""
    return [row.path for row in build_reference(crd, "", strict=False).rows]


def build_reference(crd: dict[str, Any], file: str, *, strict: bool = True) -> KindReference:
    """The reference of one CRD; with `strict`, missing descriptions raise ValueError."""
    spec = crd["spec"]
    version = next(v for v in spec["versions"] if v.get("storage"))
    root = version["schema"]["openAPIV3Schema"]
    kind = spec["names"]["kind"]
    docs = FIELD_DOCS.get(kind, {})
    ref = KindReference(
        kind=kind,
        file=file,
        group=spec["group"],
        version=version["name"],
        scope=spec["scope"],
        plural=spec["names"]["plural"],
        short_names=list(spec["names"].get("shortNames", [])),
        description=root.get("description", ""),
        columns=list(version.get("additionalPrinterColumns", [])),
    )
    missing = []
    top_required = set(root.get("required", []))
    for top in ("spec", "status"):
        if top not in root.get("properties", {}):
            continue
        top_node = root["properties"][top]
        if top_node.get("x-kubernetes-preserve-unknown-fields") and not top_node.get("properties"):
            continue
        for path, node, required in _walk(top_node, top, top in top_required):
            ref.rules.extend(_rules_of(node, path))
            # Ours, written for the field; else the schema's (often its type's docstring), else
            # what the type of its items says.
            items = node.get("items")
            texts = [
                docs.get(path, ""),
                node.get("description", ""),
                items.get("description", "") if isinstance(items, dict) else "",
            ]
            text = next((t.strip() for t in texts if t.strip()), "")
            if not text and path != top:
                missing.append(path)
            ref.rows.append(
                FieldRow(
                    path=path,
                    type=_type_of(node),
                    required=required,
                    default=node.get("default"),
                    constraints=_constraints(node),
                    description=text,
                )
            )
    if strict:
        known = {row.path for row in ref.rows}
        stale = sorted(set(docs) - known)
        if missing or stale:
            lines = [f"{kind}: the field reference is incomplete:"]
            lines += [f"  {p}: no description (add one in tools/fielddocs.py)" for p in missing]
            lines += [f"  {p}: described in tools/fielddocs.py but not in the CRD (remove it)" for p in stale]
            raise ValueError("\n".join(lines))
    return ref


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# Characters Markdown would read inside inline HTML, or the table would split a cell at.
_MARKDOWN_SPECIAL = str.maketrans({c: f"&#{ord(c)};" for c in "|*_`\\[]<>"})


def _code(text: str) -> str:
    """Code in a table cell, as HTML: a Markdown code span would show `\\|` for a `|`."""
    return f"<code>{html.escape(text, quote=False).translate(_MARKDOWN_SPECIAL)}</code>"


def _anchor(path: str) -> str:
    return path.replace("[]", "").replace(".", "-").lower()


def render_reference(ref: KindReference) -> str:
    """The Markdown page of one kind."""
    out = [HEADER.format(file=ref.file, command=REGENERATE), f"# {ref.kind}\n"]
    intro = KIND_DOCS.get(ref.kind, "")
    out.append(f"{ref.description}\n")
    if intro:
        out.append(f"{intro}\n")
    names = ", ".join(f"`{n}`" for n in [ref.plural, *ref.short_names])
    out.append("| | |\n|---|---|")
    out.append(f"| API | `{ref.group}/{ref.version}`, kind `{ref.kind}` |")
    out.append(f"| scope | {'cluster' if ref.scope == 'Cluster' else 'namespaced'} |")
    out.append(f"| names for kubectl | {names} |\n")
    if ref.columns:
        out.append("## Columns of `kubectl get`\n")
        out.append("| column | from | meaning |\n|---|---|---|")
        for col in ref.columns:
            wide = " (with `-o wide`)" if col.get("priority", 0) > 0 else ""
            out.append(f"| {col['name']} | `{col['jsonPath']}` | {_cell(col.get('description', ''))}{wide} |")
        out.append("")
    for top in ("spec", "status"):
        rows = [r for r in ref.rows if r.path == top or r.path.startswith(top + ".")]
        if not rows:
            continue
        out.append(f"## `{top}`\n")
        if top == "status":
            out.append("Written by the operator alone, through the status subresource.\n")
        out.append("| field | type | meaning | required, default, validation |\n|---|---|---|---|")
        for row in rows:
            if row.path == top:
                continue
            notes = []
            if row.required:
                notes.append("**required**")
            if row.default is not None and top == "spec":
                notes.append(f"default `{json.dumps(row.default, ensure_ascii=False)}`")
            notes.extend(row.constraints)
            out.append(
                f'| <a id="{_anchor(row.path)}"></a>`{row.path}` | `{row.type}` '
                f"| {_cell(row.description)} | {_cell('; '.join(notes))} |"
            )
        out.append("")
    if ref.rules:
        out.append("## Checked by the API server\n")
        out.append(
            "These CEL rules are in the CRD, so the API server refuses an object that breaks "
            "them with the message shown, even while the operator's admission webhook is down.\n"
        )
        out.append("| on | rule | message |\n|---|---|---|")
        for path, rule, message in ref.rules:
            out.append(f"| `{path}` | {_code(rule)} | {_cell(message)} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def reference_filename(kind: str) -> str:
    return f"{kind.lower()}.md"


def render_all(crds_dir: Path) -> dict[str, str]:
    """`{file name: page}` for every CRD file in `crds_dir`, in a stable order."""
    pages = {}
    for path in sorted(crds_dir.glob("*.zsp.dev.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        ref = build_reference(crd, path.name)
        pages[reference_filename(ref.kind)] = render_reference(ref)
    return pages


def stale_pages(pages: dict[str, str], out_dir: Path) -> list[str]:
    """One line per reference page that is missing or differs from what the CRDs give."""
    problems = []
    for name, text in pages.items():
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the CRDs")
    return problems


def _repo_root() -> Path:
    # operator/zsp_operator/tools/refdocs.py -> the checkout
    return Path(__file__).resolve().parents[3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zsp_operator.tools.refdocs",
        description="Write (or --check) the field reference pages from the CRD schemas.",
    )
    root = _repo_root()
    parser.add_argument("--crds", type=Path, default=root / "crds", help="the CRD files (default: crds/)")
    parser.add_argument("--out", type=Path, default=root / "docs" / "reference", help="where the pages go")
    parser.add_argument("--check", action="store_true", help="exit 1 when the pages are stale")
    args = parser.parse_args(argv)
    try:
        pages = render_all(args.crds)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    if not pages:  # run outside a checkout, or pointed at the wrong folder
        print(f"{args.crds}: no *.zsp.dev.yaml CRD files; pass --crds and --out", file=sys.stderr)
        return 2
    if args.check:
        problems = stale_pages(pages, args.out)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"run `{REGENERATE}` and commit the result", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        path = args.out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
