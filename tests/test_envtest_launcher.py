"""The envtest launcher (tests/envtest.py), without the real binaries.

Covered:
- KUBEBUILDER_ASSETS discovery and the skip reasons it gives;
- the static token file: kube-apiserver's CSV format, groups in one quoted column;
- the certificates: a CA, a serving certificate for 127.0.0.1/localhost that a Python TLS
  client (as aiohttp and urllib use) accepts in a real handshake, a service-account key pair;
- the command lines of etcd, kube-apiserver and kube-controller-manager: flags present once,
  pointing at files that exist;
- process supervision: early death and timeouts report the log tail; stop terminates;
- the whole start/stop sequence against fake `etcd`, `kube-apiserver` and
  `kube-controller-manager` scripts that check the token, the CA and the files they are given.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import http.server
import io
import socket
import ssl
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

import envtest

# --- assets -------------------------------------------------------------------------------


def _executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("unset", "KUBEBUILDER_ASSETS is not set"),
        ("no-folder", "is not a folder"),
        ("empty", "no executable etcd or kube-apiserver"),
        ("no-apiserver", "no executable kube-apiserver"),
        ("not-executable", "no executable etcd"),
    ],
)
def test_find_assets_explains_what_is_missing(tmp_path: Path, setup: str, reason: str) -> None:
    folder: str | None = str(tmp_path)
    if setup == "unset":
        folder = None
    elif setup == "no-folder":
        folder = str(tmp_path / "nowhere")
    elif setup == "no-apiserver":
        _executable(tmp_path / "etcd")
    elif setup == "not-executable":
        (tmp_path / "etcd").write_text("")
        _executable(tmp_path / "kube-apiserver")
    with pytest.raises(envtest.AssetsMissing, match=reason):
        envtest.find_assets(folder)


def test_find_assets_takes_the_controller_manager_when_present(tmp_path: Path) -> None:
    etcd = _executable(tmp_path / "etcd")
    apiserver = _executable(tmp_path / "kube-apiserver")
    assert envtest.find_assets(str(tmp_path)) == envtest.Assets(etcd, apiserver, None)
    manager = _executable(tmp_path / "kube-controller-manager")
    assert envtest.find_assets(str(tmp_path)).kube_controller_manager == manager


# --- tokens -------------------------------------------------------------------------------

ROSTER = {"alice": ["platform-leads"], "dave": ["developers", "oncall"], "ghost": []}


def test_token_file_is_kube_apiserver_csv() -> None:
    admin, people = envtest.static_tokens(ROSTER)
    text = envtest.token_auth_file([admin, *people.values()])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [admin.token, "zsp-admin", "uid-zsp-admin", "system:masters"]
    assert rows[1] == [people["alice"].token, "alice", "uid-alice", "platform-leads"]
    assert rows[2] == [people["dave"].token, "dave", "uid-dave", "developers,oncall"]
    # no groups: three columns, never an empty group name
    assert rows[3] == [people["ghost"].token, "ghost", "uid-ghost"]
    assert '"developers,oncall"' in text.splitlines()[2]


def test_tokens_are_distinct_and_fresh() -> None:
    admin, people = envtest.static_tokens(ROSTER)
    again, _ = envtest.static_tokens(ROSTER)
    tokens = [admin.token, *(t.token for t in people.values())]
    assert len(set(tokens)) == len(tokens)
    assert admin.token != again.token
    assert all(len(t) >= 40 for t in tokens)


@pytest.mark.parametrize("name", ["a,b", 'quote"d', "new\nline", ""])
def test_token_file_refuses_what_csv_would_split(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        envtest.token_auth_file([envtest.StaticToken("t", name, "u")])


# --- certificates -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> envtest.Pki:
    return envtest.make_pki()


def test_ca_and_serving_certificate(pki: envtest.Pki) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca_cert)
    serving = x509.load_pem_x509_certificate(pki.serving_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not serving.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    now = dt.datetime.now(dt.UTC)
    assert serving.not_valid_before_utc < now < serving.not_valid_after_utc


def test_service_account_keys_are_a_pair(pki: envtest.Pki) -> None:
    private = serialization.load_pem_private_key(pki.sa_private_key, password=None)
    public = serialization.load_pem_public_key(pki.sa_public_key)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert pki.sa_private_key.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pki.sa_public_key.startswith(b"-----BEGIN PUBLIC KEY-----")


@pytest.fixture
def https_server(pki: envtest.Pki, tmp_path: Path) -> Iterator[str]:
    """A loopback HTTPS server presenting the serving certificate."""
    (tmp_path / "tls.crt").write_bytes(pki.serving_cert)
    (tmp_path / "tls.key").write_bytes(pki.serving_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(self.headers.get("Authorization", "").encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_python_tls_clients_trust_the_serving_certificate(
    pki: envtest.Pki, https_server: str, tmp_path: Path, host: str
) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(pki.ca_cert)
    url = https_server.replace("127.0.0.1", host) + "/readyz"
    assert envtest.http_get(url, token="abc", ca_file=ca_file) == (200, b"Bearer abc")


def test_an_unrelated_ca_is_refused(https_server: str, tmp_path: Path) -> None:
    other = tmp_path / "other.crt"
    other.write_bytes(envtest.make_pki().ca_cert)
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        envtest.http_get(https_server, ca_file=other)


# --- command lines ------------------------------------------------------------------------


def _flags(args: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    for arg in args[1:]:
        assert arg.startswith("--"), arg
        assert "=" in arg, arg
        name, value = arg[2:].split("=", 1)
        assert name not in flags, f"--{name} given twice"
        flags[name] = value
    return flags


LAYOUT = envtest.Layout(Path("/tmp/cp"), etcd_port=2001, etcd_peer_port=2002, apiserver_port=6443)


@pytest.mark.parametrize("no_fsync", [True, False])
def test_etcd_args(no_fsync: bool) -> None:
    flags = _flags(envtest.etcd_args(Path("/bin/etcd"), LAYOUT, no_fsync=no_fsync))
    assert flags == {
        "data-dir": "/tmp/cp/etcd-data",
        "listen-client-urls": "http://127.0.0.1:2001",
        "advertise-client-urls": "http://127.0.0.1:2001",
        "listen-peer-urls": "http://127.0.0.1:2002",
        **({"unsafe-no-fsync": "true"} if no_fsync else {}),
    }


def test_apiserver_args() -> None:
    args = envtest.apiserver_args(Path("/bin/kube-apiserver"), LAYOUT)
    assert args[0] == "/bin/kube-apiserver"
    assert _flags(args) == {
        "etcd-servers": "http://127.0.0.1:2001",
        "bind-address": "127.0.0.1",
        "secure-port": "6443",
        "advertise-address": "127.0.0.1",
        "endpoint-reconciler-type": "none",
        "service-cluster-ip-range": "127.0.96.0/20",
        "tls-cert-file": "/tmp/cp/apiserver.crt",
        "tls-private-key-file": "/tmp/cp/apiserver.key",
        "cert-dir": "/tmp/cp/cert-dir",
        "token-auth-file": "/tmp/cp/tokens.csv",
        "authorization-mode": "RBAC",
        "service-account-issuer": "https://127.0.0.1:6443",
        "service-account-key-file": "/tmp/cp/sa.pub",
        "service-account-signing-key-file": "/tmp/cp/sa.key",
        "enable-admission-plugins": "MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
        "disable-admission-plugins": "ServiceAccount",
        "allow-privileged": "true",
    }


def test_controller_manager_args() -> None:
    flags = _flags(envtest.controller_manager_args(Path("/bin/kcm"), LAYOUT))
    assert flags == {
        "kubeconfig": "/tmp/cp/admin.kubeconfig",
        "leader-elect": "false",
        "controllers": (
            "garbagecollector,namespace,serviceaccount,serviceaccount-token,clusterrole-aggregation"
        ),
        "service-account-private-key-file": "/tmp/cp/sa.key",
        "root-ca-file": "/tmp/cp/ca.crt",
        "secure-port": "0",
    }


def test_admin_kubeconfig(pki: envtest.Pki) -> None:
    config = envtest.admin_kubeconfig("https://127.0.0.1:6443", pki.ca_cert, "tok")
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == pki.ca_cert
    assert config["users"][0]["user"] == {"token": "tok"}
    assert config["current-context"] == config["contexts"][0]["name"]


def test_files_the_flags_name_are_written(tmp_path: Path) -> None:
    assets = envtest.Assets(
        _executable(tmp_path / "etcd"),
        _executable(tmp_path / "kube-apiserver"),
        _executable(tmp_path / "kube-controller-manager"),
    )
    plane = envtest.ControlPlane(assets, ROSTER)
    try:
        plane.write_files()
        root = plane.layout.root
        args = [
            *envtest.apiserver_args(assets.kube_apiserver, plane.layout),
            *envtest.controller_manager_args(assets.kube_controller_manager, plane.layout),
        ]
        named = [Path(a.split("=", 1)[1]) for a in args if f"={root}" in a]
        assert len(named) >= 8
        for path in named:
            assert path.exists(), path
        assert (root / "sa.key").stat().st_mode & 0o077 == 0  # secrets: owner only
        kubeconfig = yaml.safe_load((root / "admin.kubeconfig").read_text())
        assert kubeconfig["users"][0]["user"]["token"] == plane.admin_token
        assert plane.user_tokens.keys() == ROSTER.keys()
    finally:
        plane.stop()
    assert not root.exists()


# --- processes ----------------------------------------------------------------------------


def test_early_death_reports_exit_code_and_log_tail(tmp_path: Path) -> None:
    process = envtest.Process(
        "kube-apiserver",
        [sys.executable, "-c", "print('E0101 listen tcp: address already in use'); exit(3)"],
        tmp_path / "apiserver.log",
    )
    process.start()
    with pytest.raises(RuntimeError) as failure:
        envtest.wait_until(lambda: False, process, "ready (/readyz)", timeout=10)
    text = str(failure.value)
    assert "kube-apiserver died before it was ready (/readyz) (exited with 3)" in text
    assert "address already in use" in text


def test_timeout_reports_log_tail_and_stop_terminates(tmp_path: Path) -> None:
    process = envtest.Process(
        "etcd",
        [sys.executable, "-u", "-c", "print('waiting for peers'); import time; time.sleep(60)"],
        tmp_path / "etcd.log",
    )
    process.start()
    try:
        with pytest.raises(RuntimeError, match=r"(?s)was not healthy within 1s \(still running\)"):
            envtest.wait_until(lambda: False, process, "healthy", timeout=1)
    finally:
        process.stop(grace=5)
    assert process.exited() is not None
    assert "waiting for peers" in envtest.log_tail(tmp_path / "etcd.log")


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert envtest.log_tail(log, lines=3) == "line 97\nline 98\nline 99"
    assert envtest.log_tail(tmp_path / "missing.log") == "(no log)"


# --- the whole sequence, against fakes ----------------------------------------------------

FAKE_ETCD = """
import http.server, json, sys
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
if "--help" in sys.argv:
    print("  --unsafe-no-fsync   Disables fsync, unsafe, will cause data loss.")
    sys.exit(0)
