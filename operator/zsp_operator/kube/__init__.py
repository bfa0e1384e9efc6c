"""The Kubernetes API boundary: the only package that imports kubernetes_asyncio."""

from zsp_operator.kube.client import Body, Connection, Kube
from zsp_operator.kube.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    Unauthorized,
)

__all__ = [
    "AlreadyExists",
    "Body",
    "Conflict",
    "Connection",
    "Forbidden",
    "Gone",
    "Invalid",
    "Kube",
    "KubeError",
    "NotFound",
    "Unauthorized",
]
