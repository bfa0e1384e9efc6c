"""Service ClusterIPs, allocated and checked by the in-memory API server as kube-apiserver 1.36
does with `--service-cluster-ip-range=127.0.96.0/20` (the real tier's; messages taken from it).

Covered:
- a Service without clusterIP gets a free one from the range, above its first 256 addresses
  (kept for requested ones) while any is free there, then below; `clusterIPs` mirrors it and
  the IP family fields are defaulted; a full range is an internal error;
- a requested address in the range is kept; headless (`None`) and ExternalName Services get
  none; a requested address that is taken (also the range's first, the `kubernetes`
  Service's), outside the range, malformed, IPv6, or set on an ExternalName is refused with
  the real message;
- dry runs hold nothing: they show the range's network address, and only check a requested
  address against the range;
- a refused or failed create frees what it held; a delete, or turning the Service into an
  ExternalName, frees its address; turning an ExternalName into a ClusterIP Service
  allocates one;
- the address is immutable on update and patch, and an update that leaves it out keeps it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from simkit import Raw

from zsp_operator.sim import SimServer

SERVICES = "/api/v1/namespaces/default/services"
MERGE = "application/merge-patch+json"
RANGE = ipaddress.ip_network("127.0.96.0/20")
# The first 256 addresses after the network's are kept for requests (KEP-3070).
DYNAMIC = (ipaddress.ip_address("127.0.97.1"), ipaddress.ip_address("127.0.111.254"))


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "https", "port": 443}], **spec},
    }


def external(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "ExternalName", "externalName": "example.com", **spec},
    }


async def outcome(raw: Raw, method: str, path: str, body: Any, **options: str) -> tuple[int, str, str]:
    status, answer = await raw.call(method, path, body, **options)
    return status, answer.get("reason", ""), answer.get("message", "")


async def refusal(raw: Raw, body: dict[str, Any], **params: str) -> tuple[int, str, str]:
    return await outcome(raw, "POST", SERVICES, body, **params)


def invalid(name: str, cause: str) -> tuple[int, str, str]:
    return 422, "Invalid", f'Service "{name}" is invalid: {cause}'


@pytest.fixture
async def small_range() -> AsyncIterator[Raw]:
    """A /27: .1 is the `kubernetes` Service's, .2-.16 kept for requests, .17-.30 dynamic."""
    async with (
        SimServer(service_cidr="127.0.96.0/27") as server,
        aiohttp.ClientSession() as session,
    ):
        yield Raw(server, session)


async def test_addresses_are_allocated_once_each_from_the_dynamic_part_of_the_range(raw: Raw) -> None:
    created = [(await raw.ok("POST", SERVICES, service(f"s{i}")))["spec"] for i in range(40)]
    addresses = [spec["clusterIP"] for spec in created]
    assert len(set(addresses)) == len(addresses)
    assert all(DYNAMIC[0] <= ipaddress.ip_address(address) <= DYNAMIC[1] for address in addresses)
    assert [spec["clusterIPs"] for spec in created] == [[address] for address in addresses]
    first = created[0]
    assert (first["type"], first["ipFamilies"], first["ipFamilyPolicy"]) == (
        "ClusterIP",
        ["IPv4"],
        "SingleStack",
    )


async def test_the_low_part_is_used_once_the_dynamic_part_is_full_and_then_the_range_is_full(
    small_range: Raw,
) -> None:
    raw = small_range
    dynamic = {(await raw.ok("POST", SERVICES, service(f"d{i}")))["spec"]["clusterIP"] for i in range(14)}
    assert dynamic == {f"127.0.96.{host}" for host in range(17, 31)}
    low = {(await raw.ok("POST", SERVICES, service(f"l{i}")))["spec"]["clusterIP"] for i in range(15)}
    assert low == {f"127.0.96.{host}" for host in range(2, 17)}
    assert await refusal(raw, service("one-too-many")) == (
        500,
        "InternalError",
        'Internal error occurred: failed to allocate a serviceIP for Service "one-too-many": range is full',
    )
    dry = await raw.ok("POST", SERVICES, service("dry"), dryRun="All")  # a dry run looks for nothing
    assert dry["spec"]["clusterIP"] == "127.0.96.0"
    freed = (await raw.ok("GET", f"{SERVICES}/d3"))["spec"]["clusterIP"]
    await raw.ok("DELETE", f"{SERVICES}/d3")
    assert (await raw.ok("POST", SERVICES, service("after-delete")))["spec"]["clusterIP"] == freed


