"""The observer's three channels, without an API server.

Covered: audit records carry the schema, the event, the shared request reference and what is
known at each step; the vocabulary is closed; forbidden keys and credential-shaped values are
refused at any depth and nothing is written then; records go to a file too; issued and revoked
records carry object uids, the credential id, the end reason and the lag; the policy decision
is counted once per outcome; the active-grant gauge never goes negative across a restart;
every metric family uses bounded labels only and no request name reaches a label; Events are
Warnings for denials, failures and break-glass, and a grant's Events go to its TaskGrant too;
the chain rebuilt from status and Events follows the audit vocabulary.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from zsp_operator.core.approvals import Tally
from zsp_operator.core.lifecycle import ApprovalsChanged, Decided, Ended, Issued, apply
from zsp_operator.core.models import (
    AccessRequest,
    AccessRequestStatus,
    ApprovalRecord,
    CreatedObject,
    NamespacedName,
    ObjectRef,
    PolicyRule,
    TaskGrant,
    UserInfo,
)
from zsp_operator.core.policy import Decision, Outcome
from zsp_operator.observe import reasons
from zsp_operator.observe.auditlog import EVENTS, SCHEMA, AuditLog, SecretMaterialError
from zsp_operator.observe.chain import NOTE, chain_from
from zsp_operator.observe.metrics import BOUNDED_LABELS, Metrics
from zsp_operator.observe.observer import Observer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PIPELINE = UserInfo(
    username="system:serviceaccount:ci:pipeline", uid="u-1", groups=["system:serviceaccounts"]
)
RULE = PolicyRule(api_groups=["apps"], resources=["deployments"], verbs=["get", "patch"])
JTI = "7f0c2d7e-5a0b-4a59-9a55-3c1c1b2f0e11"
# The shape of a service-account JWT (not a real one): header.payload.signature.
FAKE_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJ4In0.c2lnbmF0dXJl"


def request(name: str = "deploy-1", *, ephemeral: bool = False, **status: Any) -> AccessRequest:
    grantee: dict[str, Any] = (
        {"ephemeral": {}} if ephemeral else {"serviceAccount": {"namespace": "ci", "name": "deployer"}}
    )
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "pay", "uid": f"uid-{name}", "generation": 1},
        "spec": {"grantee": grantee, "permission": "deploy", "ttl": "10m", "reason": "deploy build 4711"},
        "status": {"requester": PIPELINE.to_wire(), **status},
    }
    return AccessRequest.model_validate(body)


def grant(req: AccessRequest, *, break_glass: bool = False, persistence: bool = False) -> TaskGrant:
    identity = req.spec.grantee.service_account or NamespacedName(namespace="pay", name=f"zsp-{req.name}-x1")
    return TaskGrant.model_validate(
        {
            "metadata": {"name": req.name, "namespace": "pay", "uid": f"grant-{req.name}"},
            "spec": {
                "request": {"name": req.name, "uid": req.metadata.uid},
                "policy": "deployers",
                "mode": req.spec.grantee.mode,
                "identity": identity.to_wire(),
                "permission": "deploy",
                "rules": [RULE.to_wire()],
                "requester": PIPELINE.to_wire(),
                "expiresAt": "2026-03-01T12:10:00Z",
                "breakGlass": break_glass,
                "persistenceCapable": persistence,
            },
            "status": {"tokenCredentialId": JTI} if req.spec.grantee.mode == "ephemeral" else {},
        }
    )


def decision(outcome: Outcome = Outcome.ALLOWED, *, policy: str | None = "deployers", **kw: Any) -> Decision:
    return Decision(
        outcome,
        kw.pop("reason", f"policy {policy} says {outcome.value}"),
        policy,
        ttl=None if outcome is Outcome.DENIED else timedelta(minutes=10),
        permission="deploy",
        rules=(RULE,),
        **kw,
    )


class FakeKube:
    """Collects the Events the observer posts."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def create(self, _res: Any, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body


def observer(kube: FakeKube | None = None) -> tuple[Observer, io.StringIO]:
    stream = io.StringIO()
    obs = Observer(kube, AuditLog(lambda: T0, stream), Metrics(), lambda: T0)  # type: ignore[arg-type]
    return obs, stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# --- the audit log --------------------------------------------------------------------------


