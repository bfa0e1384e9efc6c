"""Job status rules kube-apiserver enforces (1.31+, the `JobManagedBy` strategy).

The real server checks a Job's status transitions so that anything writing it, the Job
controller or an external one, leaves a status clients can trust: a Job is Complete only
after `SuccessCriteriaMet`, with `startTime` and `completionTime`, and terminal conditions
never flip back. Each rule applies only when the fields it speaks of change, as there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from zsp_operator.sim.errors import FieldError, required

# In the order the real server checks that none is taken back.
_TERMINAL = ("Failed", "Complete", "FailureTarget")


def _true(job: dict[str, Any], kind: str) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _omitted(path: str, detail: str) -> FieldError:
    """An Invalid cause whose value is left out, as the real server words these."""
    return FieldError("FieldValueInvalid", path, f"Invalid value: {detail}")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def job_status_errors(job: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """The status rules a Job update breaks, given the Job before it, in the real server's order."""
    status, before = job.get("status") or {}, old.get("status") or {}
    complete, failed = _true(job, "Complete"), _true(job, "Failed")
    finished = complete or failed
    met, target = _true(job, "SuccessCriteriaMet"), _true(job, "FailureTarget")

    def changed(*fields: str) -> bool:
        return any(status.get(name) != before.get(name) for name in fields)

    complete_changed = complete != _true(old, "Complete")
    failed_changed = failed != _true(old, "Failed")
    finished_changed = finished != (_true(old, "Complete") or _true(old, "Failed"))
    met_changed = met != _true(old, "SuccessCriteriaMet")
    target_changed = target != _true(old, "FailureTarget")
    completion_changed = complete_changed or changed("completionTime")
    errors: list[FieldError] = []
    # The status on its own (validateJobStatus).
    if (complete_changed or failed_changed) and complete and failed:
        errors.append(_omitted("status.conditions", "cannot set Complete=True and Failed=true conditions"))
    if (complete_changed or target_changed) and complete and target:
        errors.append(
            _omitted("status.conditions", "cannot set Complete=True and FailureTarget=true conditions")
        )
    if completion_changed and status.get("completionTime") and not complete:
        errors.append(
            _invalid_time(
                "status.completionTime",
                status["completionTime"],
                "cannot set completionTime when there is no Complete=True condition",
            )
        )
    if completion_changed and complete and not status.get("completionTime"):
        errors.append(required("status.completionTime", "completionTime is required for Complete jobs"))
    started, completed = _time(status.get("startTime")), _time(status.get("completionTime"))
    if changed("startTime", "completionTime") and started and completed and completed < started:
        errors.append(
            _invalid_time(
                "status.completionTime", status["completionTime"], "must be equal to or after `startTime`"
            )
        )
    if (failed_changed or changed("failedIndexes")) and failed and not target:
        errors.append(
            _omitted(
                "status.conditions", "cannot set Failed=True condition without the FailureTarget=true condition"
            )
        )
    if (complete_changed or met_changed) and complete and not met:
        errors.append(
            _omitted(
                "status.conditions",
                "cannot set Complete=True condition without the SuccessCriteriaMet=true condition",
            )
        )
    active = int(status.get("active") or 0)
    if (finished_changed or changed("active")) and finished and active > 0:
        errors.append(_invalid_number("status.active", active, "active>0 is invalid for finished job"))
    if (finished_changed or changed("startTime")) and finished and not status.get("startTime"):
        errors.append(required("status.startTime", "startTime is required for finished job"))
    if met and failed:
        errors.append(
            _omitted("status.conditions", "cannot set SuccessCriteriaMet=True and Failed=true conditions")
        )
    if met and target:
        errors.append(
            _omitted("status.conditions", "cannot set SuccessCriteriaMet=True and FailureTarget=true conditions")
        )
    # The change from the Job before (ValidateJobStatusUpdate).
    for kind in _TERMINAL:
        if _true(old, kind) and not _true(job, kind):
            errors.append(_omitted("status.conditions", f"cannot disable the terminal {kind}=True condition"))
    for counter in ("failed", "succeeded"):
        now, then = int(status.get(counter) or 0), int(before.get(counter) or 0)
        if now < then:
            errors.append(_invalid_number(f"status.{counter}", now, f"cannot decrease the {counter} counter"))
    if status.get("completionTime") and before.get("completionTime") and changed("completionTime"):
        errors.append(_invalid_time("status.completionTime", status["completionTime"], "field is immutable"))
    if _true(old, "SuccessCriteriaMet") and not met:
        errors.append(_omitted("status.conditions", "cannot disable the SuccessCriteriaMet=True condition"))
    return errors


def _invalid_number(path: str, value: int, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, f"Invalid value: {value}: {detail}")


def _invalid_time(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, f'Invalid value: "{value}": {detail}')
