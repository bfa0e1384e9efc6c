"""`zsp sim`: run the in-memory Kubernetes API server in the foreground (tests and demos only).

It writes an admin kubeconfig so that `kubectl --kubeconfig FILE get ns` works against it.
By default the operator's own CRDs are served; `--crds DIR` serves the YAML files in DIR
instead, and `--no-crds` none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import yaml

DEFAULT_KUBECONFIG = Path("zsp-sim.kubeconfig")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run the in-memory Kubernetes API server (for tests and demos)",
        description=(
            "Serve an in-memory Kubernetes API server on 127.0.0.1 until interrupted, and write "
            "an admin kubeconfig for it. It is a test and demo double, not a cluster."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    parser.add_argument("--kubeconfig-out", type=Path, default=DEFAULT_KUBECONFIG, metavar="FILE",
                        help=f"where to write the admin kubeconfig (default: {DEFAULT_KUBECONFIG})")
    crds = parser.add_mutually_exclusive_group()
    crds.add_argument("--crds", type=Path, metavar="DIR", help="serve the CRDs in the YAML files of DIR")
    crds.add_argument("--no-crds", action="store_true", help="serve no custom resources")
    parser.set_defaults(func=run)


def load_crds(directory: Path | None, none: bool) -> list[dict[str, Any]]:
    """CRD manifests from DIR's *.yaml/*.yml files, or the operator's generated CRDs."""
    if none:
        return []
    if directory is None:
        from zsp_operator.tools.crdgen import render_crd_files

        texts = list(render_crd_files().values())
    else:
        texts = [path.read_text(encoding="utf-8") for path in sorted(directory.glob("*.y*ml"))]
    return [
        document
        for text in texts
        for document in yaml.safe_load_all(text)
        if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition"
    ]


def run(args: argparse.Namespace) -> int:
    crds = load_crds(args.crds, args.no_crds)
    return asyncio.run(_serve(crds, args.port, args.kubeconfig_out))


async def _serve(crds: list[dict[str, Any]], port: int, kubeconfig_out: Path) -> int:
    from zsp_operator.sim import SimServer  # the test double loads only for this command

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    # HTTPS, because kubectl sends bearer tokens only over TLS.
    async with SimServer(crds=crds, port=port, tls=True) as sim:
        path = sim.write_kubeconfig(kubeconfig_out)
        print(f"in-memory API server listening on {sim.url} ({len(crds)} CRDs)", flush=True)
        print(f"admin kubeconfig written to {path.resolve()}", flush=True)
        print(f"try: kubectl --kubeconfig {path} get namespaces", flush=True)
        await stop.wait()
    print("stopped", flush=True)
    return 0
