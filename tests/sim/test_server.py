"""The server's Python API: lifecycle, threads, kubeconfigs, TLS, `zsp sim` and kubectl."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client, config
from simkit import GADGET_CRD

from zsp_operator.cli.sim import load_crds
from zsp_operator.sim import SimServer, serve_in_thread


def test_serve_in_thread_is_usable_from_sync_code() -> None:
    with serve_in_thread(crds=[GADGET_CRD]) as sim:
        request = urllib.request.Request(f"{sim.url}/apis/test.zsp.dev/v1",
                                         headers={"Authorization": f"Bearer {sim.admin_token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["groupVersion"] == "test.zsp.dev/v1"
        url = sim.url
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/healthz", timeout=2)


async def test_kubeconfig_dict_loads_into_the_typed_client(sim: SimServer) -> None:
    api = await config.new_client_from_config_dict(sim.kubeconfig(namespace="kube-system"))
    async with api:
        names = {ns.metadata.name for ns in (await client.CoreV1Api(api).list_namespace()).items}
    assert {"default", "kube-system", "kube-public"} <= names


async def test_a_user_kubeconfig_carries_that_user(sim: SimServer) -> None:
    token = sim.user_token("dave", ["developers"])
    api = await config.new_client_from_config_dict(sim.kubeconfig(token))
    async with api:
        with pytest.raises(client.ApiException) as error:
            await client.CoreV1Api(api).list_namespace()
    assert error.value.status == 403
    assert 'User \\"dave\\"' in error.value.body


async def test_write_kubeconfig_is_private(sim: SimServer, tmp_path: Path) -> None:
    path = sim.write_kubeconfig(tmp_path / "nested" / "admin.kubeconfig")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = yaml.safe_load(path.read_text())
    assert written["clusters"][0]["cluster"]["server"] == sim.url
    assert written["users"][0]["user"]["token"] == sim.admin_token


async def test_tls_serves_https_trusted_by_the_kubeconfig() -> None:
    async with SimServer(tls=True) as sim:
        assert sim.url.startswith("https://")
        kubeconfig = sim.kubeconfig()
        assert "certificate-authority-data" in kubeconfig["clusters"][0]["cluster"]
        api = await config.new_client_from_config_dict(kubeconfig)
        async with api:
            version = await client.VersionApi(api).get_code()
        assert version.git_version.startswith("v1.")


def test_cli_loads_crds_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "gadget.yaml").write_text(yaml.safe_dump(GADGET_CRD) + "---\nkind: ConfigMap\n")
    assert [crd["metadata"]["name"] for crd in load_crds(tmp_path, none=False)] == ["gadgets.test.zsp.dev"]
    assert load_crds(tmp_path, none=True) == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_gets_creates_and_deletes(tmp_path: Path) -> None:
    with serve_in_thread(crds=[GADGET_CRD], tls=True) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")

        def kubectl(*args: str) -> str:
            done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args],
                                  capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert "kube-system" in kubectl("get", "namespaces")
        manifest = tmp_path / "gadget.yaml"
        manifest.write_text(yaml.safe_dump({"apiVersion": "test.zsp.dev/v1", "kind": "Gadget",
                                            "metadata": {"name": "from-kubectl", "namespace": "default"},
                                            "spec": {"reason": "kubectl"}}))
        kubectl("create", "-f", str(manifest))
        assert "from-kubectl" in kubectl("get", "gd")
        kubectl("delete", "-f", str(manifest))
        assert "from-kubectl" not in kubectl("get", "gadgets")
