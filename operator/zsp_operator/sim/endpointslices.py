"""EndpointSlice validation of addresses (discovery.k8s.io/v1), as kube-apiserver 1.36 does it.

`addressType` is required, one of FQDN, IPv4 and IPv6, and immutable. Each endpoint needs one
to 100 addresses; IPv4 and IPv6 ones must parse (`addresses`), be of the slice's family and
be reachable endpoints: not unspecified, loopback, link-local or link-local multicast. An
update that leaves `endpoints` as they were is not held to rules the stored ones predate.
Not checked: FQDN addresses, ports, hostnames, node names, topology and hints.
"""

from __future__ import annotations

from typing import Any

from zsp_operator.sim.addresses import (
    IPV4,
    IPV6,
    endpoint_ip_errors,
    family_of,
    legacy_ip_errors,
    strict_ip_errors,
)
from zsp_operator.sim.errors import FieldError, invalid, not_supported, required, too_many

ADDRESS_TYPES = ["FQDN", IPV4, IPV6]  # sorted, as the server lists them
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100


def _address_errors(path: str, index: int, address: str, address_type: str) -> list[FieldError]:
    at = f"{path}[{index}]"
    if address_type == IPV4:
        found = legacy_ip_errors(at, address)
    elif address_type == IPV6:
        found = strict_ip_errors(at, address)
    else:
        return []
    if found:
        return found
    if family_of(address) != address_type:
        # Reported on the list, not the entry: the server's own path.
        found.append(invalid(path, address, f"must be an {address_type} address"))
    return found + endpoint_ip_errors(at, address)


def _endpoints_errors(endpoints: list[Any], address_type: str) -> list[FieldError]:
    if len(endpoints) > MAX_ENDPOINTS:
        return [too_many("endpoints", len(endpoints), MAX_ENDPOINTS)]
    found: list[FieldError] = []
    for index, endpoint in enumerate(endpoints):
        path = f"endpoints[{index}].addresses"
        addresses = (endpoint or {}).get("addresses") or []
        if not addresses:
            found.append(required(path, "must contain at least 1 address"))
        elif len(addresses) > MAX_ADDRESSES:
            found.append(too_many(path, len(addresses), MAX_ADDRESSES))
        for position, address in enumerate(addresses):
            found += _address_errors(path, position, str(address), address_type)
    return found


def endpoint_slice_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    address_type = obj.get("addressType") or ""
    found: list[FieldError] = []
    if not address_type:
        found.append(required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        found.append(not_supported("addressType", address_type, ADDRESS_TYPES))
    endpoints = obj.get("endpoints") or []
    if old is None or endpoints != (old.get("endpoints") or []):
        found += _endpoints_errors(endpoints, address_type)
    if old is not None and address_type != old.get("addressType"):
        found.append(invalid("addressType", address_type, "field is immutable"))
    return found
