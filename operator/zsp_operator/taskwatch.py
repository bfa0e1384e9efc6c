"""Following the object a grant's `taskRef` names, until it finishes or disappears."""

from __future__ import annotations

import logging
from typing import Any

from zsp_operator.core.models import TaskGrant
from zsp_operator.core.tasks import task_finished
from zsp_operator.kube import Kube, KubeError

log = logging.getLogger(__name__)


async def task_end(kube: Kube, grant: TaskGrant, stopped: Any) -> str | None:
    """How the task ended (a sentence), or None if `stopped` was set first.

    One watch per grant on exactly its object (field selector by name), re-armed when the
    server closes it; any kind works, its plural and scope come from discovery.
    """
    ref = grant.spec.task_ref
    if ref is None:
        return None
    res = await kube.resource_of(ref.api_version, ref.kind)
    namespace = (ref.namespace or grant.namespace) if res.namespaced else None
    label = f"{ref.kind} {namespace + '/' if namespace else ''}{ref.name}"
    while not stopped:
        obj = await kube.get(res, ref.name, namespace)
        if obj is None:
            return f"task {label} was deleted"
        ended = task_finished(obj)
        if ended is not None:
            return ended
        try:
            async for kind, event_obj in kube.watch(
                res,
                namespace,
                field_selector=f"metadata.name={ref.name}",
                resource_version=obj["metadata"].get("resourceVersion"),
                timeout_seconds=60,
            ):
                if kind == "DELETED":
                    return f"task {label} was deleted"
                ended = task_finished(event_obj) if kind in ("ADDED", "MODIFIED") else None
                if ended is not None:
                    return ended
                if stopped:
                    return None
        except KubeError as err:
            log.info("watch of %s ended (%s); resuming", label, err.reason)
    return None
