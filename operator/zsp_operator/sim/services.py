"""Service ClusterIPs, allocated and checked as kube-apiserver 1.36 does on a single-stack cluster.

The service range defaults to 127.0.96.0/20, what the real test tier passes as
`--service-cluster-ip-range` (tests/envtest.py): ClusterIPs on loopback reach a webhook
served on 0.0.0.0 on this machine, in either tier. Its first address belongs to the API
server's own `kubernetes` Service (not served here, but never handed out either).

On every write of a Service (not its status), before validation, as the server's
BeginCreate/BeginUpdate hooks:
- `type` defaults to ClusterIP; `clusterIP` alone fills `clusterIPs`, and an update that
  leaves them out keeps the allocated ones; `ipFamilyPolicy` and `ipFamilies` are defaulted
  (IPv4, SingleStack; a headless Service without selector asks for both families);
- a Service that is not ExternalName or headless (`clusterIP: None`) gets an address: a
  requested one must be in the range and free, else one is picked at random, from above the
  range's first 256 addresses first (KEP-3070 keeps those for requested ones);
- dry runs hold nothing: without a request they show the range's network address, and a
  requested address is only checked against the range, as the real server does.
An address is held while the write is in flight and then by the stored Service, so deleting
the Service (or turning it into an ExternalName) frees it. Validation then refuses changed
addresses ("may not change once set") and addresses on an ExternalName Service.
"""

from __future__ import annotations

import ipaddress
import json
import random
from typing import Any

from zsp_operator.sim import errors as E
from zsp_operator.sim.addresses import IPV4, IPV6, family_of, legacy_ip_errors
from zsp_operator.sim.errors import FieldError, duplicate, forbidden_field, invalid, not_supported, required
from zsp_operator.sim.store import Store

DEFAULT_SERVICE_CIDR = "127.0.96.0/20"
SERVICES = ("", "services")
NONE = "None"  # clusterIP of a headless Service
CLUSTER_IP = "ClusterIP"
EXTERNAL_NAME = "ExternalName"
SERVICE_TYPES = [CLUSTER_IP, EXTERNAL_NAME, "LoadBalancer", "NodePort"]  # sorted, as listed in errors
SINGLE_STACK, REQUIRE_DUAL_STACK = "SingleStack", "RequireDualStack"
POLICIES = ["PreferDualStack", REQUIRE_DUAL_STACK, SINGLE_STACK]
FAMILIES = [IPV4, IPV6]


class AllocationError(Exception):
    """The requested address cannot be had; the message is the allocator's."""


