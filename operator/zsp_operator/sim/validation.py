"""Built-in validation the real API server does that our stories can run into.

Object names, RBAC roleRef/subjects, webhook URLs, CRD names, Job status transitions
(`sim/jobs.py`), Service addresses (`sim/services.py`), EndpointSlice addresses
(`sim/endpointslices.py`), API Priority and Fairness objects (`sim/flowcontrol.py`) and
TokenRequest lifetimes. Built-in kinds are otherwise not
schema-checked: unknown fields of built-in kinds are kept, whatever `fieldValidation` says.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from zsp_operator.sim.endpointslices import endpoint_slice_errors
from zsp_operator.sim.errors import FieldError, forbidden_field, invalid, not_supported, required
from zsp_operator.sim.flowcontrol import (
    FLOW_SCHEMAS,
    PRIORITY_LEVELS,
    apply_flow_schema_defaults,
    apply_priority_level_defaults,
    flow_schema_errors,
    priority_level_errors,
)
from zsp_operator.sim.jobs import job_status_errors
from zsp_operator.sim.resources import ResourceType
from zsp_operator.sim.services import apply_service_defaults, service_errors

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    f"validation is '{_SUBDOMAIN}')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    f"start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    f"validation is '{_LABEL}')"
)
_RBAC_KINDS = {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}
_LABEL_NAMED = {"namespaces", "services"}


def name_errors(rtype: ResourceType, name: str) -> list[FieldError]:
    if rtype.group == "rbac.authorization.k8s.io" and rtype.plural in _RBAC_KINDS:
        # RBAC names are path segments: "system:basic-user" is fine.
        if name in (".", "..") or "/" in name or "%" in name:
            return [invalid("metadata.name", name, 'may not contain "/" or "%" or be "." or ".."')]
        return []
    if rtype.group == "" and rtype.plural in _LABEL_NAMED:
        if len(name) > 63 or not re.fullmatch(_LABEL, name):
            return [invalid("metadata.name", name, LABEL_MESSAGE)]
        return []
    if len(name) > 253 or not re.fullmatch(_SUBDOMAIN, name):
        return [invalid("metadata.name", name, SUBDOMAIN_MESSAGE)]
    return []


def _rules_errors(rules: Any) -> list[FieldError]:
    errors = []
    for index, rule in enumerate(rules or []):
        if not isinstance(rule, dict) or not rule.get("verbs"):
            errors.append(required(f"rules[{index}].verbs", "verbs must contain at least one value"))
        elif rule.get("nonResourceURLs") and (rule.get("resources") or rule.get("apiGroups")):
            errors.append(
                invalid(
                    f"rules[{index}].nonResourceURLs",
                    rule["nonResourceURLs"],
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
    return errors


def _binding_errors(obj: dict[str, Any], old: dict[str, Any] | None, namespaced: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    role_ref = obj.get("roleRef") or {}
    allowed_kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if not role_ref.get("name"):
        errors.append(required("roleRef.name"))
    if role_ref.get("kind") not in allowed_kinds:
        errors.append(not_supported("roleRef.kind", role_ref.get("kind", ""), allowed_kinds))
    if role_ref.get("apiGroup") != "rbac.authorization.k8s.io":
        errors.append(
            not_supported("roleRef.apiGroup", role_ref.get("apiGroup", ""), ["rbac.authorization.k8s.io"])
        )
    if old is not None and role_ref != (old.get("roleRef") or {}):
        errors.append(invalid("roleRef", role_ref, "cannot change roleRef"))
    for index, subject in enumerate(obj.get("subjects") or []):
        kind = subject.get("kind")
        if kind not in ("User", "Group", "ServiceAccount"):
            errors.append(
                not_supported(f"subjects[{index}].kind", kind or "", ["ServiceAccount", "User", "Group"])
            )
        if not subject.get("name"):
            errors.append(required(f"subjects[{index}].name"))
        if kind == "ServiceAccount" and not namespaced and not subject.get("namespace"):
            errors.append(required(f"subjects[{index}].namespace"))
    return errors


def _webhook_errors(obj: dict[str, Any]) -> list[FieldError]:
    errors = []
    for index, hook in enumerate(obj.get("webhooks") or []):
        prefix = f"webhooks[{index}]"
        if not hook.get("name"):
            errors.append(required(f"{prefix}.name"))
        config = hook.get("clientConfig") or {}
        url, service = config.get("url"), config.get("service")
        if bool(url) == bool(service):
            errors.append(required(f"{prefix}.clientConfig", "exactly one of url or service is required"))
        elif url and not str(url).startswith("https://"):
            errors.append(
                invalid(f"{prefix}.clientConfig.url", url, "'https' is the only allowed URL scheme")
            )
        if not hook.get("sideEffects"):
            errors.append(not_supported(f"{prefix}.sideEffects", "", ["None", "NoneOnDryRun"]))
        if not hook.get("admissionReviewVersions"):
            errors.append(required(f"{prefix}.admissionReviewVersions"))
    return errors


def _crd_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    errors: list[FieldError] = []
    if not spec.get("group"):
        errors.append(required("spec.group"))
    if not names.get("plural"):
        errors.append(required("spec.names.plural"))
    if not names.get("kind"):
        errors.append(required("spec.names.kind"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(not_supported("spec.scope", spec.get("scope", ""), ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        errors.append(required("spec.versions", "must have exactly one version marked as storage version"))
    elif sum(1 for version in versions if version.get("storage")) != 1:
        errors.append(
            invalid("spec.versions", "[...]", "must have exactly one version marked as storage version")
        )
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if obj["metadata"].get("name") != expected:
        errors.append(
            invalid("metadata.name", obj["metadata"].get("name"), 'must be spec.names.plural+"."+spec.group')
        )
    if old is not None and spec.get("scope") != (old.get("spec") or {}).get("scope"):
        errors.append(invalid("spec.scope", spec.get("scope"), "field is immutable"))
    return errors


def builtin_errors(rtype: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    """Kind-specific checks; empty for kinds we do not validate."""
    if rtype.group == "rbac.authorization.k8s.io":
        if rtype.plural in ("roles", "clusterroles"):
            return _rules_errors(obj.get("rules"))
        return _binding_errors(obj, old, namespaced=rtype.plural == "rolebindings")
    if rtype.group == "admissionregistration.k8s.io":
        return _webhook_errors(obj)
    if rtype.group == "apiextensions.k8s.io":
        return _crd_errors(obj, old)
    if rtype.group == "batch" and rtype.plural == "jobs" and old is not None:
        return job_status_errors(obj, old)
    if rtype.group == "" and rtype.plural == "services":
        return service_errors(obj, old)
    if rtype.group == "discovery.k8s.io" and rtype.plural == "endpointslices":
        return endpoint_slice_errors(obj, old)
    if rtype.storage_key == FLOW_SCHEMAS:
        return flow_schema_errors(obj)
    if rtype.storage_key == PRIORITY_LEVELS:
        return priority_level_errors(obj)
    return []


def finalizer_errors(old: dict[str, Any], new: dict[str, Any]) -> list[FieldError]:
    """No new finalizers on an object that is being deleted."""
    if not old["metadata"].get("deletionTimestamp"):
        return []
    before = set(old["metadata"].get("finalizers") or [])
    added = [f for f in new["metadata"].get("finalizers") or [] if f not in before]
    if not added:
        return []
    listed = ", ".join(f'"{f}"' for f in added)
    return [
        forbidden_field(
            "metadata.finalizers",
            f"no new finalizers can be added if the object is being deleted, "
            f"found new finalizers []string{{{listed}}}",
        )
    ]


def apply_builtin_defaults(rtype: ResourceType, obj: dict[str, Any]) -> None:
    """What decoding and defaulting do for built-in kinds we model, in place."""
    if rtype.group == "" and rtype.plural == "secrets":
        # stringData is write-only: merged into data (base64) before anything else sees it.
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        obj.setdefault("type", "Opaque")
    if rtype.group == "" and rtype.plural == "services":
        apply_service_defaults(obj)
    if rtype.storage_key == FLOW_SCHEMAS:
        apply_flow_schema_defaults(obj)
    if rtype.storage_key == PRIORITY_LEVELS:
        apply_priority_level_defaults(obj)
