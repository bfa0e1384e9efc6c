"""When has a task finished? Read from the object a `taskRef` names, no I/O."""

from __future__ import annotations

from typing import Any

# Condition types that mean "this task is over" when True, for Jobs and generic objects.
_FINISHED_CONDITIONS = ("Complete", "SuccessCriteriaMet", "Failed", "FailureTarget", "Ready")


def task_finished(obj: dict[str, Any]) -> str | None:
    """A sentence saying how the task ended, or None while it still runs.

    Jobs end with a Complete or Failed condition, Pods in phase Succeeded or Failed, and any
    other object when a Ready, Complete or Failed condition is True.
    """
    kind = obj.get("kind", "object")
    name = obj.get("metadata", {}).get("name", "?")
    status = obj.get("status") or {}
    if kind == "Pod":
        phase = status.get("phase")
        return f"Pod {name} {phase.lower()}" if phase in ("Succeeded", "Failed") else None
    conditions = status.get("conditions") or []
    if not isinstance(conditions, list):
        return None
    for wanted in _FINISHED_CONDITIONS:
        for cond in conditions:
            if isinstance(cond, dict) and cond.get("type") == wanted and cond.get("status") == "True":
                if kind == "Job" and wanted == "Ready":
                    continue  # a Job's Ready counts running pods; it is not an end
                return f"{kind} {name} finished: condition {wanted}"
    return None
