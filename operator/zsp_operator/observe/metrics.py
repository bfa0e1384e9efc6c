"""Prometheus metrics, documented in docs/metrics.md.

Every label has bounded cardinality: policy names (written by platform admins), modes,
reasons, steps and kinds of work. Nothing names a request, a grantee or a requester.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The only label names any family may use; tests/unit/test_observe.py holds every family to it.
# `target` names a target of the notification routes file and `event` a notification event: both bounded.
BOUNDED_LABELS: Final = frozenset(
    {"decision", "policy", "mode", "reason", "step", "kind", "counted", "target", "event", "outcome"}
)

# Seconds from request creation to live grant, and behind expiresAt at revocation.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The operator's metrics, in their own registry so tests and replicas don't collide."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "zsp_requests",
            "AccessRequests by the decision that moved them on (allowed, pending, denied, timed-out), by policy",
            ["decision", "policy"],
            registry=r,
        )
        self.approvals = Counter(
            "zsp_approvals",
            "Approver decisions recorded (approve, deny), whether they counted, by policy",
            ["decision", "counted", "policy"],
            registry=r,
        )
        self.active_grants = Gauge(
            "zsp_active_grants", "Live TaskGrants, by policy and mode", ["policy", "mode"], registry=r
        )
        self.revocations = Counter("zsp_revocations", "Grants revoked, by reason", ["reason"], registry=r)
        self.revocation_lag = Histogram(
            "zsp_revocation_lag_seconds",
            "How far behind expiresAt an expired grant's binding was removed (negative: early)",
            buckets=(-1, -0.5, -0.1, 0, *_LATENCY_BUCKETS),
            registry=r,
        )
        self.issue_latency = Histogram(
            "zsp_issue_latency_seconds",
            "From AccessRequest creation to a live grant",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.issue_failures = Counter(
            "zsp_issue_failures", "Issuances that failed and were rolled back, by step", ["step"], registry=r
        )
        self.standing_found = Counter(
            "zsp_standing_bindings_found",
            "Bindings without a live grant found, by mode",
            ["mode"],
            registry=r,
        )
        self.standing_removed = Counter(
            "zsp_standing_bindings_removed",
            "Bindings without a live grant deleted, by mode",
            ["mode"],
            registry=r,
        )
        self.sweeps = Counter(
            "zsp_sweeps", "Full standing-privilege sweeps completed, by mode", ["mode"], registry=r
        )
        self.persistence_grants = Counter(
            "zsp_persistence_capable_grants",
            "Grants issued with persistence-capable rules",
            ["policy"],
            registry=r,
        )
        self.break_glass_grants = Counter(
            "zsp_break_glass_grants", "Grants issued under break-glass policies", ["policy"], registry=r
        )
        self.reconcile_errors = Counter(
            "zsp_reconcile_errors", "Errors while reconciling, by kind of work", ["kind"], registry=r
        )
        self.notifications_sent = Counter(
            "zsp_notifications_sent",
            "Notifications delivered, by target (of the routes file) and event",
            ["target", "event"],
            registry=r,
        )
        self.notification_retries = Counter(
            "zsp_notification_retries",
            "Notification deliveries retried after a failure, by target",
            ["target"],
            registry=r,
        )
        self.notification_failures = Counter(
            "zsp_notification_failures",
            "Notifications not delivered, by target and reason (gave-up: every attempt failed; queue-full: dropped)",
            ["target", "reason"],
            registry=r,
        )
        self.notification_queue = Gauge(
            "zsp_notification_queue", "Notifications waiting for delivery, by target", ["target"], registry=r
        )
        self.audit_events = Counter(
            "zsp_audit_events",
            "API server audit events received, by outcome (used, denied, unrelated, repeated, no-grant)",
            ["outcome"],
            registry=r,
        )
        self.audit_rejected = Counter(
            "zsp_audit_webhook_rejected",
            "Posts to the audit webhook refused, by reason (unauthenticated, malformed, too-large)",
            ["reason"],
            registry=r,
        )
        self.grants_with_unused_rules = Counter(
            "zsp_grants_with_unused_rules",
            "Ended grants whose usage summary lists rules no request exercised, by policy",
            ["policy"],
            registry=r,
        )
        self.denied_during_grants = Counter(
            "zsp_denied_requests_during_grants",
            "Requests grantees made during their grants that the API server refused, by policy",
            ["policy"],
            registry=r,
        )
        # uid -> (policy, mode) of every grant counted in active_grants; keyed so that a grant
        # reported twice, or ended without having been counted (before a restart), never skews it.
        self._live: dict[str, tuple[str, str]] = {}

    def grant_live(self, uid: str, policy: str, mode: str) -> None:
        """Count a grant as live once, however often it is reported."""
        if uid not in self._live:
            self._live[uid] = (policy, mode)
            self.active_grants.labels(policy, mode).inc()

    def grant_ended(self, uid: str) -> None:
        labels = self._live.pop(uid, None)
        if labels is not None:
            self.active_grants.labels(*labels).dec()
