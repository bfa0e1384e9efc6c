"""Job status transitions, checked as kube-apiserver 1.31+ checks them, on both tiers.

Stories complete Jobs to end grants that follow a `taskRef`; the in-memory server checks
what the real one does (sim/jobs.py), word for word, so a story cannot write a Job status
the real server would refuse.

A Job is Complete only with SuccessCriteriaMet, startTime and completionTime; Failed only with
FailureTarget; a terminal condition never goes back; counters never decrease. Each rule applies
when the fields it speaks of change, so unrelated status updates of a Job still go through.
"""

from __future__ import annotations

from typing import Any

import pytest

from tiers import Cluster
from zsp_operator.kube import Invalid, Kube
from zsp_operator.kube.resources import JOBS

START, END = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def cond(kind: str, status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status, "lastTransitionTime": END}


SUCCEEDED = {
    "startTime": START,
    "completionTime": END,
    "succeeded": 1,
    "conditions": [cond("SuccessCriteriaMet"), cond("Complete")],
}
FAILED = {"startTime": START, "failed": 1, "conditions": [cond("FailureTarget"), cond("Failed")]}


async def new_job(admin: Kube, namespace: str, status: dict[str, Any] | None = None) -> str:
    spec = {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": namespace}}
    await admin.create(JOBS, {**body, "spec": spec})
    if status is not None:
        await admin.patch(JOBS, "j", {"status": status}, namespace, status=True)
    return "j"


async def refusal(admin: Kube, namespace: str, status: dict[str, Any]) -> str | None:
    """The API server's message refusing the status, or None when it took it."""
    try:
        await admin.patch(JOBS, "j", {"status": status}, namespace, status=True)
    except Invalid as err:
        return err.message
    return None


def invalid(*causes: str) -> str:
    """How the API server words a refused Job: one cause alone, several in brackets."""
    joined = causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]"
    return f'Job.batch "j" is invalid: {joined}'


@pytest.mark.parametrize(
    ("status", "causes"),
    [
        pytest.param(SUCCEEDED, [], id="as-the-job-controller-completes-it"),
        pytest.param(FAILED, [], id="as-the-job-controller-fails-it"),
        pytest.param(
            {"conditions": [cond("Complete")]},
            [
                "status.completionTime: Required value: completionTime is required for Complete jobs",
                "status.conditions: Invalid value: cannot set Complete=True condition without the "
                "SuccessCriteriaMet=true condition",
                "status.startTime: Required value: startTime is required for finished job",
            ],
            id="complete-alone",
        ),
        pytest.param(
            {**SUCCEEDED, "completionTime": None},
            ["status.completionTime: Required value: completionTime is required for Complete jobs"],
            id="complete-without-completion-time",
        ),
        pytest.param(
            {"startTime": START, "conditions": [cond("Failed")]},
            [
                "status.conditions: Invalid value: cannot set Failed=True condition without the "
                "FailureTarget=true condition"
            ],
            id="failed-without-failure-target",
        ),
        pytest.param(
            {"startTime": START, "completionTime": END},
            [
                f'status.completionTime: Invalid value: "{END}": cannot set completionTime when there is no Complete=True condition'
            ],
            id="completion-time-while-running",
        ),
        pytest.param(
            {**SUCCEEDED, "startTime": END, "completionTime": START},
            [f'status.completionTime: Invalid value: "{START}": must be equal to or after `startTime`'],
            id="completed-before-started",
        ),
        pytest.param(
            {**SUCCEEDED, "active": 1},
            ["status.active: Invalid value: 1: active>0 is invalid for finished job"],
            id="finished-with-active-pods",
        ),
    ],
)
async def test_a_job_status_update_is_checked_as_the_real_server_checks_it(
    cluster: Cluster, namespace: str, status: dict[str, Any], causes: list[str]
) -> None:
    async with await Kube.from_dict(cluster.kubeconfig()) as admin:
        await new_job(admin, namespace)
        assert await refusal(admin, namespace, status) == (invalid(*causes) if causes else None)


@pytest.mark.parametrize(
    ("change", "causes"),
    [
        pytest.param(
            {"conditions": [cond("SuccessCriteriaMet"), cond("Complete", "False")]},
            # A completionTime without Complete is refused too: it was already there, but the
            # Complete condition it needs changed.
            (
                f'status.completionTime: Invalid value: "{END}": cannot set completionTime when '
                "there is no Complete=True condition",
                "status.conditions: Invalid value: cannot disable the terminal Complete=True condition",
            ),
            id="complete-taken-back",
        ),
        pytest.param(
            {"succeeded": 0},
            ("status.succeeded: Invalid value: 0: cannot decrease the succeeded counter",),
            id="succeeded-decreased",
        ),
    ],
)
async def test_a_finished_job_stays_finished(
    cluster: Cluster, namespace: str, change: dict[str, Any], causes: tuple[str, ...]
) -> None:
    async with await Kube.from_dict(cluster.kubeconfig()) as admin:
        await new_job(admin, namespace, SUCCEEDED)
        assert await refusal(admin, namespace, change) == invalid(*causes)


async def test_an_unrelated_update_of_a_finished_job_goes_through(cluster: Cluster, namespace: str) -> None:
    async with await Kube.from_dict(cluster.kubeconfig()) as admin:
        await new_job(admin, namespace, SUCCEEDED)
        labelled = await admin.patch(JOBS, "j", {"metadata": {"labels": {"seen": "yes"}}}, namespace)
    assert labelled["metadata"]["labels"]["seen"] == "yes"
