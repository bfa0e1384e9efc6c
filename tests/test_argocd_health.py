"""Argo CD health checks for zsp.dev kinds, run as Argo CD runs them: Lua 5.1, `obj` global.

Covered: every case of each kind's health_test.yaml (Argo CD's own test layout) gives its
status and message; every phase a request can have, built by the operator's own lifecycle,
maps to the documented health (no status yet, Pending, Approved -> Progressing; Active ->
Healthy; Completed, Expired -> Healthy; Revoked -> Suspended; Denied, TimedOut, Failed ->
Degraded); an unobserved generation is Progressing; the scripts need no library Argo CD
leaves out; the argocd-cm snippet carries the scripts verbatim under the right keys.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaRuntime

from zsp_operator.core.lifecycle import (
    ApprovalsChanged,
    Decided,
    Ended,
    Event,
    Issued,
    IssueFailed,
    TimedOut,
    apply,
)
from zsp_operator.core.models import AccessRequestStatus, ApprovalRecord, NamespacedName, ObjectRef, Phase

ARGOCD = Path(__file__).resolve().parent.parent / "examples" / "argocd"
HEALTH = ARGOCD / "health" / "zsp.dev"
KINDS = ("AccessRequest", "TaskGrant")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run the kind's health.lua on `obj` (as JSON would hand it over) in a bare Lua 5.1."""
    lua = LuaRuntime()
    g = lua.globals()
    for unsafe in ("os", "io", "require", "dofile", "loadfile", "package", "debug"):
        g[unsafe] = None  # Argo CD's sandbox offers none of these
    g.obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = lua.execute((HEALTH / kind / "health.lua").read_text(encoding="utf-8"))
    return str(result["status"]), str(result["message"])


def cases(kind: str) -> list[Any]:
    spec = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text(encoding="utf-8"))
    return [pytest.param(kind, case, id=f"{kind}-{Path(case['inputPath']).stem}") for case in spec["tests"]]


@pytest.mark.parametrize(("kind", "case"), [p for kind in KINDS for p in cases(kind)])
def test_each_sample_gives_its_expected_health(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((HEALTH / kind / case["inputPath"]).read_text(encoding="utf-8"))
    assert health(kind, obj) == (case["healthStatus"]["status"], case["healthStatus"]["message"])


def test_every_sample_is_tested() -> None:
    for kind in KINDS:
        tested = {Path(case.values[1]["inputPath"]).name for case in cases(kind)}
        assert tested == {p.name for p in (HEALTH / kind / "testdata").glob("*.yaml")}


# --- every phase, as the operator's lifecycle writes it -------------------------------------

ALLOWED = Decided("allowed", "allowed", "deployers", None)
PENDING = Decided("pending", "needs one approval", "deployers", None)
ISSUED = Issued(
    ObjectRef(name="r", uid="g"),
    NamespacedName(namespace="ci", name="deployer"),
    T0,
    T0 + timedelta(minutes=5),
)
APPROVAL = ApprovalsChanged(
    (ApprovalRecord(username="alice", decision="approve", at=T0),), True, None, "approved"
)


def ended(reason: str) -> Ended:
    return Ended(reason, f"grant {reason.lower()}", T0 + timedelta(minutes=5), None)  # type: ignore[arg-type]


PHASES: dict[Phase, tuple[tuple[Event, ...], str]] = {
    Phase.PENDING: ((PENDING,), "Progressing"),
    Phase.APPROVED: ((PENDING, APPROVAL), "Progressing"),
    Phase.ACTIVE: ((ALLOWED, ISSUED), "Healthy"),
    Phase.COMPLETED: ((ALLOWED, ISSUED, ended("Completed")), "Healthy"),
    Phase.EXPIRED: ((ALLOWED, ISSUED, ended("Expired")), "Healthy"),
    Phase.REVOKED: ((ALLOWED, ISSUED, ended("Revoked")), "Suspended"),
    Phase.DENIED: ((Decided("denied", "no policy allows it", None, None),), "Degraded"),
    Phase.TIMED_OUT: ((PENDING, TimedOut("no quorum")), "Degraded"),
    Phase.FAILED: ((ALLOWED, IssueFailed("RoleBinding forbidden")), "Degraded"),
}


def request(*events: Event, generation: int = 1) -> dict[str, Any]:
    status = AccessRequestStatus()
    for event in events:
        status = apply(status, event, T0, 1)
    body: dict[str, Any] = {
        "apiVersion": "zsp.dev/v1alpha1",
        "kind": "AccessRequest",
        "metadata": {"name": "r", "namespace": "pay", "generation": generation},
        "spec": {"grantee": {"ephemeral": {}}, "permission": "deploy", "reason": "x"},
    }
    if events:
        body["status"] = status.to_wire()
    return body


def test_every_phase_has_a_case() -> None:
    assert set(PHASES) == set(Phase)


@pytest.mark.parametrize("phase", list(PHASES), ids=lambda p: p.value)
def test_each_phase_maps_to_its_health(phase: Phase) -> None:
    events, expected = PHASES[phase]
    body = request(*events)
    assert body["status"]["phase"] == phase.value
    status, message = health("AccessRequest", body)
    assert status == expected
    assert message


def test_no_status_yet_is_progressing() -> None:
    assert health("AccessRequest", request())[0] == "Progressing"


def test_an_edit_the_operator_has_not_seen_yet_is_progressing() -> None:
    status, message = health("AccessRequest", request(ALLOWED, ISSUED, generation=2))
    assert (status, message) == ("Progressing", "Waiting for the zsp-operator to observe generation 2")


def test_the_configmap_snippet_carries_the_scripts_verbatim() -> None:
    cm = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text(encoding="utf-8"))
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == (
        "ConfigMap",
        "argocd-cm",
        "argocd",
    )
    assert set(cm["data"]) == {f"resource.customizations.health.zsp.dev_{kind}" for kind in KINDS}
    for kind in KINDS:
        script = (HEALTH / kind / "health.lua").read_text(encoding="utf-8")
        assert cm["data"][f"resource.customizations.health.zsp.dev_{kind}"] == script
