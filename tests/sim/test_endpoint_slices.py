"""EndpointSlice addresses, validated by the in-memory API server as kube-apiserver 1.36 does
(messages taken from it).

Covered:
- IPv4 and IPv6 addresses that are unspecified, loopback, link-local or link-local multicast
  are refused, each with its own message, as are malformed ones, ones of the other family
  and (IPv6) non-canonical ones; other addresses, multicast ones included, are accepted;
- every bad address of every endpoint is reported, and an endpoint needs an address;
- addressType is required, one of FQDN, IPv4 and IPv6, and immutable;
- an update is refused a loopback address, but a slice stored before the rule keeps its
  endpoints through updates that leave them alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from simkit import Raw

from zsp_operator.sim import SimServer

SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
LOOPBACK = "may not be in the loopback range (127.0.0.0/8, ::1/128)"
LINK_LOCAL = "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
LINK_LOCAL_MULTICAST = "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
NOT_AN_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def endpoint_slice(name: str, address_type: str, *addresses: list[str]) -> dict[str, Any]:
    """A slice with one endpoint per address list."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "hooks"}},
        "addressType": address_type,
        "ports": [{"name": "https", "port": 443, "protocol": "TCP"}],
        "endpoints": [{"addresses": listed} for listed in addresses],
    }


def at(index: int, value: str, detail: str, endpoint: int = 0) -> str:
    return f'endpoints[{endpoint}].addresses[{index}]: Invalid value: "{value}": {detail}'


REFUSED: list[tuple[str, list[list[str]], list[str]]] = [
    ("IPv4", [["127.0.0.1"]], [at(0, "127.0.0.1", LOOPBACK)]),
    ("IPv4", [["127.45.6.7"]], [at(0, "127.45.6.7", LOOPBACK)]),
    ("IPv4", [["0.0.0.0"]], [at(0, "0.0.0.0", "may not be unspecified (0.0.0.0)")]),
    ("IPv4", [["169.254.1.1"]], [at(0, "169.254.1.1", LINK_LOCAL)]),
    ("IPv4", [["224.0.0.251"]], [at(0, "224.0.0.251", LINK_LOCAL_MULTICAST)]),
    ("IPv4", [["notanip"]], [at(0, "notanip", NOT_AN_IP)]),
    ("IPv4", [["010.1.2.3"]], [at(0, "010.1.2.3", "must not have leading 0s")]),
    ("IPv4", [["::ffff:127.0.0.1"]], [at(0, "::ffff:127.0.0.1", "must not be an IPv4-mapped IPv6 address")]),
    (
        "IPv4",
        [["fe80::1"]],
        [
            'endpoints[0].addresses: Invalid value: "fe80::1": must be an IPv4 address',
            at(0, "fe80::1", LINK_LOCAL),
        ],
    ),
    (
        "IPv4",
        [["127.0.0.1", "10.0.0.1", "0.0.0.0"]],
        [at(0, "127.0.0.1", LOOPBACK), at(2, "0.0.0.0", "may not be unspecified (0.0.0.0)")],
    ),
    ("IPv4", [["10.0.0.1"], ["127.0.0.2"]], [at(0, "127.0.0.2", LOOPBACK, endpoint=1)]),
    ("IPv4", [[]], ["endpoints[0].addresses: Required value: must contain at least 1 address"]),
    ("IPv6", [["::1"]], [at(0, "::1", LOOPBACK)]),
    ("IPv6", [["::"]], [at(0, "::", "may not be unspecified (::)")]),
    ("IPv6", [["fe80::1"]], [at(0, "fe80::1", LINK_LOCAL)]),
    ("IPv6", [["ff02::1"]], [at(0, "ff02::1", LINK_LOCAL_MULTICAST)]),
    ("IPv6", [["ff12::1"]], [at(0, "ff12::1", LINK_LOCAL_MULTICAST)]),
    (
        "IPv6",
        [["127.0.0.1"]],
        [
            'endpoints[0].addresses: Invalid value: "127.0.0.1": must be an IPv6 address',
            at(0, "127.0.0.1", LOOPBACK),
        ],
    ),
    ("IPv6", [["2001:DB8::1"]], [at(0, "2001:DB8::1", 'must be in canonical form ("2001:db8::1")')]),
    (
        "IPv6",
        [["2001:db8:0:0:0:0:0:1"]],
        [at(0, "2001:db8:0:0:0:0:0:1", 'must be in canonical form ("2001:db8::1")')],
    ),
    ("IPv6", [["::ffff:10.0.0.1"]], [at(0, "::ffff:10.0.0.1", "must not be an IPv4-mapped IPv6 address")]),
    ("IPv6", [["zz"]], [at(0, "zz", NOT_AN_IP)]),
    (
        "IPv5",
        [["10.0.0.1"]],
        ['addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"'],
    ),
    ("", [["10.0.0.1"]], ["addressType: Required value"]),
]


