"""Prometheus metrics; every label has bounded cardinality (policy names, modes, reasons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds from request creation to live grant, and behind expiresAt at revocation.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The operator's metrics, in their own registry so tests and replicas don't collide."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "zsp_requests",
            "AccessRequests decided, by outcome and policy",
            ["decision", "policy"],
            registry=r,
        )
        self.active_grants = Gauge(
            "zsp_active_grants", "Live TaskGrants, by policy and mode", ["policy", "mode"], registry=r
        )
        self.revocations = Counter("zsp_revocations", "Grants revoked, by reason", ["reason"], registry=r)
        self.revocation_lag = Histogram(
            "zsp_revocation_lag_seconds",
            "How far behind expiresAt the privilege was removed (negative: early)",
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
