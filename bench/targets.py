"""Where a benchmark runs: which API server, and the operator as its own `zsp run` process.

Targets (`--target`):
  sim      the in-memory API server in a thread of the benchmark's process (it shares that
           interpreter with the benchmark's client, not with the operator);
  envtest  a real etcd + kube-apiserver + kube-controller-manager from KUBEBUILDER_ASSETS
           (`tests/controlplane/build.sh` builds them), started on loopback for the run;
  FILE     any cluster, from an admin kubeconfig (the operator then needs `--dev` webhooks on
           127.0.0.1 to be reachable from its API server: a local control plane).

The operator always runs as `python -m zsp_operator run --dev` in a process of its own, as its
ServiceAccount `zsp-system/zsp-operator` with `deploy/operator-rbac.yaml`, so its figures are
not bound by an API server sharing its interpreter.

The API calls the operator makes are counted by the API server: on the sim by a hook on its
request handler, on envtest from kube-apiserver's own audit log (Metadata level, the operator's
user only). An external cluster's calls are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from zsp_operator.kube import AlreadyExists, Kube
from zsp_operator.kube.identity import request_token
from zsp_operator.kube.resources import BY_KIND, Resource
from zsp_operator.tools.crdgen import build_crds

REPO = Path(__file__).resolve().parents[1]
OPERATOR_RBAC = REPO / "deploy" / "operator-rbac.yaml"
OPERATOR_USER = "system:serviceaccount:zsp-system:zsp-operator"
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False)
Kubeconfig = Callable[[str | None], dict[str, Any]]


class CallCounter(Protocol):
    """The operator's API calls so far, by verb (`patch status`) and by verb and resource."""

    def snapshot(self) -> Counter[str]: ...
    def detail(self) -> Counter[str]: ...


class NotCounted:
    def snapshot(self) -> Counter[str]:
        return Counter()

    def detail(self) -> Counter[str]:
        return Counter()


@dataclass
class Target:
    name: str  # what RESULTS.md calls the tier
    kubeconfig: Kubeconfig  # an admin kubeconfig, or one for a bearer token
    calls: CallCounter = field(default_factory=NotCounted)

    @property
    def counted(self) -> bool:
        return not isinstance(self.calls, NotCounted)


# --- the in-memory API server -------------------------------------------------------------


class SimCalls:
    """Counts the requests the in-memory API server answers for the operator's token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._detail: Counter[str] = Counter()
        self.operator_token: str | None = None

    def install(self) -> None:
        from zsp_operator.sim import http

        original = http.ApiHandler.handle
        calls = self

        async def handle(handler: Any, request: Any) -> Any:
            calls._record(http, request)
            return await original(handler, request)

        http.ApiHandler.handle = handle  # type: ignore[method-assign]

    def _record(self, http: Any, request: Any) -> None:
        token = request.headers.get("Authorization", "").partition(" ")[2].strip()
        if not token or token != self.operator_token:
            return
        info = http.parse_resource_path(request.method, request.path, request.query)
        verb = info.verb if info is not None else request.method.lower()
        if info is not None and info.subresource:
            verb = f"{verb} {info.subresource}"
        if verb != "watch":
            resource = info.resource if info is not None else request.path
            with self._lock:
                self._counts[verb] += 1
                self._detail[f"{verb} {resource}"] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def detail(self) -> Counter[str]:
        with self._lock:
            return Counter(self._detail)


# --- a real control plane, counting from its audit log -----------------------------------


# Metadata for the operator's requests once they completed; nothing for anyone else.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


class AuditLogCalls:
    """The operator's calls as kube-apiserver's audit log records them (watches left out)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._counts: Counter[str] = Counter()
        self._detail: Counter[str] = Counter()
        self._forbidden: Counter[str] = Counter()

    def _read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as log:
            log.seek(self._offset)
            for line in log:
                if not line.endswith(b"\n"):
                    break  # half written: read it next time
                self._offset += len(line)
                self._count(json.loads(line))

    def _count(self, event: dict[str, Any]) -> None:
        if event.get("stage") != "ResponseComplete":
            return
        ref = event.get("objectRef") or {}
        if (event.get("responseStatus") or {}).get("code") == 403:
            what = ref.get("resource", event.get("requestURI"))
            if ref.get("subresource"):
                what = f"{what}/{ref['subresource']}"
            self._forbidden[f"{event['verb']} {what}"] += 1
        if event.get("verb") == "watch":
            return
        verb = event["verb"]
        if verb == "deletecollection":
            verb = "delete"
        if ref.get("subresource"):
            verb = f"{verb} {ref['subresource']}"
        self._counts[verb] += 1
        self._detail[f"{verb} {ref.get('resource', event.get('requestURI'))}"] += 1

    def snapshot(self) -> Counter[str]:
        self._read()
        return Counter(self._counts)

    def detail(self) -> Counter[str]:
        self._read()
        return Counter(self._detail)

    def forbidden(self) -> Counter[str]:
        """The operator's requests RBAC refused (403), watches included: what its RBAC lacks."""
        self._read()
        return Counter(self._forbidden)