def test_a_record_is_one_json_line_with_schema_time_and_event() -> None:
    stream = io.StringIO()
    record = AuditLog(lambda: T0, stream).write("requested", request={"name": "r"}, policy=None)
    assert stream.getvalue().count("\n") == 1
    assert json.loads(stream.getvalue()) == record
    assert record == {
        "schema": SCHEMA,
        "ts": "2026-03-01T12:00:00.000000Z",
        "event": "requested",
        "request": {"name": "r"},
    }


def test_records_also_go_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(lambda: T0, io.StringIO(), str(path))
    log.write("requested", request={"name": "a"})
    log.write("decided", request={"name": "a"})
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["requested", "decided"]


def test_the_vocabulary_is_closed() -> None:
    assert EVENTS == (
        "requested",
        "decided",
        "approved",
        "denied",
        "issued",
        "revoked",
        "used",
        "failed",
        "standing-binding-found",
        "standing-binding-removed",
    )
    with pytest.raises(ValueError, match="not one of"):
        AuditLog(lambda: T0, io.StringIO()).write("started")


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"token": "abc"}, id="token"),
        pytest.param({"kubeconfig": "apiVersion: v1"}, id="kubeconfig"),
        pytest.param({"objects": [{"kind": "Secret", "data": {"kubeconfig": "eA=="}}]}, id="nested-data"),
        pytest.param({"delivery": {"stringData": {"x": "y"}}}, id="stringData"),
        pytest.param({"message": f"Bearer {FAKE_JWT}"}, id="jwt-in-text"),
        pytest.param({"grantee": {"notes": ["-----BEGIN RSA PRIVATE KEY-----"]}}, id="private-key"),
    ],
)
def test_secret_material_is_refused_and_nothing_is_written(fields: dict[str, Any]) -> None:
    stream = io.StringIO()
    log = AuditLog(lambda: T0, stream)
    with pytest.raises(SecretMaterialError):
        log.write("issued", **fields)
    assert stream.getvalue() == ""
    assert log.records == []


def test_a_credential_id_is_not_secret_material() -> None:
    record = AuditLog(lambda: T0, io.StringIO()).write("issued", tokenCredentialId=JTI, secretName="kc")
    assert record["tokenCredentialId"] == JTI


# --- records through the observer -----------------------------------------------------------


SHARED = {
    "schema",
    "ts",
    "event",
    "request",
    "phase",
    "policy",
    "requester",
    "grantee",
    "permission",
    "rules",
}


async def test_every_record_of_a_story_names_the_request_the_same_way() -> None:
    obs, stream = observer()
    req = request()
    await obs.requested(req)
    await obs.decided(req, decision())
    decided = apply(req.status, Decided("allowed", "ok", "deployers", PIPELINE, (RULE,)), T0, 1)
    req.status = decided
    g = grant(req)
    issued = apply(
        decided,
        Issued(ObjectRef(name="deploy-1", uid=g.metadata.uid), g.spec.identity, T0, g.spec.expires_at),  # type: ignore[arg-type]
        T0,
        1,
    )
    req.status = issued
    objects = [
        CreatedObject(
            api_version="rbac.authorization.k8s.io/v1",
            kind="RoleBinding",
            name="rb",
            namespace="pay",
            uid="rb-uid",
        )
    ]
    await obs.issued(req, g, objects, None, 0.25)
    ended = apply(
        issued, Ended("Expired", "ttl ran out", g.spec.expires_at + timedelta(seconds=0.1), 0.1), T0, 1
    )
    await obs.revoked(g, "Expired", "ttl ran out", 0.1, None, ended)

    records = lines(stream)
    assert [r["event"] for r in records] == ["requested", "decided", "issued", "revoked"]
    # Policy and resolved rules are known from the decision on ("where known").
    assert SHARED - {"policy", "rules"} <= records[0].keys()
    assert "policy" not in records[0]
    for record in records[1:]:
        assert record.keys() >= SHARED, record["event"]
        assert record["policy"] == "deployers"
        assert record["rules"] == [RULE.to_wire()]
    for record in records:
        assert record["request"] == {"name": "deploy-1", "namespace": "pay", "uid": "uid-deploy-1"}
        assert record["requester"]["username"] == PIPELINE.username
        assert record["grantee"] == {
            "mode": "bind",
            "namespace": "ci",
            "name": "deployer",
            "username": "system:serviceaccount:ci:deployer",
        }
    assert [r["phase"] for r in records] == ["Pending", "Approved", "Active", "Expired"]
    issued_record, revoked_record = records[2], records[3]
    assert issued_record["objects"][0]["uid"] == "rb-uid"
    assert issued_record["expiresAt"] == "2026-03-01T12:10:00.000000Z"
    assert issued_record["latencySeconds"] == 0.25
    assert issued_record["grant"] == {"name": "deploy-1", "namespace": "pay", "uid": "grant-deploy-1"}
    assert revoked_record["endReason"] == "Expired"
    assert revoked_record["lagSeconds"] == 0.1
    assert revoked_record["revokedAt"] == "2026-03-01T12:10:00.100000Z"


