"""When a task object counts as finished (Job, Pod, generic conditions)."""

from __future__ import annotations

from typing import Any

import pytest

from zsp_operator.core.tasks import task_finished


def obj(kind: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "t"}, "status": status}


def cond(type_: str, status: str = "True") -> dict[str, Any]:
    return {"conditions": [{"type": type_, "status": status}]}


@pytest.mark.parametrize(
    ("body", "finished"),
    [
        pytest.param(obj("Job", {}), False, id="job-new"),
        pytest.param(obj("Job", {"active": 1}), False, id="job-running"),
        pytest.param(obj("Job", cond("Complete")), True, id="job-complete"),
        pytest.param(obj("Job", cond("Failed")), True, id="job-failed"),
        pytest.param(obj("Job", cond("Complete", "False")), False, id="job-complete-false"),
        pytest.param(obj("Job", cond("Ready")), False, id="job-ready-is-not-an-end"),
        pytest.param(obj("Pod", {"phase": "Running"}), False, id="pod-running"),
        pytest.param(obj("Pod", {"phase": "Succeeded"}), True, id="pod-succeeded"),
        pytest.param(obj("Pod", {"phase": "Failed"}), True, id="pod-failed"),
        pytest.param(obj("Workflow", cond("Ready")), True, id="generic-ready"),
        pytest.param(obj("Workflow", cond("Ready", "Unknown")), False, id="generic-ready-unknown"),
        pytest.param(obj("Workflow", {"conditions": "weird"}), False, id="malformed-conditions"),
    ],
)
def test_task_finished(body: dict[str, Any], finished: bool) -> None:
    message = task_finished(body)
    assert (message is not None) is finished
    if message:
        assert "t" in message