def _static_block(size: int) -> int:
    """How many low addresses dynamic allocation leaves for requests: 16..256 by size."""
    return 0 if size <= 16 else min(max(16, size // 16), 256)


class ClusterIPs:
    """The service range, and the addresses held in it."""

    def __init__(self, store: Store, cidr: str = DEFAULT_SERVICE_CIDR) -> None:
        self.network = ipaddress.IPv4Network(cidr)
        self._store = store
        self._first = int(self.network.network_address) + 1  # neither network nor broadcast address
        self._last = int(self.network.broadcast_address) - 1
        self._dynamic_from = self._first + _static_block(self.network.num_addresses)
        self._kubernetes = str(ipaddress.IPv4Address(self._first))
        self._in_flight: set[str] = set()

    def _in_use(self) -> set[str]:
        held = {self._kubernetes, *self._in_flight}
        for service in self._store.list(SERVICES):
            held.update((service.get("spec") or {}).get("clusterIPs") or [])
        return held

    def allocate_next(self, *, dry_run: bool) -> str:
        """A free address, held until `release`; a dry run only shows the network address."""
        if dry_run:
            return str(self.network.network_address)
        taken = self._in_use()
        for low, high in ((self._dynamic_from, self._last), (self._first, self._dynamic_from - 1)):
            if low > high:
                continue
            start = random.randint(low, high)  # noqa: S311 - spreading addresses, not security
            for value in [*range(start, high + 1), *range(low, start)]:
                address = str(ipaddress.IPv4Address(value))
                if address not in taken:
                    self._in_flight.add(address)
                    return address
        raise AllocationError("range is full")

    def allocate(self, address: str, *, dry_run: bool) -> None:
        """Hold a requested address until `release`.

        Raises:
            AllocationError: outside the range, or held by another Service.
        """
        value = int(ipaddress.ip_address(address))
        if not self._first <= value <= self._last:
            if dry_run:  # the dry-run allocator words it differently
                raise AllocationError(
                    f"the provided IP ({address}) is not in the valid range. "
                    f"The range of valid IPs is {self.network}"
                )
            raise AllocationError("the provided network does not match the current range")
        if dry_run:
            return
        if address in self._in_use():
            raise AllocationError("provided IP is already allocated")
        self._in_flight.add(address)

    def release(self, addresses: list[str]) -> None:
        """The write is over: stored, its Service holds them; failed, they are free again."""
        self._in_flight.difference_update(addresses)


# --- field errors whose value is the whole clusterIPs list -------------------------------


def _go_json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _invalid_list(path: str, values: list[str] | None, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, f"Invalid value: {_go_json(values)}: {detail}")


def _refuse(name: str, found: list[FieldError]) -> E.ApiError:
    return E.invalid_object("Service", "", name, found)


# --- before validation: defaults, normalization, allocation --------------------------------


def apply_service_defaults(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("type"):
        spec["type"] = CLUSTER_IP


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type") != EXTERNAL_NAME


def _is_headless(spec: dict[str, Any]) -> bool:
    return (spec.get("clusterIPs") or []) == [NONE]


def _keep_allocated(spec: dict[str, Any], old: dict[str, Any]) -> None:
    """An update that leaves out what was allocated keeps it (patchAllocatedValues)."""
    if _needs_cluster_ip(old) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP") and old.get("clusterIP"):
            spec["clusterIP"] = old["clusterIP"]
        if not spec.get("clusterIPs") and old.get("clusterIPs"):
            spec["clusterIPs"] = list(old["clusterIPs"])


def _sync_cluster_ips(spec: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Derive clusterIPs from clusterIP where a client only set the latter (normalizeClusterIPs)."""
    single, plural = spec.get("clusterIP") or "", spec.get("clusterIPs") or []
    if old is None:
        if single and not plural:
            spec["clusterIPs"] = [single]
        return
    old_single, old_plural = old.get("clusterIP") or "", old.get("clusterIPs") or []
    if old_plural and not plural and old_single == single:
        spec["clusterIPs"] = plural = list(old_plural)
    if old_single != single:
        if old_single and not single:
            if plural == old_plural:
                spec.pop("clusterIPs", None)
        elif plural == old_plural:
            spec["clusterIPs"] = [single]


def _related_field_errors(spec: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields, run before allocation."""
    single, plural = spec.get("clusterIP") or "", spec.get("clusterIPs") or []
    found: list[FieldError] = []
    if single and not plural:
        found.append(required("spec.clusterIPs"))
    elif single and plural[0] != single:
        found.append(_invalid_list("spec.clusterIPs", plural, "first value must match `clusterIP`"))
    elif not single and plural:
        found.append(
            _invalid_list("spec.clusterIPs", plural, "must be empty when `clusterIP` is not specified")
        )
    seen: set[str] = set()
    for index, family in enumerate(spec.get("ipFamilies") or []):
        if family not in FAMILIES:
            found.append(not_supported(f"spec.ipFamilies[{index}]", family, FAMILIES))
        if family in seen:
            found.append(duplicate(f"spec.ipFamilies[{index}]", family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in POLICIES:
        found.append(not_supported("spec.ipFamilyPolicy", policy, POLICIES))
    existing = (old or {}).get("clusterIPs") or []
    malformed = False
    for index, address in enumerate(plural):
        if index == 0 and address == NONE:
            if len(plural) > 1:
                malformed = True
                found.append(
                    _invalid_list("spec.clusterIPs", plural, "'None' must be the first and only value")
                )
            continue
        address_errors = legacy_ip_errors(f"spec.clusterIPs[{index}]", address, existing)
        malformed = malformed or bool(address_errors)
        found += address_errors
    if len(plural) > 2:
        found.append(_invalid_list("spec.clusterIPs", plural, "may only hold up to 2 values"))
    if malformed:
        return found
    if len(plural) > 1 and {family_of(address) for address in plural} != set(FAMILIES):
        found.append(
            _invalid_list("spec.clusterIPs", plural, "may specify no more than one IP for each IP family")
        )
    if plural and not _is_headless(spec):
        for index, (address, family) in enumerate(zip(plural, spec.get("ipFamilies") or [], strict=False)):
            if family in FAMILIES and family_of(address) != family:
                expected = f"expected an {family} value as indicated by `ipFamilies[{index}]`"
                found.append(invalid(f"spec.clusterIPs[{index}]", address, expected))
    return found


def _init_ip_families(name: str, spec: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Default ipFamilyPolicy and ipFamilies; refuse what a single-stack IPv4 cluster lacks."""
    if spec.get("type") == EXTERNAL_NAME:
        return
    headless_without_selector = spec.get("clusterIP") == NONE and not spec.get("selector")
    if spec.get("ipFamilyPolicy") is None:
        if old is not None and old.get("ipFamilyPolicy") is not None:
            spec["ipFamilyPolicy"] = old["ipFamilyPolicy"]
        else:
            spec["ipFamilyPolicy"] = REQUIRE_DUAL_STACK if headless_without_selector else SINGLE_STACK
    found = _related_field_errors(spec, old)
    if found:
        raise _refuse(name, found)
    families = list(spec.get("ipFamilies") or [])
    for index, address in enumerate(spec.get("clusterIPs") or []):
        if address == NONE:
            break
        family = family_of(address)
        if index < len(families):
            continue
        if family == IPV4:
            families.append(family)
        else:
            message = f"{family} is not configured on this cluster"
            found.append(_invalid_list(f"spec.clusterIPs[{index}]", spec.get("clusterIPs"), message))
    if found:
        raise _refuse(name, found)
    if headless_without_selector:
        # The one case a single-stack cluster accepts both families.
        families = families or [IPV4]
        if len(families) < 2 and spec["ipFamilyPolicy"] != SINGLE_STACK:
            families.append(IPV6 if families[0] == IPV4 else IPV4)
        spec["ipFamilies"] = families
        return
    if spec["ipFamilyPolicy"] == REQUIRE_DUAL_STACK:
        found.append(
            invalid(
                "spec.ipFamilyPolicy",
                spec["ipFamilyPolicy"],
                "this cluster is not configured for dual-stack services",
            )
        )
    for index, family in enumerate(families):
        if family != IPV4:
            found.append(invalid(f"spec.ipFamilies[{index}]", family, "not configured on this cluster"))
    if found:
        raise _refuse(name, found)
    spec["ipFamilies"] = families or [IPV4]


def _allocate(name: str, spec: dict[str, Any], pool: ClusterIPs, *, dry_run: bool) -> list[str]:
    """Fill in clusterIP and clusterIPs; the addresses now held for this write."""
    if not _needs_cluster_ip(spec) or _is_headless(spec):
        return []
    requested = (spec.get("clusterIPs") or [""])[0]
    try:
        if requested:
            pool.allocate(requested, dry_run=dry_run)
            address = requested
        else:
            address = pool.allocate_next(dry_run=dry_run)
    except AllocationError as error:
        if not requested:  # the only failure without a request: a full range
            raise E.internal(f'failed to allocate a serviceIP for Service "{name}": {error}') from error
        detail = f"failed to allocate IP {requested}: {error}"
        raise _refuse(name, [_invalid_list("spec.clusterIPs", spec.get("clusterIPs"), detail)]) from error
    spec["clusterIP"] = address
    spec["clusterIPs"] = [address]
    return [] if dry_run else [address]


def _drop_for_type(spec: dict[str, Any], old: dict[str, Any]) -> None:
    """Turning into an ExternalName drops the address fields the client did not change."""
    if not (_needs_cluster_ip(old) and not _needs_cluster_ip(spec)):
        return
    if spec.get("clusterIP") == old.get("clusterIP") and spec.get("clusterIPs") == old.get("clusterIPs"):
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    for key in ("ipFamilies", "ipFamilyPolicy"):
        if spec.get(key) == old.get(key):
            spec.pop(key, None)


def begin_service_write(
    pool: ClusterIPs, obj: dict[str, Any], old: dict[str, Any] | None, *, dry_run: bool
) -> list[str]:
    """Normalize, default and allocate before validation, in place; the addresses held.

    Raises:
        ApiError: 422 Invalid for refused addresses or families, 500 for a full range.
    """
    name = obj["metadata"].get("name", "")
    spec = obj.setdefault("spec", {})
    old_spec = None if old is None else old.get("spec") or {}
    if old_spec is not None:
        _keep_allocated(spec, old_spec)
    _sync_cluster_ips(spec, old_spec)
    _init_ip_families(name, spec, old_spec)
    held = []
    if old_spec is None or not _needs_cluster_ip(old_spec):
        held = _allocate(name, spec, pool, dry_run=dry_run)
    else:
        _drop_for_type(spec, old_spec)
    return held


# --- validation -------------------------------------------------------------------------


def _changed_cluster_ips(spec: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """validateUpgradeDowngradeClusterIPs, for what a single-stack cluster can see."""
    if EXTERNAL_NAME in (spec.get("type"), old.get("type")) or (_is_headless(spec) and _is_headless(old)):
        return []
    plural, old_plural = spec.get("clusterIPs"), old.get("clusterIPs") or []
    new_plural = plural or []
    if len(new_plural) == len(old_plural):
        return [
            _invalid_list(f"spec.clusterIPs[{index}]", plural, "may not change once set")
            for index, address in enumerate(old_plural)
            if address != new_plural[index]
        ]
    if not new_plural:
        return [_invalid_list("spec.clusterIPs[0]", plural, "primary clusterIP can not be unset")]
    if old_plural and new_plural[0] != old_plural[0]:
        return [_invalid_list("spec.clusterIPs[0]", plural, "may not change once set")]
    return []


def service_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    """The address-related part of Service validation."""
    spec = obj.get("spec") or {}
    found = [] if old is None else _changed_cluster_ips(spec, old.get("spec") or {})
    kind = spec.get("type") or ""
    if kind not in SERVICE_TYPES:
        found.append(not_supported("spec.type", kind, SERVICE_TYPES))
    if kind in ("NodePort", "LoadBalancer") and _is_headless(spec):
        found.append(invalid("spec.clusterIPs[0]", NONE, f"may not be set to 'None' for {kind} services"))
    if kind == EXTERNAL_NAME:
        for key in ("clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if spec.get(key):
                found.append(forbidden_field(f"spec.{key}", "may not be set for ExternalName services"))
        if not (spec.get("externalName") or "").removesuffix("."):
            found.append(required("spec.externalName"))
    return found