async def test_an_ephemeral_grant_records_the_credential_id_at_issue_and_revocation() -> None:
    obs, stream = observer()
    req = request("eph", ephemeral=True)
    g = grant(req)
    await obs.issued(req, g, [], JTI, None)
    await obs.revoked(g, "Completed", "spec.done", None, JTI)
    issued, revoked = lines(stream)
    assert issued["tokenCredentialId"] == revoked["tokenCredentialId"] == JTI
    assert issued["grantee"]["username"] == "system:serviceaccount:pay:zsp-eph-x1"
    assert "lagSeconds" not in revoked, "lag behind expiresAt is only meaningful for expiry"


async def test_approver_decisions_are_approved_and_denied_records() -> None:
    obs, stream = observer()
    req = request("two", policy="deployers")
    alice = ApprovalRecord(username="alice", groups=["leads"], decision="approve", at=T0, comment="ok")
    mallory = ApprovalRecord(username="mallory", decision="approve", at=T0)
    bob = ApprovalRecord(username="bob", decision="deny", at=T0, comment="not today")
    waiting = Tally(False, None, ("alice",), (("mallory", "not an eligible approver"),), 1)
    await obs.approval_recorded(req, alice, True, waiting)
    await obs.approval_recorded(req, mallory, False, waiting)
    denied = Tally(False, "bob", ("alice",), (("mallory", "not an eligible approver"),), 1)
    await obs.approval_recorded(req, bob, False, denied)
    first, second, third = lines(stream)
    assert (first["event"], first["counted"], first["approvalsMissing"], first["phase"]) == (
        "approved",
        True,
        1,
        "Pending",
    )
    assert first["approver"] == {"username": "alice", "groups": ["leads"]}
    assert second["ignoredBecause"] == "not an eligible approver"
    assert (third["event"], third["by"], third["final"], third["phase"]) == (
        "denied",
        "approver",
        True,
        "Denied",
    )
    assert (
        sample(obs.metrics, "zsp_approvals_total", decision="deny", counted="true", policy="deployers") == 1
    )


async def test_a_timeout_is_a_final_denial() -> None:
    obs, stream = observer()
    await obs.timed_out(request("slow", policy="deployers"), "no quorum in 30m")
    (record,) = lines(stream)
    assert (record["event"], record["by"], record["reason"], record["phase"]) == (
        "denied",
        "timeout",
        "TimedOut",
        "TimedOut",
    )
    assert sample(obs.metrics, "zsp_requests_total", decision="timed-out", policy="deployers") == 1


async def test_a_failure_names_its_step() -> None:
    obs, stream = observer()
    await obs.failed(request(), "TokenRequest", "the API server returned no token")
    (record,) = lines(stream)
    assert (record["event"], record["step"], record["phase"]) == ("failed", "TokenRequest", "Failed")
    assert sample(obs.metrics, "zsp_issue_failures_total", step="TokenRequest") == 1


async def test_a_policy_denial_is_a_decided_record_with_the_closest_policy() -> None:
    obs, stream = observer()
    await obs.decided(request(), decision(Outcome.DENIED, mismatches=("namespace pay is not allowed",)))
    (record,) = lines(stream)
    assert (record["event"], record["outcome"], record["phase"]) == ("decided", "denied", "Denied")
    assert record["mismatches"] == ["namespace pay is not allowed"]


async def test_a_malformed_request_is_requested_then_denied() -> None:
    obs, stream = observer()
    await obs.malformed({"name": "bad", "namespace": "pay", "uid": "u"}, "spec.reason: blank")
    assert [(r["event"], r.get("outcome")) for r in lines(stream)] == [
        ("requested", None),
        ("decided", "denied"),
    ]


# --- metrics --------------------------------------------------------------------------------


