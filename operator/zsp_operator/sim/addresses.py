"""IP addresses as Kubernetes validation reads them, with the real server's messages.

Kubernetes parses addresses "sloppily" (a fork of Go 1.16's net.ParseIP: IPv4 octets may
have leading zeros) and then, with the StrictIPCIDRValidation gate on as in 1.36, refuses
what a strict parser would not take: leading zeros and IPv4-mapped IPv6 addresses. Fields
that predate strict parsing ("legacy" ones: Service clusterIPs, EndpointSlice IPv4
addresses) stop there; newer ones (EndpointSlice IPv6 addresses) also want canonical form.
Endpoint addresses must moreover be routable from the cluster: not unspecified, loopback,
link-local or link-local multicast.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection

from zsp_operator.sim.errors import FieldError, invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV4 = "IPv4"
IPV6 = "IPv6"
_SLOPPY_IPV4 = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)")
NOT_AN_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _sloppy_ipv4(text: str) -> ipaddress.IPv4Address | None:
    match = _SLOPPY_IPV4.fullmatch(text)
    if match is None or any(int(octet) > 255 for octet in match.groups()):
        return None
    return ipaddress.IPv4Address(".".join(str(int(octet)) for octet in match.groups()))


def parse_sloppy(text: str) -> IPAddress | None:
    """The address Kubernetes' ParseIPSloppy reads in `text`, or None."""
    if ":" not in text:
        return _sloppy_ipv4(text)
    if "%" in text:
        return None  # zones are not IP addresses here
    head, _, tail = text.rpartition(":")
    if "." in tail:  # an embedded IPv4 tail, whose octets may have leading zeros too
        embedded = _sloppy_ipv4(tail)
        if embedded is None:
            return None
        text = f"{head}:{embedded}"
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def _as_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """Go's To4: IPv4 addresses and IPv4-mapped IPv6 ones count as IPv4."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    return address.ipv4_mapped


def family_of(text: str) -> str | None:
    """IPv4 or IPv6 (Go's IPFamilyOf), None when `text` is no address."""
    address = parse_sloppy(text)
    if address is None:
        return None
    return IPV4 if _as_ipv4(address) is not None else IPV6


def _strict_errors(path: str, text: str) -> list[FieldError]:
    """What strict parsing adds to a sloppy parse that succeeded."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return [invalid(path, text, "must not have leading 0s")]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return [invalid(path, text, "must not be an IPv4-mapped IPv6 address")]
    return []


def legacy_ip_errors(path: str, text: str, valid_before: Collection[str] = ()) -> list[FieldError]:
    """IsValidIPForLegacyField: a value the old object already held is let through."""
    if text in valid_before:
        return []
    if parse_sloppy(text) is None:
        return [invalid(path, text, NOT_AN_IP)]
    return _strict_errors(path, text)


def strict_ip_errors(path: str, text: str) -> list[FieldError]:
    """IsValidIP: strictly parsed and in canonical form."""
    address = parse_sloppy(text)
    if address is None:
        return [invalid(path, text, NOT_AN_IP)]
    found = _strict_errors(path, text)
    if not found and str(address) != text:
        found.append(invalid(path, text, f'must be in canonical form ("{address}")'))
    return found


def endpoint_ip_errors(path: str, text: str) -> list[FieldError]:
    """ValidateEndpointIP: an endpoint must be an address other hosts can reach."""
    parsed = parse_sloppy(text)
    if parsed is None:
        return [invalid(path, text, "must be a valid IP address")]
    address: IPAddress = _as_ipv4(parsed) or parsed
    packed = address.packed
    if isinstance(address, ipaddress.IPv4Address):
        link_local = packed[:2] == b"\xa9\xfe"  # 169.254.0.0/16
        link_local_multicast = packed[:3] == b"\xe0\x00\x00"  # 224.0.0.0/24
    else:
        link_local = packed[0] == 0xFE and packed[1] & 0xC0 == 0x80  # fe80::/10
        link_local_multicast = packed[0] == 0xFF and packed[1] & 0x0F == 0x02  # ff02::/16, any flags
    found = []
    if address.is_unspecified:
        found.append(invalid(path, text, f"may not be unspecified ({text})"))
    if address.is_loopback:
        found.append(invalid(path, text, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if link_local:
        found.append(invalid(path, text, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if link_local_multicast:
        found.append(
            invalid(path, text, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        )
    return found