KEPT: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "requested in the range",
        service("a", clusterIP="127.0.96.10"),
        {"clusterIP": "127.0.96.10", "clusterIPs": ["127.0.96.10"], "ipFamilies": ["IPv4"]},
    ),
    (
        "headless without selector",
        service("a", clusterIP="None"),
        {
            "clusterIP": "None",
            "clusterIPs": ["None"],
            "ipFamilies": ["IPv4", "IPv6"],
            "ipFamilyPolicy": "RequireDualStack",
        },
    ),
    (
        "ExternalName",
        external("a"),
        {"clusterIP": None, "clusterIPs": None, "ipFamilies": None, "ipFamilyPolicy": None},
    ),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in KEPT], ids=[c[0] for c in KEPT])
async def test_what_a_service_gets(raw: Raw, body: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = (await raw.ok("POST", SERVICES, body))["spec"]
    assert {key: spec.get(key) for key in expected} == expected


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "taken",
        service("b", clusterIP="127.0.96.10"),
        'spec.clusterIPs: Invalid value: ["127.0.96.10"]: failed to allocate IP 127.0.96.10: '
        "provided IP is already allocated",
    ),
    (
        "the kubernetes Service's",
        service("b", clusterIP="127.0.96.1"),
        'spec.clusterIPs: Invalid value: ["127.0.96.1"]: failed to allocate IP 127.0.96.1: '
        "provided IP is already allocated",
    ),
    (
        "outside the range",
        service("b", clusterIP="10.0.0.1"),
        'spec.clusterIPs: Invalid value: ["10.0.0.1"]: failed to allocate IP 10.0.0.1: '
        "the provided network does not match the current range",
    ),
    (
        "the network address",
        service("b", clusterIP="127.0.96.0"),
        'spec.clusterIPs: Invalid value: ["127.0.96.0"]: failed to allocate IP 127.0.96.0: '
        "the provided network does not match the current range",
    ),
    (
        "the broadcast address",
        service("b", clusterIP="127.0.111.255"),
        'spec.clusterIPs: Invalid value: ["127.0.111.255"]: failed to allocate IP 127.0.111.255: '
        "the provided network does not match the current range",
    ),
    (
        "not an address",
        service("b", clusterIP="notanip"),
        'spec.clusterIPs[0]: Invalid value: "notanip": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
    ),
    (
        "leading zeros",
        service("b", clusterIP="127.0.096.82"),
        'spec.clusterIPs[0]: Invalid value: "127.0.096.82": must not have leading 0s',
    ),
    (
        "clusterIPs without clusterIP",
        service("b", clusterIPs=["127.0.96.11"]),
        'spec.clusterIPs: Invalid value: ["127.0.96.11"]: must be empty when `clusterIP` is not specified',
    ),
    (
        "clusterIPs not starting with clusterIP",
        service("b", clusterIP="127.0.96.12", clusterIPs=["127.0.96.13"]),
        'spec.clusterIPs: Invalid value: ["127.0.96.13"]: first value must match `clusterIP`',
    ),
    (
        "two of one family",
        service("b", clusterIP="127.0.96.80", clusterIPs=["127.0.96.80", "127.0.96.81"]),
        'spec.clusterIPs: Invalid value: ["127.0.96.80","127.0.96.81"]: '
        "may specify no more than one IP for each IP family",
    ),
    (
        "None and another",
        service("b", clusterIP="None", clusterIPs=["None", "127.0.96.81"]),
        'spec.clusterIPs: Invalid value: ["None","127.0.96.81"]: \'None\' must be the first and only value',
    ),
    (
        "IPv6",
        service("b", clusterIP="fd00::1"),
        'spec.clusterIPs[0]: Invalid value: ["fd00::1"]: IPv6 is not configured on this cluster',
    ),
    (
        "IPv6 family",
        service("b", ipFamilies=["IPv6"]),
        'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster',
    ),
    (
        "an address on an ExternalName",
        external("b", clusterIP="127.0.96.20"),
        "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
    ),
]


