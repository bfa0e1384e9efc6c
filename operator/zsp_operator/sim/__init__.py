"""An in-memory Kubernetes API server for the test suite and `zsp demo`.

This is a test and demo double: the operator never uses it in production. kopf and
the kubernetes_asyncio client talk to it unmodified, over plain HTTP on localhost,
and it follows the Kubernetes API documentation (status codes, Status objects,
resourceVersions, watch, finalizers, garbage collection, CRD schemas, bearer-token
authentication, RBAC, TokenRequest, admission webhooks) closely enough that the same
story tests also pass against a real kube-apiserver.

    async with SimServer(crds=[crd]) as sim:
        ...  # sim.url, sim.admin_token, sim.user_token("alice"), sim.kubeconfig()

    with serve_in_thread(crds=[crd]) as sim:   # from sync code or another event loop
        ...

Known differences from kube-apiserver are listed in the docstrings of the modules
(`schema`, `admission`, `deletion`, `objects`, `validation`, `discovery`).
"""

from zsp_operator.sim.auth import UserInfo
from zsp_operator.sim.server import ADMIN_USER, SimServer, serve_in_thread
from zsp_operator.sim.tokens import decode_unverified

__all__ = ["ADMIN_USER", "SimServer", "UserInfo", "decode_unverified", "serve_in_thread"]