port = int(flags["listen-client-urls"].rsplit(":", 1)[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
        self.wfile.write(json.dumps({"health": "true"}).encode())
    def log_message(self, *a): pass
print("fake etcd", sorted(flags), flush=True)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""

FAKE_APISERVER = """
import csv, http.server, json, pathlib, ssl, sys
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
root = pathlib.Path(flags["token-auth-file"]).parent
masters = {r[0] for r in csv.reader(open(flags["token-auth-file"])) if len(r) > 3 and "system:masters" in r[3].split(",")}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in masters:
            self.send_response(401); self.end_headers(); return
        body = {"status": "ok"}
        if self.path.endswith("/clusterroles/view"):
            body = {"rules": [{"verbs": ["get"]}] if (root / "kcm-ran").exists() else None}
        self.send_response(200); self.end_headers(); self.wfile.write(json.dumps(body).encode())
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(flags["tls-cert-file"], flags["tls-private-key-file"])
server = http.server.HTTPServer(("127.0.0.1", int(flags["secure-port"])), H)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("fake kube-apiserver", sorted(flags), flush=True)
server.serve_forever()
"""

FAKE_CONTROLLER_MANAGER = """
import pathlib, sys, time
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
assert pathlib.Path(flags["service-account-private-key-file"]).exists()
(pathlib.Path(flags["kubeconfig"]).parent / "kcm-ran").write_text("yes")
print("fake kube-controller-manager", flush=True)
time.sleep(600)
"""


def _fake(path: Path, body: str) -> Path:
    return _executable(path, f"#!{sys.executable}\n" + textwrap.dedent(body))


def test_start_waits_for_each_component_and_stop_tears_down(tmp_path: Path) -> None:
    assets = envtest.Assets(
        _fake(tmp_path / "etcd", FAKE_ETCD),
        _fake(tmp_path / "kube-apiserver", FAKE_APISERVER),
        _fake(tmp_path / "kube-controller-manager", FAKE_CONTROLLER_MANAGER),
    )
    with envtest.ControlPlane(assets, ROSTER, start_timeout=30) as plane:
        root = plane.layout.root
        assert [p.name for p in plane.processes] == [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
        ]
        assert all(p.exited() is None for p in plane.processes)
        assert "--unsafe-no-fsync=true" in plane.processes[0].args  # probed from --help
        assert envtest.http_get(plane.server + "/readyz", token=plane.admin_token, ca_file=plane.ca_file) == (
            200,
            b'{"status": "ok"}',
        )
        alice = plane.user_tokens["alice"]
        assert envtest.http_get(plane.server + "/readyz", token=alice, ca_file=plane.ca_file)[0] == 401
        assert plane.has_controller_manager
        processes = list(plane.processes)
    assert all(p.exited() is not None for p in processes)
    assert not root.exists()


def test_a_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    assets = envtest.Assets(
        _fake(tmp_path / "etcd", FAKE_ETCD),
        _fake(
            tmp_path / "kube-apiserver", "import sys\nprint('Error: unknown flag: --bogus')\nsys.exit(1)\n"
        ),
        None,
    )
    plane = envtest.ControlPlane(assets, ROSTER, start_timeout=30)
    with pytest.raises(RuntimeError, match=r"(?s)kube-apiserver died.*unknown flag: --bogus"):
        plane.start()
    etcd = plane.processes[0]
    assert etcd.exited() is not None
    assert not plane.layout.root.exists()


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = envtest.free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
