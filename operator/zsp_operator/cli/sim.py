"""`zsp sim`: run the in-memory Kubernetes API server in the foreground (tests and demos only).

It writes an admin kubeconfig so that `kubectl --kubeconfig FILE get ns` works against it.
By default the operator's own CRDs are served; `--crds DIR` serves the YAML files in DIR
instead, and `--no-crds` none. The `--audit-*` flags send audit events to a webhook as
kube-apiserver's flags of the same names do (batch mode).
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
    audit = parser.add_argument_group("auditing (as kube-apiserver's flags of the same names)")
    audit.add_argument("--audit-policy-file", type=Path, metavar="FILE",
                       help="an audit.k8s.io/v1 Policy: which requests to log, at which level")
    audit.add_argument("--audit-webhook-config-file", type=Path, metavar="FILE",
                       help="a kubeconfig naming the webhook that receives the EventLists")
    audit.add_argument("--audit-webhook-batch-max-size", type=int, default=400, metavar="N",
                       help="events per batch at most (default: 400)")
    audit.add_argument("--audit-webhook-batch-max-wait", type=_seconds, default=30.0, metavar="DURATION",
                       help="how long an event waits for its batch to fill: 30s, 500ms, 1m or seconds "
                            "(default: 30s)")
    audit.add_argument("--audit-webhook-initial-backoff", type=_seconds, default=10.0, metavar="DURATION",
                       help="wait before retrying a failed batch, growing 1.5x each time (default: 10s)")
    parser.set_defaults(func=run)


def _seconds(text: str) -> float:
    """A Go-style duration as kube-apiserver takes (`500ms`, `30s`, `1m`), or plain seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}  # "ms" is tried before "s" and "m"
    unit = next((suffix for suffix in units if text.endswith(suffix)), "")
    try:
        value = float(text[: -len(unit)] if unit else text) * units.get(unit, 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


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
    if (args.audit_policy_file is None) != (args.audit_webhook_config_file is None):
        print("zsp sim: --audit-policy-file and --audit-webhook-config-file go together", flush=True)
        return 2
    audit: dict[str, Any] = {}
    if args.audit_policy_file is not None:
        audit = {
            "audit_policy_file": args.audit_policy_file,
            "audit_webhook_config_file": args.audit_webhook_config_file,
            "audit_webhook_batch_max_size": args.audit_webhook_batch_max_size,
            "audit_webhook_batch_max_wait": args.audit_webhook_batch_max_wait,
            "audit_webhook_initial_backoff": args.audit_webhook_initial_backoff,
        }
    return asyncio.run(_serve(crds, args.port, args.kubeconfig_out, audit))


async def _serve(
    crds: list[dict[str, Any]], port: int, kubeconfig_out: Path, audit: dict[str, Any] | None = None
) -> int:
    from zsp_operator.sim import SimServer  # the test double loads only for this command

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    # HTTPS, because kubectl sends bearer tokens only over TLS.
    async with SimServer(crds=crds, port=port, tls=True, **(audit or {})) as sim:
        path = sim.write_kubeconfig(kubeconfig_out)
        print(f"in-memory API server listening on {sim.url} ({len(crds)} CRDs)", flush=True)
        print(f"admin kubeconfig written to {path.resolve()}", flush=True)
        print(f"try: kubectl --kubeconfig {path} get namespaces", flush=True)
        if audit:
            print(f"audit events go to the webhook of {audit['audit_webhook_config_file']}", flush=True)
        await stop.wait()
    print("stopped", flush=True)
    return 0
