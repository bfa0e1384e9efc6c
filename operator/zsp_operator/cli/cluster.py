"""How the API verbs find their cluster and namespace, and how their failures read.

Like kubectl: `--kubeconfig`, then `$KUBECONFIG` (its first file, as `Kube.connect` reads
it), then `~/.kube/config`, then the in-cluster config; `--context` picks a context; the
namespace is `-n`, else the context's namespace, else the pod's own namespace in a cluster,
else `default`. Every failure becomes one line on stderr (`zsp: ...`), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zsp_operator.kube import Kube, KubeError, Unauthorized

EXIT_OK = 0
EXIT_NOT_GRANTED = 1  # the outcome is a denial, a failure, or no outcome before the wait ran out
EXIT_ERROR = 2  # bad input, or the API refused or could not be reached

DEFAULT_NAMESPACE = "default"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class CliError(Exception):
    """Something the user can act on; printed as `zsp: <message>` with exit status 2."""


@dataclass(frozen=True)
class Target:
    """Where a verb acts: the kubeconfig file (None in a cluster), its context, the namespace."""

    kubeconfig: str | None
    context: str | None
    namespace: str


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", metavar="NAMESPACE", help="default: the context's namespace")
    parser.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, then ~/.kube/config")
    parser.add_argument("--context", metavar="NAME", help="the kubeconfig context to use")


def kubeconfig_path(flag: str | None, environ: Mapping[str, str], home: Path) -> str | None:
    """The kubeconfig file to read, or None to use the in-cluster config."""
    if flag:
        return flag
    first = environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if first:
        return first
    default = home / ".kube" / "config"
    return str(default) if default.exists() else None


def context_namespace(config: Mapping[str, Any], context: str | None) -> str | None:
    """The namespace the chosen (or current) context names, if any."""
    wanted = context or config.get("current-context")
    for entry in config.get("contexts") or []:
        if isinstance(entry, Mapping) and entry.get("name") == wanted:
            namespace = (entry.get("context") or {}).get("namespace")
            return str(namespace) if namespace else None
    return None


def _read_kubeconfig(path: str) -> Mapping[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise CliError(f"cannot read kubeconfig {path}: {err.strerror or err}") from err
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise CliError(f"kubeconfig {path} is not valid YAML: {err}") from err
    if not isinstance(config, Mapping):
        raise CliError(f"kubeconfig {path} is not a kubeconfig (expected a mapping)")
    return config


def resolve_target(args: argparse.Namespace) -> Target:
    path = kubeconfig_path(getattr(args, "kubeconfig", None), os.environ, Path.home())
    context = getattr(args, "context", None)
    namespace = getattr(args, "namespace", None)
    if path is None:
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise CliError(
                "no cluster to talk to: no --kubeconfig, no KUBECONFIG, no ~/.kube/config, "
                "and not running inside a cluster"
            )
        if namespace is None and IN_CLUSTER_NAMESPACE.exists():
            namespace = IN_CLUSTER_NAMESPACE.read_text(encoding="utf-8").strip() or None
    elif namespace is None:
        namespace = context_namespace(_read_kubeconfig(path), context)
    return Target(path, context, namespace or DEFAULT_NAMESPACE)


def api_error_message(err: KubeError, server: str) -> str:
    """One line for a failed API call: the API's own words where it has them."""
    if isinstance(err, Unauthorized):
        return (
            f"the API server at {server} refused the credentials (Unauthorized): check the kubeconfig's user"
        )
    if err.status == 0:
        return f"cannot reach the API server at {server}: {err.message}"
    if 400 <= err.status < 500 and err.message:
        # Forbidden, Invalid, AlreadyExists, admission webhook refusals (400): the API says it best.
        return err.message
    detail = f": {err.message}" if err.message else ""
    return f"the API server at {server} answered {err.status} {err.reason}{detail}"


def not_found(name: str, namespace: str) -> CliError:
    return CliError(f'accessrequest "{name}" not found in namespace "{namespace}"')


Verb = Callable[[Kube, Target], Awaitable[int]]


def run_verb(args: argparse.Namespace, verb: Verb) -> int:
    """Resolve the target, connect, run `verb`, and turn every failure into one line."""
    try:
        target = resolve_target(args)
    except CliError as err:
        return fail(str(err))
    return asyncio.run(_connected(target, verb))


async def _connected(target: Target, verb: Verb) -> int:
    try:
        kube = await Kube.connect(target.kubeconfig, target.context)
    # The loader's errors are kubernetes_asyncio's own types, which only kube/ may import.
    except Exception as err:
        where = f"kubeconfig {target.kubeconfig}" if target.kubeconfig else "the in-cluster config"
        context = f" (context {target.context})" if target.context else ""
        return fail(f"cannot use {where}{context}: {err}")
    server = kube.connection.server
    try:
        async with kube:
            return await verb(kube, target)
    except CliError as err:
        return fail(str(err))
    except KubeError as err:
        return fail(api_error_message(err, server))
    except (OSError, TimeoutError) as err:
        return fail(f"cannot reach the API server at {server}: {err}")


def fail(message: str) -> int:
    """Print each line of `message` as `zsp: <line>` on stderr; the exit status for errors."""
    for line in message.splitlines() or [""]:
        print(f"zsp: {line}", file=sys.stderr)
    return EXIT_ERROR


def note(message: str) -> None:
    """Progress for a person, on stderr so stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)
