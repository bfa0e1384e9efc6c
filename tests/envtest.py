"""A real control plane for the test suite: etcd + kube-apiserver [+ kube-controller-manager].

It follows controller-runtime's envtest convention (`pkg/envtest`,
`pkg/internal/testing/controlplane`): `KUBEBUILDER_ASSETS` names a folder holding the
binaries, as `setup-envtest use -p path` prints it. Everything listens on free loopback
ports, lives in a temporary folder and is torn down (terminate, then kill) by `stop()`.

How it differs from envtest, and why:
- authentication is a static `--token-auth-file`: an admin token (user `zsp-admin` in group
  `system:masters`) and one token per roster person, because stories act *as* people and
  static tokens cannot be added at runtime;
- kube-controller-manager runs when its binary is present (envtest never runs it) so that
  the garbage collector, the namespace controller and ClusterRole aggregation (`view`,
  `edit`, `admin` are empty without it) behave as in a cluster;
- webhooks are reached through `clientConfig.url` on 127.0.0.1, so nothing needs DNS, or
  through a Service, whose ClusterIP is on loopback (SERVICE_CLUSTER_IP_RANGE).

The pure parts (argument lists, certificates, token file) are unit-tested in
tests/test_envtest_launcher.py; the rest needs the binaries.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import csv
import datetime as dt
import io
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from zsp_operator.serving.pki import issue_serving_pki, pem_key

ASSETS_ENV = "KUBEBUILDER_ASSETS"
ADMIN_USER = "zsp-admin"
ADMIN_GROUPS = ("system:masters",)
# Services get loopback ClusterIPs, so a webhook behind a Service (the chart's way) is reached
# here as in a cluster: kube-apiserver dials the ClusterIP and the Service's port, and all of
# 127.0.0.0/8 is this machine. (Endpoint addresses may not be loopback; ClusterIPs may.)
SERVICE_CLUSTER_IP_RANGE = "127.0.96.0/20"
# Controllers the stories rely on (old names: they are aliases of the 1.28+ canonical names
# `garbage-collector-controller`, ... so one spelling works on every release).
CONTROLLERS = (
    "garbagecollector",  # ownerReferences: a deleted TaskGrant takes its Role/RoleBinding/SA
    "namespace",  # a deleted namespace is emptied and goes away instead of Terminating forever
    "serviceaccount",  # the `default` ServiceAccount in each namespace
    "serviceaccount-token",  # legacy token Secrets get their token (a persistence risk we test)
    "clusterrole-aggregation",  # fills `view`/`edit`/`admin` from the aggregate-to-* roles
)
LOG_TAIL_LINES = 40


class AssetsMissing(RuntimeError):
    """The real tier cannot run here; the message says why (used as the skip reason)."""


@dataclass(frozen=True)
class Assets:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None


def find_assets(folder: str | None) -> Assets:
    """The binaries in `folder` (the value of KUBEBUILDER_ASSETS).

    Raises:
        AssetsMissing: unset, not a folder, or etcd / kube-apiserver missing or not executable.
    """
    if not folder:
        raise AssetsMissing(
            f"{ASSETS_ENV} is not set: point it at a folder with etcd and kube-apiserver "
            "(e.g. `export KUBEBUILDER_ASSETS=$(setup-envtest use -p path)`)"
        )
    root = Path(folder)
    if not root.is_dir():
        raise AssetsMissing(f"{ASSETS_ENV}={folder} is not a folder")

    def binary(name: str) -> Path | None:
        path = root / name
        return path if path.is_file() and os.access(path, os.X_OK) else None

    etcd, apiserver = binary("etcd"), binary("kube-apiserver")
    missing = [name for name, path in (("etcd", etcd), ("kube-apiserver", apiserver)) if not path]
    if missing or etcd is None or apiserver is None:
        raise AssetsMissing(f"{ASSETS_ENV}={folder} has no executable {' or '.join(missing)}")
    return Assets(etcd, apiserver, binary("kube-controller-manager"))


# --- identities ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticToken:
    """One line of the API server's --token-auth-file."""

    token: str
    username: str
    uid: str
    groups: tuple[str, ...] = ()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def static_tokens(users: Mapping[str, Sequence[str]]) -> tuple[StaticToken, dict[str, StaticToken]]:
    """A fresh admin token and one token per roster person."""
    admin = StaticToken(new_token(), ADMIN_USER, "uid-" + ADMIN_USER, ADMIN_GROUPS)
    people = {
        name: StaticToken(new_token(), name, f"uid-{name}", tuple(groups)) for name, groups in users.items()
    }
    return admin, people