def _tests_module(name: str) -> Any:
    """A helper module of the test suite (the control plane launcher and its tier set-up)."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    return __import__(name)


@contextlib.contextmanager
def envtest_target() -> Iterator[Target]:
    envtest = _tests_module("envtest")
    with tempfile.TemporaryDirectory(prefix="zsp-bench-audit-") as tmp:
        policy, log = Path(tmp) / "audit-policy.yaml", Path(tmp) / "audit.log"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY), encoding="utf-8")
        extra = [f"--audit-policy-file={policy}", f"--audit-log-path={log}", "--audit-log-maxbackup=0"]
        with envtest.control_plane({}, apiserver_extra_args=extra) as plane:

            def kubeconfig(token: str | None = None) -> dict[str, Any]:
                ca = plane.ca_pem.encode("ascii")
                config: dict[str, Any] = envtest.admin_kubeconfig(
                    plane.server, ca, token or plane.admin_token
                )
                return config

            asyncio.run(_install_crds(kubeconfig))
            name = "envtest (etcd, kube-apiserver and kube-controller-manager built from tests/controlplane)"
            yield Target(name, kubeconfig, AuditLogCalls(log))


@contextlib.contextmanager
def sim_target() -> Iterator[Target]:
    from zsp_operator.sim import serve_in_thread

    calls = SimCalls()
    calls.install()
    with serve_in_thread(crds=build_crds()) as sim:
        yield Target("sim (the in-memory API server, in the benchmark's process)", sim.kubeconfig, calls)


@contextlib.contextmanager
def kubeconfig_target(path: str) -> Iterator[Target]:
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))

    def kubeconfig(token: str | None = None) -> dict[str, Any]:
        if token is None:
            return dict(config)
        current = next(x for x in config["contexts"] if x["name"] == config["current-context"])
        user = current["context"]["user"]
        users = [{"name": user, "user": {"token": token}}]
        return {**config, "users": users}

    asyncio.run(_install_crds(kubeconfig))
    yield Target(f"cluster from {path}", kubeconfig)


@contextlib.contextmanager
def target(choice: str) -> Iterator[Target]:
    if choice == "sim":
        with sim_target() as found:
            yield found
    elif choice == "envtest":
        with envtest_target() as found:
            yield found
    else:
        with kubeconfig_target(choice) as found:
            yield found


async def _install_crds(kubeconfig: Kubeconfig) -> None:
    """Our CRDs, then each kind listed once: a kind Established but whose storage is still
    initializing answers 429, which the client sends again after the server's Retry-After."""
    async with await Kube.from_dict(kubeconfig(None)) as admin:
        for crd in build_crds():
            with contextlib.suppress(AlreadyExists):
                await admin.create(CRDS, crd)
        for crd in build_crds():
            spec, names = crd["spec"], crd["spec"]["names"]
            await admin.list(
                Resource(spec["group"], spec["versions"][0]["name"], names["plural"], names["kind"])
            )


# --- the operator's identity ------------------------------------------------------------------


async def install_operator_rbac(admin: Kube) -> None:
    """deploy/operator-rbac.yaml as it is: the namespace, ServiceAccount and their RBAC."""
    for doc in yaml.safe_load_all(OPERATOR_RBAC.read_text(encoding="utf-8")):
        with contextlib.suppress(AlreadyExists):
            await admin.create(BY_KIND[doc["kind"]], doc)


async def operator_identity(admin: Kube, calls: CallCounter) -> str:
    """A TokenRequest token for the operator's ServiceAccount; the sim counts its requests."""
    namespace, _, name = OPERATOR_USER.removeprefix("system:serviceaccount:").partition(":")
    token = await request_token(admin, namespace, name, seconds=3600)
    if isinstance(calls, SimCalls):
        calls.operator_token = token
    return token


# --- the operator as its own process ---------------------------------------------------------


_LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>WARNING|ERROR|CRITICAL) (?P<name>\S+): (?P<message>.*)$")


class OperatorProcess:
    """`python -m zsp_operator run --dev` as its own ServiceAccount; its log kept in a file."""

    def __init__(self, kubeconfig: Kubeconfig, calls: CallCounter) -> None:
        self._kubeconfig = kubeconfig
        self._calls = calls
        self._dir = Path(tempfile.mkdtemp(prefix="zsp-bench-operator-"))
        self.log = self._dir / "operator.log"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        async with await Kube.from_dict(self._kubeconfig(None)) as admin:
            await install_operator_rbac(admin)
            token = await operator_identity(admin, self._calls)
        async with await Kube.from_dict(self._kubeconfig(token)) as operator:
            user = (await operator.whoami()).get("username")
        if user != OPERATOR_USER:
            raise RuntimeError(f"the operator's kubeconfig authenticates as {user}, not {OPERATOR_USER}")
        config = self._dir / "operator.kubeconfig"
        config.write_text(yaml.safe_dump(self._kubeconfig(token)), encoding="utf-8")
        config.chmod(0o600)
        command = [
            sys.executable, "-m", "zsp_operator", "run", "--dev", "--kubeconfig", str(config),
            "--webhook-port", "0", "--metrics-port", "0", "--health-port", "0",
        ]  # fmt: skip
        self._launch(command)

    def _launch(self, command: list[str]) -> None:
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def failure(self) -> str:
        tail = self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        return f"the operator exited with {self._process.poll() if self._process else None}:\n" + "\n".join(
            tail
        )

    def warnings(self) -> str:
        """The operator's warnings and errors by their first words, so surprises show in the report."""
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _LOG_LINE.match(line)
            if match is None or not match["name"].startswith("zsp_operator"):
                continue
            key = f"{match['level']} {match['name']}: {' '.join(match['message'].split()[:2])}"
            counts[key] += 1
            examples.setdefault(key, match["message"])
        if not counts:
            return "No warnings from the operator."
        lines = ["| operator warning | count | first example |", "|---|---:|---|"]
        lines += [f"| {key} | {n} | {examples[key][:200]} |" for key, n in counts.most_common()]
        return "\n".join(lines)

    def rss_mb(self) -> float | None:
        """The operator process's resident memory now, from /proc."""
        if self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None