async def test_a_decision_is_counted_once_per_outcome() -> None:
    obs, _ = observer()
    req = request()
    await obs.decided(req, decision(Outcome.PENDING))
    req.status = apply(req.status, Decided("pending", "needs 2", "deployers", PIPELINE), T0, 1)
    await obs.decided(req, decision(Outcome.PENDING, reason="needs 2, reworded"))
    await obs.decided(req, decision(Outcome.DENIED))
    m = obs.metrics
    assert sample(m, "zsp_requests_total", decision="pending", policy="deployers") == 1
    assert sample(m, "zsp_requests_total", decision="denied", policy="deployers") == 1


async def test_active_grants_rise_and_fall_and_never_go_negative_across_a_restart() -> None:
    obs, _ = observer()
    one, two = (
        grant(request("one")),
        grant(request("two", ephemeral=True), break_glass=True, persistence=True),
    )
    m = obs.metrics
    await obs.issued(request("one"), one, [], None, 0.1)
    await obs.issued(request("one"), one, [], None, 0.1)  # reported twice: counted once
    await obs.issued(request("two", ephemeral=True), two, [], JTI, 0.3)
    assert sample(m, "zsp_active_grants", policy="deployers", mode="bind") == 1
    assert sample(m, "zsp_active_grants", policy="deployers", mode="ephemeral") == 1
    assert sample(m, "zsp_break_glass_grants_total", policy="deployers") == 1
    assert sample(m, "zsp_persistence_capable_grants_total", policy="deployers") == 1
    assert sample(m, "zsp_issue_latency_seconds_count") == 3
    await obs.revoked(one, "Expired", "ttl", 0.05, None)
    await obs.revoked(one, "Expired", "ttl", 0.05, None)
    assert sample(m, "zsp_active_grants", policy="deployers", mode="bind") == 0
    assert sample(m, "zsp_revocations_total", reason="Expired") == 2
    assert sample(m, "zsp_revocation_lag_seconds_bucket", le="0.1") == 2

    restarted, _ = observer()
    restarted.resumed(one)
    await restarted.revoked(two, "Revoked", "policy deleted", None, JTI)  # issued before the restart
    await restarted.revoked(one, "Completed", "done", None, None)
    assert sample(restarted.metrics, "zsp_active_grants", policy="deployers", mode="ephemeral") == 0
    assert sample(restarted.metrics, "zsp_active_grants", policy="deployers", mode="bind") == 0


async def test_metric_labels_are_bounded_whatever_the_number_of_requests() -> None:
    obs, _ = observer()

    def series() -> int:
        return sum(len(family.samples) for family in obs.metrics.registry.collect())

    async def story(name: str) -> None:
        req = request(name)
        await obs.requested(req)
        await obs.decided(req, decision())
        await obs.issued(req, grant(req), [], None, 0.2)
        await obs.revoked(grant(req), "Expired", "ttl", 0.01, None)

    await story("first")
    before = series()
    for n in range(25):
        await story(f"request-{n}")
    assert series() == before, "no per-request series"
    for family in obs.metrics.registry.collect():
        for s in family.samples:
            assert set(s.labels) - {"le"} <= BOUNDED_LABELS, s.name
            assert not any(v.startswith("request-") for v in s.labels.values()), s


# --- Events ---------------------------------------------------------------------------------


async def test_events_are_specific_and_warn_for_denials_and_failures() -> None:
    kube = FakeKube()
    obs, _ = observer(kube)
    req = request()
    await obs.requested(req)
    await obs.decided(req, decision())
    await obs.decided(req, decision(Outcome.DENIED))
    await obs.failed(req, "RoleBinding", "forbidden")
    await obs.issued(req, grant(req), [], None, None)
    await obs.revoked(grant(req), "Completed", "done", None, None)
    await obs.close()  # Events are posted in the background: wait for the queue to drain
    seen = [(e["involvedObject"]["kind"], e["reason"], e["type"]) for e in kube.events]
    assert seen == [
        ("AccessRequest", reasons.REQUEST_RECEIVED, "Normal"),
        ("AccessRequest", reasons.REQUEST_ALLOWED, "Normal"),
        ("AccessRequest", reasons.REQUEST_DENIED, "Warning"),
        ("AccessRequest", reasons.GRANT_FAILED, "Warning"),
        ("AccessRequest", reasons.GRANT_ISSUED, "Normal"),
        ("TaskGrant", reasons.GRANT_ISSUED, "Normal"),
        ("AccessRequest", reasons.GRANT_REVOKED, "Normal"),
        ("TaskGrant", reasons.GRANT_REVOKED, "Normal"),
    ]
    assert kube.events[5]["involvedObject"]["uid"] == "grant-deploy-1"