def token_auth_file(tokens: Sequence[StaticToken]) -> str:
    """CSV as kube-apiserver reads it: `token,user,uid,"group1,group2"` (groups optional).

    Groups are one column, split on commas by the API server, hence quoted. A person without
    groups gets three columns: an empty fourth column would mean one group named "".
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for t in tokens:
        for part in (t.token, t.username, t.uid, *t.groups):
            if not part or any(ch in part for ch in ',"\r\n'):
                raise ValueError(f"{part!r} cannot be written to a token file")
        row = [t.token, t.username, t.uid]
        if t.groups:
            row.append(",".join(t.groups))
        writer.writerow(row)
    return out.getvalue()


# --- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM material for one control plane."""

    ca_cert: bytes
    ca_key: bytes
    serving_cert: bytes
    serving_key: bytes
    sa_private_key: bytes  # signs service-account tokens (kube-apiserver, controller-manager)
    sa_public_key: bytes  # verifies them


def make_pki(
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    *,
    now: dt.datetime | None = None,
    valid_for: dt.timedelta = dt.timedelta(days=2),
) -> Pki:
    """A CA, a serving certificate for `hosts` signed by it, and a service-account key pair."""
    serving = issue_serving_pki(hosts, common_name="kube-apiserver", now=now, valid_for=valid_for)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Pki(
        ca_cert=serving.ca_cert,
        ca_key=serving.ca_key,
        serving_cert=serving.serving_cert,
        serving_key=serving.serving_key,
        sa_private_key=pem_key(sa_key),
        sa_public_key=sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


# --- command lines ------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where one control plane keeps its files, and its ports."""

    root: Path
    etcd_port: int
    etcd_peer_port: int
    apiserver_port: int

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def etcd_peer_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_peer_port}"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def path(self, name: str) -> Path:
        return self.root / name


def etcd_args(binary: Path, layout: Layout, *, no_fsync: bool) -> list[str]:
    """etcd on loopback with a throw-away data dir (envtest's flags).

    `--listen-peer-urls` gets its own free port: the default 2380 would clash with a second
    control plane (or a real etcd) on the machine. `--unsafe-no-fsync` exists from etcd 3.5.
    """
    args = [
        str(binary),
        f"--data-dir={layout.path('etcd-data')}",
        f"--listen-client-urls={layout.etcd_url}",
        f"--advertise-client-urls={layout.etcd_url}",
        f"--listen-peer-urls={layout.etcd_peer_url}",
    ]
    if no_fsync:
        args.append("--unsafe-no-fsync=true")
    return args


def apiserver_args(binary: Path, layout: Layout) -> list[str]:
    """kube-apiserver flags; each one is explained where it is not obvious."""
    return [
        str(binary),
        f"--etcd-servers={layout.etcd_url}",
        "--bind-address=127.0.0.1",
        f"--secure-port={layout.apiserver_port}",
        # The address of the `kubernetes` Service endpoints; loopback keeps it on this machine.
        "--advertise-address=127.0.0.1",
        # Nothing maintains the `kubernetes` Endpoints for a lone, short-lived server.
        "--endpoint-reconciler-type=none",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        f"--tls-cert-file={layout.path('apiserver.crt')}",
        f"--tls-private-key-file={layout.path('apiserver.key')}",
        f"--cert-dir={layout.path('cert-dir')}",
        f"--token-auth-file={layout.path('tokens.csv')}",
        "--authorization-mode=RBAC",
        # TokenRequest needs an issuer and a signing key; the public key verifies the tokens.
        # The issuer is the server's own URL, as envtest does.
        f"--service-account-issuer={layout.server}",
        f"--service-account-key-file={layout.path('sa.pub')}",
        f"--service-account-signing-key-file={layout.path('sa.key')}",
        # Webhooks are how the operator records who asked; both plugins are on by default in
        # current releases, named here so an old default list cannot drop them.
        "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
        # As envtest: without the serviceaccount controller no `default` ServiceAccount exists,
        # and this plugin would refuse every Pod that does not name one.
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
    ]


