"""API Priority and Fairness objects (flowcontrol.apiserver.k8s.io/v1), defaulted and validated
as kube-apiserver 1.36 does (messages taken from it).

The objects are stored and served; nothing here classifies or queues requests.

Defaults (v1 decoding): a FlowSchema's `matchingPrecedence` 0 becomes 1000; a Limited level's
`nominalConcurrencyShares` 30 and `lendablePercent` 0 when absent, its queuing `queues` 64,
`handSize` 8 and `queueLengthLimit` 50 when 0; an Exempt level's shares and percentage 0.

FlowSchema: precedence 1..10000, 1 only for `exempt`; distinguisher ByUser or ByNamespace; a
priority level name (a DNS subdomain); every rule has subjects (ServiceAccount, User or
Group, each with its own field only; a ServiceAccount needs a namespace) and resource or
non-resource rules; verbs, API groups, resources and namespaces are non-empty, `*` stands
alone, verbs are request verbs, namespaces are labels, and a rule without namespaces must be
cluster-scoped; non-resource URLs start with a slash and glob only a trailing `/*`.

PriorityLevelConfiguration: `type` Exempt (only, and always, for `exempt`) or Limited with
its own section and not the other's; shares non-negative, `lendablePercent` 0..100,
`borrowingLimitPercent` non-negative; `limitResponse` Queue (with `queuing`) or Reject
(without); queues 1..10^7, handSize 1..queues with at most 60 bits of shuffle sharding,
queueLengthLimit positive.

Not checked: the fixed specs of the mandatory `exempt` and `catch-all` objects, and status.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from zsp_operator.sim.errors import FieldError, forbidden_field, invalid, not_supported, required

GROUP = "flowcontrol.apiserver.k8s.io"
FLOW_SCHEMAS = (GROUP, "flowschemas")
PRIORITY_LEVELS = (GROUP, "prioritylevelconfigurations")

DEFAULT_MATCHING_PRECEDENCE = 1000
MAX_MATCHING_PRECEDENCE = 10000
DEFAULT_QUEUING = {"handSize": 8, "queues": 64, "queueLengthLimit": 50}
DEFAULT_NOMINAL_CONCURRENCY_SHARES = 30
MAX_QUEUES = 10_000_000
MAX_HASH_BITS = 60
EXEMPT = "exempt"

# Sorted, as the server lists them.
DISTINGUISHER_METHODS = ["ByNamespace", "ByUser"]
SUBJECT_KINDS = ["Group", "ServiceAccount", "User"]
REQUEST_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "proxy", "update", "watch"]
LEVEL_TYPES = ["Exempt", "Limited"]
LIMIT_RESPONSE_TYPES = ["Queue", "Reject"]

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    f"validation is '{_SUBDOMAIN}')"
)
_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    f"start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    f"validation is '{_LABEL}')"
)
_NAMESPACE_INTRO = "each member of this list must be '*' or a DNS-1123 label; "


def _int(value: Any) -> int:
    """An integer field as decoded; anything else counts as unset (0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _go_json(value: Any) -> str:
    """A bad value that is neither a string nor a number, as Go's field errors print it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _subdomain_messages(name: str) -> list[str]:
    found = ["must be no more than 253 characters"] if len(name) > 253 else []
    if not re.fullmatch(_SUBDOMAIN, name):
        found.append(_SUBDOMAIN_MESSAGE)
    return found


def _label_messages(name: str) -> list[str]:
    found = ["must be no more than 63 characters"] if len(name) > 63 else []
    if not re.fullmatch(_LABEL, name):
        found.append("must not contain dots" if re.fullmatch(_SUBDOMAIN, name) else _LABEL_MESSAGE)
    return found


# --- defaults ---------------------------------------------------------------------------------


def apply_flow_schema_defaults(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict) and not _int(spec.get("matchingPrecedence")):
        spec["matchingPrecedence"] = DEFAULT_MATCHING_PRECEDENCE


def apply_priority_level_defaults(obj: dict[str, Any]) -> None:
    spec = _dict(obj.get("spec"))
    limited = spec.get("limited")
    if isinstance(limited, dict):
        for key, default in (
            ("nominalConcurrencyShares", DEFAULT_NOMINAL_CONCURRENCY_SHARES),
            ("lendablePercent", 0),
        ):
            if limited.get(key) is None:
                limited[key] = default
        queuing = _dict(limited.get("limitResponse")).get("queuing")
        if isinstance(queuing, dict):
            for key, default in DEFAULT_QUEUING.items():
                if not _int(queuing.get(key)):
                    queuing[key] = default
    exempt = spec.get("exempt")
    if isinstance(exempt, dict):
        for key in ("nominalConcurrencyShares", "lendablePercent"):
            if exempt.get(key) is None:
                exempt[key] = 0


# --- FlowSchema -------------------------------------------------------------------------------


def _wildcard_list_errors(path: str, values: list[Any], what: str, detail: str) -> list[FieldError]:
    """Required non-empty; `*` only alone."""
    if not values:
        return [required(path, detail)]
    if len(values) > 1 and "*" in values:
        return [
            FieldError(
                "FieldValueInvalid",
                path,
                f"Invalid value: {_go_json(values)}: if '*' is present, must not specify other {what}",
            )
        ]
    return []


def _verbs_errors(path: str, verbs: list[Any]) -> list[FieldError]:
    found = _wildcard_list_errors(path, verbs, "verbs", "verbs must contain at least one value")
    if not found and "*" not in verbs and not set(verbs) <= set(REQUEST_VERBS):
        choices = ", ".join(json.dumps(verb) for verb in REQUEST_VERBS)
        found.append(
            FieldError(
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {_go_json(verbs)}: supported values: {choices}",
            )
        )
    return found


def _resource_rule_errors(path: str, rule: dict[str, Any]) -> list[FieldError]:
    found = _verbs_errors(f"{path}.verbs", _list(rule.get("verbs")))
    found += _wildcard_list_errors(
        f"{path}.apiGroups",
        _list(rule.get("apiGroups")),
        "api groups",
        "resource rules must supply at least one api group",
    )
    found += _wildcard_list_errors(
        f"{path}.resources",
        _list(rule.get("resources")),
        "resources",
        "resource rules must supply at least one resource",
    )
    namespaces = _list(rule.get("namespaces"))
    if not namespaces and rule.get("clusterScope") is not True:
        found.append(
            required(
                f"{path}.namespaces",
                "resource rules that are not cluster scoped must supply at least one namespace",
            )
        )
    elif "*" in namespaces:
        found += _wildcard_list_errors(f"{path}.namespaces", namespaces, "namespaces", "")
    else:
        for index, namespace in enumerate(namespaces):
            for message in _label_messages(str(namespace)):
                found.append(invalid(f"{path}.namespaces[{index}]", namespace, _NAMESPACE_INTRO + message))
    return found


def _url_error(path: str, url: str) -> FieldError | None:
    if not url:
        return invalid(path, url, "must not be empty")
    if url == "/":
        return None
    if not url.startswith("/"):
        return invalid(path, url, "must start with slash")
    if " " in url:
        return invalid(path, url, "must not contain white-space")
    if "//" in url:
        return invalid(path, url, "must not contain double slash")
    stars = url.count("*")
    if stars > 1 or (stars == 1 and not url.endswith("/*")):
        return invalid(path, url, "wildcard can only do suffix matching")
    return None


def _non_resource_rule_errors(path: str, rule: dict[str, Any]) -> list[FieldError]:
    found = _verbs_errors(f"{path}.verbs", _list(rule.get("verbs")))
    urls = _list(rule.get("nonResourceURLs"))
    found += _wildcard_list_errors(
        f"{path}.nonResourceURLs",
        urls,
        "non-resource URLs",
        "nonResourceURLs must contain at least one value",
    )
    if urls and "*" not in urls:
        for index, url in enumerate(urls):
            error = _url_error(f"{path}.nonResourceURLs[{index}]", str(url))
            if error is not None:
                found.append(error)
    return found


_SUBJECT_FIELDS = {"ServiceAccount": "serviceAccount", "User": "user", "Group": "group"}


def _subject_errors(path: str, subject: dict[str, Any]) -> list[FieldError]:
    kind = subject.get("kind") or ""
    if kind not in _SUBJECT_FIELDS:
        return [not_supported(f"{path}.kind", kind, SUBJECT_KINDS)]
    own = _SUBJECT_FIELDS[kind]
    found: list[FieldError] = []
    body = subject.get(own)
    if not isinstance(body, dict):
        found.append(required(f"{path}.{own}", f"{own} is required when subject kind is '{kind}'"))
    elif kind == "ServiceAccount":
        name, namespace = body.get("name") or "", body.get("namespace") or ""
        if not name:
            found.append(required(f"{path}.serviceAccount.name"))
        elif name != "*":
            found += [invalid(f"{path}.serviceAccount.name", name, m) for m in _subdomain_messages(name)]
        if not namespace:
            found.append(
                required(f"{path}.serviceAccount.namespace", "must specify namespace for service account")
            )
        else:
            found += [
                invalid(f"{path}.serviceAccount.namespace", namespace, m) for m in _label_messages(namespace)
            ]
    elif not body.get("name"):
        found.append(required(f"{path}.{own}.name"))
    # The other two fields, in the server's order (user before group, serviceAccount first).
    for other_kind, other in (("ServiceAccount", "serviceAccount"), ("User", "user"), ("Group", "group")):
        if other != own and subject.get(other) is not None:
            found.append(
                forbidden_field(
                    f"{path}.{other}", f"{other} is forbidden when subject kind is not '{other_kind}'"
                )
            )
    return found


def _rule_errors(path: str, rule: dict[str, Any]) -> list[FieldError]:
    subjects = _list(rule.get("subjects"))
    found: list[FieldError] = []
    if not subjects:
        found.append(required(f"{path}.subjects", "subjects must contain at least one value"))
    for index, subject in enumerate(subjects):
        found += _subject_errors(f"{path}.subjects[{index}]", _dict(subject))
    resource_rules = _list(rule.get("resourceRules"))
    non_resource_rules = _list(rule.get("nonResourceRules"))
    if not resource_rules and not non_resource_rules:
        found.append(required(path, "at least one of resourceRules and nonResourceRules has to be non-empty"))
    for index, item in enumerate(resource_rules):
        found += _resource_rule_errors(f"{path}.resourceRules[{index}]", _dict(item))
    for index, item in enumerate(non_resource_rules):
        found += _non_resource_rule_errors(f"{path}.nonResourceRules[{index}]", _dict(item))
    return found


def flow_schema_errors(obj: dict[str, Any]) -> list[FieldError]:
    name = _dict(obj.get("metadata")).get("name") or ""
    spec = _dict(obj.get("spec"))
    found: list[FieldError] = []
    precedence = _int(spec.get("matchingPrecedence"))
    if precedence <= 0:
        found.append(invalid("spec.matchingPrecedence", precedence, "must be a positive value"))
    if precedence > MAX_MATCHING_PRECEDENCE:
        found.append(
            invalid(
                "spec.matchingPrecedence", precedence, f"must not be greater than {MAX_MATCHING_PRECEDENCE}"
            )
        )
    if precedence == 1 and name != EXEMPT:
        found.append(
            invalid(
                "spec.matchingPrecedence",
                precedence,
                "only the schema named 'exempt' may have matchingPrecedence 1",
            )
        )
    method = spec.get("distinguisherMethod")
    if isinstance(method, dict) and method.get("type") not in DISTINGUISHER_METHODS:
        choices = ", ".join(json.dumps(choice) for choice in DISTINGUISHER_METHODS)
        shown = _go_json({"Type": method.get("type") or ""})
        found.append(
            FieldError(
                "FieldValueNotSupported",
                "spec.distinguisherMethod.type",
                f"Unsupported value: {shown}: supported values: {choices}",
            )
        )
    level = _dict(spec.get("priorityLevelConfiguration")).get("name") or ""
    if level:
        found += [
            invalid("spec.priorityLevelConfiguration.name", level, m) for m in _subdomain_messages(level)
        ]
    else:
        found.append(required("spec.priorityLevelConfiguration.name", "must reference a priority level"))
    for index, rule in enumerate(_list(spec.get("rules"))):
        found += _rule_errors(f"spec.rules[{index}]", _dict(rule))
    return found


# --- PriorityLevelConfiguration ---------------------------------------------------------------


def _queuing_errors(path: str, queuing: dict[str, Any]) -> list[FieldError]:
    found: list[FieldError] = []
    length = _int(queuing.get("queueLengthLimit"))
    if length <= 0:
        found.append(invalid(f"{path}.queueLengthLimit", length, "must be positive"))
    queues = _int(queuing.get("queues"))
    if queues <= 0:
        found.append(invalid(f"{path}.queues", queues, "must be positive"))
    elif queues > MAX_QUEUES:
        found.append(invalid(f"{path}.queues", queues, f"must not be greater than {MAX_QUEUES}"))
    hand = _int(queuing.get("handSize"))
    if hand <= 0:
        found.append(invalid(f"{path}.handSize", hand, "must be positive"))
    elif hand > queues:
        found.append(invalid(f"{path}.handSize", hand, f"should not be greater than queues ({queues})"))
    elif math.ceil(math.log2(queues) * hand) > MAX_HASH_BITS:
        found.append(
            invalid(
                f"{path}.handSize",
                hand,
                f"required entropy bits of deckSize {queues} and handSize {hand} should not be greater "
                f"than {MAX_HASH_BITS}",
            )
        )
    return found


def _limit_response_errors(path: str, response: dict[str, Any]) -> list[FieldError]:
    kind = response.get("type") or ""
    queuing = response.get("queuing")
    if kind == "Reject":
        if queuing is not None:
            return [
                forbidden_field(f"{path}.queuing", "must be nil if limited.limitResponse.type is not Limited")
            ]
        return []
    if kind == "Queue":
        if not isinstance(queuing, dict):
            return [required(f"{path}.queuing", "must not be empty if limited.limitResponse.type is Limited")]
        return _queuing_errors(f"{path}.queuing", queuing)
    if not kind:
        return [required(f"{path}.type")]
    return [not_supported(f"{path}.type", kind, LIMIT_RESPONSE_TYPES)]


def _percent_errors(path: str, section: dict[str, Any]) -> list[FieldError]:
    percent = section.get("lendablePercent")
    if isinstance(percent, int) and not 0 <= percent <= 100:
        return [invalid(f"{path}.lendablePercent", percent, "must be between 0 and 100, inclusive")]
    return []


def _limited_errors(path: str, limited: dict[str, Any]) -> list[FieldError]:
    found: list[FieldError] = []
    shares = _int(limited.get("nominalConcurrencyShares"))
    if shares < 0:
        found.append(invalid(f"{path}.nominalConcurrencyShares", shares, "must be a non-negative integer"))
    found += _limit_response_errors(f"{path}.limitResponse", _dict(limited.get("limitResponse")))
    found += _percent_errors(path, limited)
    borrowing = limited.get("borrowingLimitPercent")
    if isinstance(borrowing, int) and borrowing < 0:
        found.append(
            invalid(
                f"{path}.borrowingLimitPercent", borrowing, "if specified, must be a non-negative integer"
            )
        )
    return found


def priority_level_errors(obj: dict[str, Any]) -> list[FieldError]:
    name = _dict(obj.get("metadata")).get("name") or ""
    spec = _dict(obj.get("spec"))
    kind = spec.get("type") or ""
    found: list[FieldError] = []
    if (name == EXEMPT) != (kind == "Exempt"):
        found.append(invalid("spec.type", kind, "must be 'Exempt' if and only if `name` is 'exempt'"))
    limited, exempt = spec.get("limited"), spec.get("exempt")
    if kind == "Exempt":
        if limited is not None:
            found.append(forbidden_field("spec.limited", "must be nil if the type is not Limited"))
        if isinstance(exempt, dict):
            shares = exempt.get("nominalConcurrencyShares")
            if isinstance(shares, int) and shares < 0:
                found.append(
                    invalid("spec.exempt.nominalConcurrencyShares", shares, "must be a non-negative integer")
                )
            found += _percent_errors("spec.exempt", exempt)
    elif kind == "Limited":
        if exempt is not None:
            found.append(forbidden_field("spec.exempt", "must be nil if the type is Limited"))
        if not isinstance(limited, dict):
            found.append(required("spec.limited", "must not be empty when type is Limited"))
        else:
            found += _limited_errors("spec.limited", limited)
    elif not kind:
        found.append(required("spec.type"))
    else:
        found.append(not_supported("spec.type", kind, LEVEL_TYPES))
    return found
