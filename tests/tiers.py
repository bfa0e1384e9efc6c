"""The API servers stories run against, behind one `Cluster` interface.

Tiers:
- `sim`: the in-memory API server (`zsp_operator.sim`), in its own thread and event loop;
  always available.
- `envtest`: a real etcd + kube-apiserver [+ kube-controller-manager] from
  `KUBEBUILDER_ASSETS` (tests/envtest.py); skipped with the reason when absent.

Test bodies get a `Cluster` and never ask which tier they are on, except through
capabilities such as `has_garbage_collector`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from tier_report import REQUIRE_REAL_TIER, TIERS, real_tier_required

REPO = Path(__file__).resolve().parent.parent
CRD_DIR = REPO / "crds"
# Parameters for a fixture over both tiers; `-m "not envtest"` leaves the real one out.
TIER_PARAMS = [
    pytest.param(
        tier,
        id=tier,
        marks=[pytest.mark.tier(tier), *([pytest.mark.envtest] if tier == "envtest" else [])],
    )
    for tier in TIERS
]

# The people stories act as. On envtest they are lines of the --token-auth-file (static
# tokens cannot be added at runtime); on the sim they come from `sim.user_token`.
USERS: dict[str, list[str]] = {
    "alice": ["platform-leads"],
    "bob": ["platform-leads"],
    "carol": ["platform-leads"],
    "dave": ["developers"],
    "erin": ["platform-oncall"],
}


def load_crds(directory: Path = CRD_DIR) -> list[dict[str, Any]]:
    """The committed CRD manifests (tests/test_crds.py proves they match the models)."""
    return [
        yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.zsp.dev.yaml"))
    ]


def unique_name(hint: str, *, suffix_bytes: int = 3) -> str:
    """A fresh DNS-1123 label (namespace name) that still says where it came from.

    `test_rbac[sim]` -> `test-rbac-sim-3fa2c1`: lower case, dashes, at most 63 characters.
    """
    base = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-") or "t"
    suffix = secrets.token_hex(suffix_bytes)
    base = base[: 63 - len(suffix) - 1].rstrip("-")
    return f"{base}-{suffix}"


def build_kubeconfig(
    server: str,
    token: str,
    *,
    ca_data: str | None = None,
    namespace: str | None = None,
    name: str = "zsp-test",
) -> dict[str, Any]:
    """A one-context kubeconfig with a bearer token (and the CA inline for https)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_data is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_data.encode()).decode()
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    }