def controller_manager_args(binary: Path, layout: Layout) -> list[str]:
    """kube-controller-manager with only the controllers the stories rely on."""
    return [
        str(binary),
        f"--kubeconfig={layout.path('admin.kubeconfig')}",
        "--leader-elect=false",
        f"--controllers={','.join(CONTROLLERS)}",
        # Signs the tokens of legacy token Secrets (serviceaccount-token controller), with the
        # key whose public half the API server trusts; the CA goes into those Secrets.
        f"--service-account-private-key-file={layout.path('sa.key')}",
        f"--root-ca-file={layout.path('ca.crt')}",
        # No HTTPS endpoint of its own: nothing scrapes it, and no port to collide on.
        "--secure-port=0",
    ]


def admin_kubeconfig(server: str, ca_pem: bytes, token: str, name: str = "zsp-envtest") -> dict[str, Any]:
    """A kubeconfig for `server` with a bearer token and the CA inline."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on now.

    All sockets stay open until every port is picked, so the kernel cannot hand out one
    twice; the small race until the servers bind them is accepted, as envtest accepts it.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def supports_flag(binary: Path, flag: str) -> bool:
    """Whether `binary --help` mentions `--flag` (envtest probes etcd the same way)."""
    try:
        result = subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return f"--{flag}" in result.stdout + result.stderr


# --- processes ----------------------------------------------------------------------------


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class Process:
    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def exited(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=grace)

    def failure(self, what: str) -> RuntimeError:
        code = self.exited()
        state = f"exited with {code}" if code is not None else "still running"
        return RuntimeError(f"{self.name} {what} ({state}); last lines of {self.log}:\n{log_tail(self.log)}")


def wait_until(
    check: Callable[[], bool], process: Process, what: str, timeout: float, interval: float = 0.1
) -> None:
    """Poll `check` until it holds; fail early if `process` dies, with its log tail."""
    deadline = time.monotonic() + timeout
    while True:
        if process.exited() is not None:
            raise process.failure(f"died before it was {what}")
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            raise process.failure(f"was not {what} within {timeout:.0f}s")
        time.sleep(interval)


def http_get(url: str, *, token: str | None = None, ca_file: Path | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


class ControlPlane:
    """etcd + kube-apiserver [+ kube-controller-manager] for one test session.

    Use as a context manager, or call `start()` and `stop()`. After start: `server`,
    `ca_pem`, `admin_token`, `user_tokens`, `kubeconfig_path`, `has_controller_manager`.
    """

    def __init__(
        self,
        assets: Assets,
        users: Mapping[str, Sequence[str]],
        *,
        start_timeout: float = 90.0,
        keep_files: bool = False,
        apiserver_extra_args: Sequence[str] = (),
    ) -> None:
        self.assets = assets
        self.apiserver_extra_args = list(apiserver_extra_args)  # e.g. an audit log for benchmarks
        self.start_timeout = start_timeout
        self.keep_files = keep_files
        self.admin, self.people = static_tokens(users)
        etcd_port, etcd_peer_port, apiserver_port = free_ports(3)
        self.layout = Layout(
            root=Path(tempfile.mkdtemp(prefix="zsp-envtest-")),
            etcd_port=etcd_port,
            etcd_peer_port=etcd_peer_port,
            apiserver_port=apiserver_port,
        )
        self.pki = make_pki()
        self.processes: list[Process] = []
        self._stopped = False

    # attributes the test tier reads
    @property
    def server(self) -> str:
        return self.layout.server

    @property
    def ca_pem(self) -> str:
        return self.pki.ca_cert.decode("ascii")

    @property
    def ca_file(self) -> Path:
        return self.layout.path("ca.crt")

    @property
    def admin_token(self) -> str:
        return self.admin.token

    @property
    def user_tokens(self) -> dict[str, str]:
        return {name: t.token for name, t in self.people.items()}

    @property
    def kubeconfig_path(self) -> Path:
        return self.layout.path("admin.kubeconfig")

    @property
    def has_controller_manager(self) -> bool:
        return self.assets.kube_controller_manager is not None

    def write_files(self) -> None:
        """Certificates, keys, token file and admin kubeconfig (secrets: owner-only files)."""
        layout, pki = self.layout, self.pki
        layout.path("cert-dir").mkdir(parents=True, exist_ok=True)
        files = {
            "ca.crt": pki.ca_cert,
            "apiserver.crt": pki.serving_cert,
            "apiserver.key": pki.serving_key,
            "sa.key": pki.sa_private_key,
            "sa.pub": pki.sa_public_key,
            "tokens.csv": token_auth_file([self.admin, *self.people.values()]).encode(),
            "admin.kubeconfig": yaml.safe_dump(
                admin_kubeconfig(layout.server, pki.ca_cert, self.admin.token)
            ).encode(),
        }
        for name, content in files.items():
            path = layout.path(name)
            path.write_bytes(content)
            path.chmod(0o600)

    def start(self) -> None:
        atexit.register(self.stop)  # a crashed session still leaves no processes behind
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.write_files()
        layout = self.layout
        etcd = self._spawn(
            "etcd",
            etcd_args(self.assets.etcd, layout, no_fsync=supports_flag(self.assets.etcd, "unsafe-no-fsync")),
        )
        wait_until(
            lambda: json.loads(http_get(layout.etcd_url + "/health")[1]).get("health") == "true",
            etcd,
            "healthy",
            self.start_timeout,
        )

        apiserver = self._spawn(
            "kube-apiserver", apiserver_args(self.assets.kube_apiserver, layout) + self.apiserver_extra_args
        )
        wait_until(
            lambda: (
                http_get(layout.server + "/readyz", token=self.admin_token, ca_file=self.ca_file)[0] == 200
            ),
            apiserver,
            "ready (/readyz)",
            self.start_timeout,
        )

        if self.assets.kube_controller_manager is not None:
            manager = self._spawn(
                "kube-controller-manager",
                controller_manager_args(self.assets.kube_controller_manager, layout),
            )
            # Ready once ClusterRole aggregation has filled `view`: proof its controllers run.
            wait_until(self._view_is_aggregated, manager, "aggregating ClusterRoles", self.start_timeout)

    def _view_is_aggregated(self) -> bool:
        status, body = http_get(
            self.server + "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
            token=self.admin_token,
            ca_file=self.ca_file,
        )
        return status == 200 and bool(json.loads(body).get("rules"))

    def _spawn(self, name: str, args: list[str]) -> Process:
        process = Process(name, args, self.layout.path(f"{name}.log"))
        self.processes.append(process)
        process.start()
        return process

    def stop(self) -> None:
        """Stop in reverse start order (terminate, then kill) and remove the files."""
        if self._stopped:
            return
        self._stopped = True
        for process in reversed(self.processes):
            process.stop()
        if not self.keep_files:
            shutil.rmtree(self.layout.root, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def control_plane(
    users: Mapping[str, Sequence[str]],
    folder: str | None = None,
    *,
    apiserver_extra_args: Sequence[str] = (),
) -> Iterator[ControlPlane]:
    """Start a control plane from KUBEBUILDER_ASSETS (or `folder`); stop it on exit.

    Raises:
        AssetsMissing: the binaries are not there (callers skip with its message).
    """
    assets = find_assets(folder if folder is not None else os.environ.get(ASSETS_ENV))
    keep = bool(os.environ.get("ZSP_ENVTEST_KEEP"))  # keep logs and certificates for debugging
    with ControlPlane(assets, users, keep_files=keep, apiserver_extra_args=apiserver_extra_args) as plane:
        yield plane


__all__ = [
    "ADMIN_GROUPS",
    "ADMIN_USER",
    "ASSETS_ENV",
    "CONTROLLERS",
    "Assets",
    "AssetsMissing",
    "ControlPlane",
    "Layout",
    "Pki",
    "StaticToken",
    "admin_kubeconfig",
    "apiserver_args",
    "control_plane",
    "controller_manager_args",
    "etcd_args",
    "find_assets",
    "make_pki",
    "static_tokens",
    "token_auth_file",
]
