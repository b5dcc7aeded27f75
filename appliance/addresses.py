"""Which network addresses the appliance may dial on a remote party's say-so (no SSRF).

A recipient domain's MX and address records, an MTA-STS policy host and (with alerts) a webhook
target are all named by someone outside: they could point the appliance at loopback, the LAN, a
cloud metadata service or the appliance itself. Only globally routable unicast addresses that
are not the appliance's own are dialled, unless the operator's deliver_to_private setting says
otherwise (tests and LAN setups). Written here because ipaddress's is_global alone still lets
through shared (CGNAT) space, multicast and IPv6 forms of non-public IPv4 addresses.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path

from appliance.config import Settings

# Beyond what ipaddress calls non-global: shared (CGNAT) space, IETF protocol assignments,
# multicast, deprecated site-local IPv6, local-use NAT64, the IPv6 discard prefix.
_NOT_GLOBAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "fec0::/10", "ff00::/8", "64:ff9b:1::/48", "100::/64"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(ip: str) -> bool:
    """A globally routable unicast address: not loopback, private, link-local, unspecified,
    multicast, shared (CGNAT), documentation or reserved, nor an IPv6 form of such an IPv4 one."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6:
        embedded = address.ipv4_mapped or address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        if embedded is not None and not is_public(str(embedded)):
            return False
    return address.is_global and not any(address in net for net in _NOT_GLOBAL if net.version == address.version)


_own: tuple[float, frozenset[str]] = (0.0, frozenset())
_own_lock = threading.Lock()


def own_addresses(settings: Settings) -> frozenset[str]:
    """The appliance's addresses: the public ones configured and those of its interfaces (read
    again each minute: a DHCP lease may change them)."""
    global _own
    with _own_lock:
        if time.monotonic() - _own[0] > 60:
            _own = (time.monotonic(), frozenset(_interface_addresses()))
        found = set(_own[1])
    for value in (settings.public_ipv4, settings.public_ipv6, settings.bind):
        try:
            found.add(str(ipaddress.ip_address(value)))
        except ValueError:
            pass
    return frozenset(found)


def _interface_addresses() -> set[str]:
    """Local addresses from Linux's /proc (none elsewhere: then only the configured ones count)."""
    found: set[str] = set()
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            found.add(str(ipaddress.IPv6Address(int(line.split()[0], 16))))
        previous = ""
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            if "/32 host LOCAL" in line and previous.strip().startswith("|--"):
                found.add(str(ipaddress.IPv4Address(previous.strip()[3:].strip())))
            previous = line
    except (OSError, ValueError, IndexError):
        pass
    return found


def permitted(settings: Settings, ip: str) -> bool:
    """May the worker dial ip? Public and not the appliance's own, unless deliver_to_private."""
    if settings.deliver_to_private:
        return True
    return is_public(ip) and str(ipaddress.ip_address(ip.split("%", 1)[0])) not in own_addresses(settings)
