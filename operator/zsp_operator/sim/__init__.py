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

Faithful where our operator, kopf, kubectl and the stories look: CRD validation in the
server's order (OpenAPI schema, list-type set/map duplicates, then CEL rules unless a
blocking error exists, with the server's "not checked" cause), server-side Tables with
every printer column (date cells as `4m12s`-style durations), lists paged with `limit` and
`continue` over consistent snapshots, field selectors per kind, webhook matchPolicy.

Known approximations (details in the module docstrings):
- CRD schemas (`schema`, `cel`): no validation ratcheting of unchanged values, no
  allOf/anyOf/oneOf/not, min/maxProperties, multipleOf or formats besides date-time; CEL
  runs on cel-python without the Kubernetes libraries (quantity, url, ip, format, ...),
  cost limits or compile-time checks; messages follow 1.30-1.34 servers.
- One stored copy per custom resource; versions differ only in apiVersion (conversion None).
- Built-in kinds are not schema-checked (`validation`) beyond what it lists; Pods,
  Deployments, Jobs, Services, EndpointSlices and ReplicaSets print only Name and Age
  (`printers`).
- Services (`services`): a single-stack IPv4 cluster whose ClusterIPs come from
  127.0.96.0/20 (`service_cidr`), the real test tier's range; other Service defaults
  (protocols, targetPorts, sessionAffinity, traffic policies) and NodePorts are not
  applied, and no controller fills EndpointSlices from selectors (`endpointslices` checks
  their addresses, which may not be loopback, as a real server's).
- Webhooks (`admission`): no matchConditions or reinvocation. A `service` reference is
  dialled at the Service's ClusterIP and port, as kube-apiserver does by default; with
  loopback ClusterIPs a webhook served on 0.0.0.0 is reached there, in both tiers.
- Deletion (`deletion`): no grace periods. Lists (`paging`): `resourceVersion` other than
  an Exact match reads the latest state; watch (`watch`) has no watch-list streaming limits.
- Discovery (`discovery`): OpenAPI v3 without schemas, no OpenAPI v2; no protobuf anywhere.
- Auditing (`audit`, `auditwebhook`): an audit policy and a batching webhook as
  kube-apiserver's `--audit-policy-file` and `--audit-webhook-config-file`, but only the
  ResponseComplete stage, no request or response bodies at any level, no `objectRef.name`
  on creates (taken from the URL, not the body), no decision annotation on a 404 for an
  unknown resource, and retries without jitter.
"""

from zsp_operator.sim.auth import UserInfo
from zsp_operator.sim.server import ADMIN_USER, SimServer, serve_in_thread
from zsp_operator.sim.tokens import decode_unverified

__all__ = ["ADMIN_USER", "SimServer", "UserInfo", "decode_unverified", "serve_in_thread"]
