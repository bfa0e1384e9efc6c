"""`zsp crds`: print, write or check the CRD manifests generated from the models.

- `zsp crds`: all three CRDs to stdout, ready for `kubectl apply -f -`;
- `zsp crds --out crds`: (re)write `crds/<plural>.zsp.dev.yaml`;
- `zsp crds --check crds`: exit 1 and list the files that differ from the generator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zsp_operator.tools.crdgen import render_crd_files

GENERATED_GLOB = "*.zsp.dev.yaml"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "crds",
        help="print, write or check the CRD manifests generated from the models",
        description=(
            "The CustomResourceDefinitions of AccessPolicy, AccessRequest and TaskGrant, "
            "generated from the models. Without options they are printed to stdout."
        ),
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--out", type=Path, metavar="DIR", help="write one file per CRD into DIR (created if missing)"
    )
    target.add_argument(
        "--check",
        type=Path,
        metavar="DIR",
        help="compare DIR with the generator; exit 1 listing files that differ",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = render_crd_files()
    if args.out is not None:
        return write(files, args.out)
    if args.check is not None:
        return check(files, args.check)
    sys.stdout.write("---\n".join(files.values()))
    return 0


def write(files: dict[str, str], out: Path) -> int:
    """Write every file; leave identical ones untouched so their mtime stays."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


def differences(files: dict[str, str], directory: Path) -> list[str]:
    """One line per file that is missing, different, or generated-looking but unknown."""
    problems = []
    for name, text in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the models")
    if directory.is_dir():
        for path in sorted(directory.glob(GENERATED_GLOB)):
            if path.name not in files:
                problems.append(f"{path}: not generated any more (delete it)")
    return problems


def check(files: dict[str, str], directory: Path) -> int:
    problems = differences(files, directory)
    if not problems:
        print(f"{directory}: the CRDs match the models")
        return 0
    for line in problems:
        print(line, file=sys.stderr)
    print(f"run `zsp crds --out {directory}` and commit the result", file=sys.stderr)
    return 1