async def test_break_glass_makes_every_event_a_warning() -> None:
    kube = FakeKube()
    obs, _ = observer(kube)
    req = request("glass", breakGlass=True)
    g = grant(req, break_glass=True)
    await obs.requested(req, break_glass=True)
    await obs.decided(req, decision(break_glass=True))
    await obs.approval_recorded(req, ApprovalRecord(username="a", decision="approve", at=T0), True)
    await obs.issued(req, g, [], None, None)
    await obs.revoked(g, "Expired", "ttl", 0.0, None)
    await obs.failed(req, "Role", "x")
    await obs.close()
    assert {e["type"] for e in kube.events} == {"Warning"}
    assert all(e["message"].startswith("break-glass: ") for e in kube.events)


# --- the chain for `zsp describe` -----------------------------------------------------------


def _story_body() -> dict[str, Any]:
    status = AccessRequestStatus(requester=PIPELINE)
    status = apply(
        status, Decided("pending", "needs 1 approval", "deployers", PIPELINE), T0 + timedelta(seconds=1), 1
    )
    approval = ApprovalRecord(username="alice", decision="approve", at=T0 + timedelta(seconds=5))
    status = apply(
        status, ApprovalsChanged((approval,), True, None, "approved by alice"), T0 + timedelta(seconds=5), 1
    )
    issued = Issued(
        ObjectRef(name="eph", uid="g-1"),
        NamespacedName(namespace="pay", name="zsp-eph-x1"),
        T0 + timedelta(seconds=6),
        T0 + timedelta(minutes=10, seconds=6),
        JTI,
    )
    status = apply(status, issued, T0 + timedelta(seconds=6), 1)
    status = apply(
        status,
        Ended("Expired", "the grant's TTL ran out", T0 + timedelta(minutes=10, seconds=6.2), 0.2),
        T0,
        1,
    )
    return {
        "metadata": {
            "name": "eph",
            "namespace": "pay",
            "uid": "r-1",
            "creationTimestamp": "2026-03-01T12:00:00Z",
        },
        "spec": {"grantee": {"ephemeral": {}}, "permission": "deploy", "reason": "x"},
        "status": status.to_wire(),
    }


def _event(
    reason: str, message: str, at: str, type_: str = "Normal", kind: str = "AccessRequest"
) -> dict[str, Any]:
    return {
        "reason": reason,
        "message": message,
        "type": type_,
        "lastTimestamp": at,
        "involvedObject": {"kind": kind},
    }


def test_the_chain_follows_the_audit_vocabulary_from_status() -> None:
    steps = chain_from(_story_body())
    assert [s.event for s in steps] == ["requested", "decided", "approved", "issued", "revoked"]
    assert steps[1].details == {"outcome": "pending", "policy": "deployers"}
    assert steps[3].details["tokenCredentialId"] == JTI
    assert steps[4].details == {"endReason": "Expired", "lagSeconds": 0.2, "tokenCredentialId": JTI}
    assert all(s.source == "status" for s in steps)
    assert steps[4].to_dict()["at"] == "2026-03-01T12:10:06.200000Z"


def test_events_add_what_status_does_not_say_once() -> None:
    body = _story_body()
    events = [
        _event(reasons.GRANT_ISSUED, "TaskGrant eph live", "2026-03-01T12:00:06Z"),
        _event(reasons.GRANT_ISSUED, "TaskGrant eph live", "2026-03-01T12:00:06Z", kind="TaskGrant"),
        _event(reasons.EDIT_IGNORED, "only spec.done may change", "2026-03-01T12:01:00Z", "Warning"),
    ]
    steps = chain_from(body, events)
    assert [s.event for s in steps] == ["requested", "decided", "approved", "issued", NOTE, "revoked"]
    assert steps[4].warning
    assert steps[4].source == "event"

    del body["status"]["issuedAt"]  # a status write that was lost: the Event still tells it, once
    steps = chain_from(body, events)
    issued = [s for s in steps if s.event == "issued"]
    assert [(s.source, s.reason) for s in issued] == [("event", reasons.GRANT_ISSUED)]


def test_a_request_without_status_has_a_one_step_chain() -> None:
    body = {
        "metadata": {"name": "new", "creationTimestamp": "2026-03-01T12:00:00Z"},
        "spec": {"permission": "deploy"},
    }
    (step,) = chain_from(body)
    assert step.event == "requested"
    assert "unrecorded requester" in step.summary