@dataclass
class Cluster:
    """One running API server, whatever the tier."""

    tier: str  # "sim" or "envtest"
    server: str  # API server URL
    ca_data: str | None  # PEM of the serving CA, None for plain http
    admin_token: str  # user zsp-admin in group system:masters
    kubeconfig_path: Path  # admin kubeconfig file
    has_garbage_collector: bool  # envtest only when kube-controller-manager runs
    _issue_user_token: Callable[[str, Sequence[str]], str] = field(repr=False)
    _ca_file: Path | None = field(default=None, repr=False)
    # The in-memory server's request observers (None on envtest): every authenticated request,
    # as (username, resource request or None), like the real server's audit log.
    request_observers: list[Callable[[str, Any], None]] | None = field(default=None, repr=False)
    _user_tokens: dict[str, str] = field(default_factory=dict, repr=False)

    def kubeconfig(self, token: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        """A kubeconfig for this server, as admin unless `token` is given."""
        return build_kubeconfig(
            self.server,
            token or self.admin_token,
            ca_data=self.ca_data,
            namespace=namespace,
            name=f"zsp-{self.tier}",
        )

    def user_token(self, username: str) -> str:
        """A bearer token of a roster person (see USERS), with the roster's groups."""
        if username not in USERS:
            raise KeyError(f"{username!r} is not in the roster: one of {', '.join(USERS)}")
        if username not in self._user_tokens:
            self._user_tokens[username] = self._issue_user_token(username, USERS[username])
        return self._user_tokens[username]

    def api_client(self, token: str | None = None) -> client.ApiClient:
        """A kubernetes_asyncio client as admin, or as the bearer of `token`.

        Call it inside a coroutine (aiohttp binds to the running loop) and close it:
        `async with cluster.api_client() as api: ...`.
        """
        configuration = client.Configuration(host=self.server)
        configuration.api_key = {"BearerToken": token or self.admin_token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        if self._ca_file is not None:
            configuration.ssl_ca_cert = str(self._ca_file)
            configuration.verify_ssl = True
        return client.ApiClient(configuration)


# --- starting a tier ----------------------------------------------------------------------


@contextlib.contextmanager
def sim_cluster(crds: list[dict[str, Any]], **options: Any) -> Iterator[Cluster]:
    """The in-memory API server with the CRDs installed, in its own thread (`options`: SimServer's)."""
    from zsp_operator.sim import serve_in_thread  # imported here: only the sim tier needs it

    with tempfile.TemporaryDirectory(prefix="zsp-sim-") as tmp, serve_in_thread(crds=crds, **options) as sim:
        kubeconfig = sim.write_kubeconfig(Path(tmp) / "admin.kubeconfig")
        yield Cluster(
            tier="sim",
            server=sim.url,
            ca_data=None,
            admin_token=sim.admin_token,
            kubeconfig_path=Path(kubeconfig),
            has_garbage_collector=bool(getattr(sim, "has_garbage_collector", False)),
            _issue_user_token=lambda name, groups: sim.user_token(name, groups=tuple(groups)),
            request_observers=sim.request_observers,
        )


@contextlib.contextmanager
def envtest_cluster(crds: list[dict[str, Any]], apiserver_args: Sequence[str] = ()) -> Iterator[Cluster]:
    """A real control plane from KUBEBUILDER_ASSETS with the CRDs applied.

    Raises:
        envtest.AssetsMissing: the binaries are not there; the message is the skip reason.
    """
    import envtest  # imported here: sim-only runs never load the launcher

    with envtest.control_plane(USERS, apiserver_extra_args=apiserver_args) as plane:
        tokens = plane.user_tokens
        cluster = Cluster(
            tier="envtest",
            server=plane.server,
            ca_data=plane.ca_pem,
            admin_token=plane.admin_token,
            kubeconfig_path=plane.kubeconfig_path,
            has_garbage_collector=plane.has_controller_manager,
            _issue_user_token=lambda name, _groups: tokens[name],
            _ca_file=plane.ca_file,
        )
        asyncio.run(_install(cluster, crds))
        yield cluster


async def _install(cluster: Cluster, crds: list[dict[str, Any]]) -> None:
    async with cluster.api_client() as api:
        await apply_crds(api, crds)


# --- helpers the stories share ------------------------------------------------------------


async def apply_crds(api: client.ApiClient, crds: list[dict[str, Any]], within: float = 30.0) -> None:
    """Create or replace each CRD, then wait until every one is Established and servable.

    Established means the names are accepted; the resource's storage (its watch cache) may
    still be initializing and answer `429 storage is (re)initializing`, so each kind is also
    listed until the server serves it.

    Raw JSON in and out (`_preload_content=False`): the client's generated CRD models are
    not needed and would only re-validate what the server has already accepted.
    """
    ext = client.ApiextensionsV1Api(api)
    for crd in crds:
        name = crd["metadata"]["name"]
        try:
            await call_json(ext.create_custom_resource_definition(crd, _preload_content=False))
        except ApiException as error:
            if error.status != 409:
                raise
            current = await call_json(ext.read_custom_resource_definition(name, _preload_content=False))
            body = copy.deepcopy(crd)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await call_json(ext.replace_custom_resource_definition(name, body, _preload_content=False))
    deadline = time.monotonic() + within
    pending = [crd["metadata"]["name"] for crd in crds]
    while pending:
        name = pending[0]
        current = await call_json(ext.read_custom_resource_definition(name, _preload_content=False))
        if condition_true(current, "Established"):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"CRD {name} not Established after {within:.0f}s: "
                f"{current.get('status', {}).get('conditions')}"
            )
        await asyncio.sleep(0.1)
    for crd in crds:
        await _until_servable(api, crd, deadline)


async def _until_servable(api: client.ApiClient, crd: dict[str, Any], deadline: float) -> None:
    spec = crd["spec"]
    version = next(v["name"] for v in spec["versions"] if v.get("served", True))
    objects = client.CustomObjectsApi(api)
    while True:
        try:
            await call_json(
                objects.list_cluster_custom_object(
                    spec["group"], version, spec["names"]["plural"], limit=1, _preload_content=False
                )
            )
            return
        except ApiException as error:
            if error.status != 429 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def call_json(call: Awaitable[Any]) -> dict[str, Any]:
    """Await a call made with `_preload_content=False`; its JSON body, or ApiException.

    (The client raises ApiException only when it preloads the body itself.)
    """
    response = await call
    try:
        raw = await response.read()
    finally:
        response.release()
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = raw.decode("utf-8", errors="replace")
        raise error
    data: dict[str, Any] = json.loads(raw) if raw else {}
    return data


def condition_true(obj: dict[str, Any], kind: str) -> bool:
    """Whether `status.conditions` holds `kind` with status True."""
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def api_error(error: ApiException) -> dict[str, Any]:
    """The Status object of a failed call (message, reason, details.causes)."""
    try:
        body: dict[str, Any] = json.loads(error.body)
    except (TypeError, ValueError):
        return {"message": str(error.body), "code": error.status}
    return body


__all__ = [
    "CRD_DIR",
    "TIERS",
    "USERS",
    "Cluster",
    "api_error",
    "apply_crds",
    "build_kubeconfig",
    "call_json",
    "condition_true",
    "envtest_cluster",
    "load_crds",
    "sim_cluster",
    "unique_name",
]


@contextlib.contextmanager
def tier_cluster(
    tier: str, *, sim_options: dict[str, Any] | None = None, apiserver_args: Sequence[str] = ()
) -> Iterator[Cluster]:
    """The cluster of one tier with our CRDs; the envtest tier skips, saying why, without binaries.

    A story that needs the API server started differently (an audit webhook) passes the same
    setting in each tier's words: `sim_options` for the in-memory server, `apiserver_args`
    for kube-apiserver.
    """
    import envtest  # imported here: sim-only runs never load the launcher

    crds = load_crds()
    if tier == "sim":
        with sim_cluster(crds, **(sim_options or {})) as sim:
            yield sim
        return
    with contextlib.ExitStack() as stack:
        try:
            real = stack.enter_context(envtest_cluster(crds, apiserver_args))
        except envtest.AssetsMissing as missing:
            if real_tier_required():
                pytest.fail(f"envtest tier required ({REQUIRE_REAL_TIER} is set) but cannot run: {missing}")
            pytest.skip(f"envtest tier: {missing}")
        yield real