@pytest.mark.parametrize(
    ("address_type", "addresses", "causes"),
    REFUSED,
    ids=[f"{c[0] or 'none'}-{'+'.join(','.join(a) for a in c[1]) or 'empty'}" for c in REFUSED],
)
async def test_a_refused_address(
    raw: Raw, address_type: str, addresses: list[list[str]], causes: list[str]
) -> None:
    status, answer = await raw.call("POST", SLICES, endpoint_slice("hooks-1", address_type, *addresses))
    shown = causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]"
    assert (status, answer["reason"]) == (422, "Invalid")
    assert answer["message"] == f'EndpointSlice.discovery.k8s.io "hooks-1" is invalid: {shown}'
    assert [f"{c['field']}: {c['message']}" for c in answer["details"]["causes"]] == causes


ACCEPTED = [
    ("IPv4", ["10.1.2.3"]),
    ("IPv4", ["224.0.1.1"]),  # multicast, but not link-local
    ("IPv6", ["2001:db8::1"]),
    ("IPv6", ["ff05::1"]),
    ("FQDN", ["127.0.0.1"]),  # no IP rules for names
]


@pytest.mark.parametrize(("address_type", "addresses"), ACCEPTED, ids=[f"{t}-{a[0]}" for t, a in ACCEPTED])
async def test_an_accepted_address(raw: Raw, address_type: str, addresses: list[str]) -> None:
    created = await raw.ok("POST", SLICES, endpoint_slice("hooks-1", address_type, addresses))
    assert [endpoint["addresses"] for endpoint in created["endpoints"]] == [addresses]


async def test_an_update_is_refused_a_loopback_address_and_a_new_address_type(raw: Raw) -> None:
    created = await raw.ok("POST", SLICES, endpoint_slice("hooks-1", "IPv4", ["10.1.2.3"]))
    to_loopback = {**created, "endpoints": [{"addresses": ["127.0.0.1"]}]}
    status, answer = await raw.call("PUT", f"{SLICES}/hooks-1", to_loopback)
    assert (status, answer["message"]) == (
        422,
        f'EndpointSlice.discovery.k8s.io "hooks-1" is invalid: {at(0, "127.0.0.1", LOOPBACK)}',
    )
    status, answer = await raw.call("PUT", f"{SLICES}/hooks-1", {**created, "addressType": "IPv6"})
    assert (status, answer["message"]) == (
        422,
        'EndpointSlice.discovery.k8s.io "hooks-1" is invalid: addressType: Invalid value: "IPv6": field is immutable',
    )


async def test_endpoints_stored_before_the_rule_survive_updates_that_leave_them_alone(
    raw: Raw, sim: SimServer
) -> None:
    created = await raw.ok("POST", SLICES, endpoint_slice("hooks-1", "IPv4", ["10.1.2.3"]))
    old = {**created, "endpoints": [{"addresses": ["127.0.0.1"]}]}
    sim.store.put(("discovery.k8s.io", "endpointslices"), old)  # as an older server let it in
    stored = await raw.ok("GET", f"{SLICES}/hooks-1")
    relabelled = {**stored, "metadata": {**stored["metadata"], "labels": {"relabelled": "yes"}}}
    updated = await raw.ok("PUT", f"{SLICES}/hooks-1", relabelled)
    assert (updated["metadata"]["labels"], updated["endpoints"][0]["addresses"]) == (
        {"relabelled": "yes"},
        ["127.0.0.1"],
    )