@pytest.mark.parametrize(("body", "cause"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
async def test_a_refused_address(raw: Raw, body: dict[str, Any], cause: str) -> None:
    await raw.ok("POST", SERVICES, service("a", clusterIP="127.0.96.10"))
    assert await refusal(raw, body) == invalid("b", cause)
    assert (await raw.call("GET", f"{SERVICES}/b"))[0] == 404


async def test_dry_runs_hold_nothing_and_check_only_the_range(raw: Raw) -> None:
    dry = await raw.ok("POST", SERVICES, service("a"), dryRun="All")
    assert (dry["spec"]["clusterIP"], dry["spec"]["clusterIPs"]) == ("127.0.96.0", ["127.0.96.0"])
    await raw.ok("POST", SERVICES, service("a", clusterIP="127.0.96.10"), dryRun="All")
    await raw.ok("POST", SERVICES, service("b", clusterIP="127.0.96.10"))  # the dry run held nothing
    taken = await raw.ok("POST", SERVICES, service("c", clusterIP="127.0.96.10"), dryRun="All")
    assert taken["spec"]["clusterIP"] == "127.0.96.10"  # a dry run does not look whether it is free
    assert await refusal(raw, service("d", clusterIP="10.0.0.1"), dryRun="All") == invalid(
        "d",
        'spec.clusterIPs: Invalid value: ["10.0.0.1"]: failed to allocate IP 10.0.0.1: the provided IP '
        "(10.0.0.1) is not in the valid range. The range of valid IPs is 127.0.96.0/20",
    )


async def test_a_failed_create_frees_what_it_held(raw: Raw) -> None:
    assert await refusal(raw, service("a", type="Cluster", clusterIP="127.0.96.50")) == invalid(
        "a",
        'spec.type: Unsupported value: "Cluster": supported values: '
        '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
    )
    await raw.ok("POST", SERVICES, service("a", clusterIP="127.0.96.51"))
    assert await refusal(raw, service("a", clusterIP="127.0.96.50")) == (
        409,
        "AlreadyExists",
        'services "a" already exists',
    )
    created = await raw.ok("POST", SERVICES, service("b", clusterIP="127.0.96.50"))
    assert created["spec"]["clusterIP"] == "127.0.96.50"


async def test_a_deleted_service_frees_its_address(raw: Raw) -> None:
    await raw.ok("POST", SERVICES, service("a", clusterIP="127.0.96.10"))
    await raw.ok("DELETE", f"{SERVICES}/a")
    assert (await raw.ok("POST", SERVICES, service("b", clusterIP="127.0.96.10")))["spec"]["clusterIP"] == (
        "127.0.96.10"
    )


async def test_the_address_is_immutable_and_kept_when_left_out(raw: Raw) -> None:
    created = await raw.ok("POST", SERVICES, service("a"))
    address = created["spec"]["clusterIP"]
    may_not_change = 'spec.clusterIPs[0]: Invalid value: ["{0}"]: may not change once set'

    both = {**created, "spec": {**created["spec"], "clusterIP": "127.0.96.30", "clusterIPs": ["127.0.96.30"]}}
    single = {**created, "spec": {**created["spec"], "clusterIP": "127.0.96.30"}}
    headless = {**created, "spec": {**created["spec"], "clusterIP": "None", "clusterIPs": ["None"]}}
    for body, shown in ((both, "127.0.96.30"), (single, "127.0.96.30"), (headless, "None")):
        assert await outcome(raw, "PUT", f"{SERVICES}/a", body) == invalid("a", may_not_change.format(shown))
    patch = {"spec": {"clusterIP": "127.0.96.30"}}
    assert await outcome(raw, "PATCH", f"{SERVICES}/a", patch, content_type=MERGE) == invalid(
        "a", may_not_change.format("127.0.96.30")
    )

    left_out = {
        key: value for key, value in created["spec"].items() if key not in ("clusterIP", "clusterIPs")
    }
    replaced = await raw.ok("PUT", f"{SERVICES}/a", {**created, "spec": left_out})
    assert (replaced["spec"]["clusterIP"], replaced["spec"]["clusterIPs"]) == (address, [address])


async def test_changing_to_and_from_external_name_allocates_and_frees(raw: Raw) -> None:
    named = await raw.ok("POST", SERVICES, external("a"))
    as_cluster_ip = {**named, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    dry = await raw.ok("PUT", f"{SERVICES}/a", as_cluster_ip, dryRun="All")
    assert dry["spec"]["clusterIP"] == "127.0.96.0"
    converted = await raw.ok("PUT", f"{SERVICES}/a", as_cluster_ip)
    address = converted["spec"]["clusterIP"]
    assert ipaddress.ip_address(address) in RANGE
    assert converted["spec"]["clusterIPs"] == [address]

    back = {**converted, "spec": {**converted["spec"], "type": "ExternalName", "externalName": "example.com"}}
    renamed = await raw.ok("PUT", f"{SERVICES}/a", back)
    assert [
        renamed["spec"].get(key) for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy")
    ] == [None] * 4
    assert (await raw.ok("POST", SERVICES, service("b", clusterIP=address)))["spec"]["clusterIP"] == address
