"""Which addresses ICE offers: WCS's ``ip`` setting, or every address of the machine.

aioice gathers host candidates from ``get_host_addresses`` and leaves out
127.0.0.1; with ``ip`` set, exactly those addresses are used (loopback too).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import aioice.ice

_machine_addresses = aioice.ice.get_host_addresses


#: Why a play cannot start when no address can be offered to browsers.
NO_ADDRESS = (
    "No ICE candidate to offer: this server has no address browsers can reach "
    "(set ip= in flashphoner.properties)"
)


def announce(addresses: Sequence[str]) -> bool:
    """Gather candidates on ``addresses`` only (empty: all of the machine's);
    False when that leaves nothing to offer (a machine with loopback only)."""
    if not addresses:
        aioice.ice.get_host_addresses = _machine_addresses
        return bool(_machine_addresses(use_ipv4=True, use_ipv6=True))
    chosen = list(addresses)

    def configured(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            address
            for address in chosen
            if (use_ipv4 and ipaddress.ip_address(address).version == 4)
            or (use_ipv6 and ipaddress.ip_address(address).version == 6)
        ]

    aioice.ice.get_host_addresses = configured
    return True


def offered_addresses() -> list[str]:
    """The addresses candidates are gathered on now (what :func:`announce` set)."""
    return list(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True))


def has_candidates(sdp: str) -> bool:
    """Whether an answer offers the browser anywhere to send to."""
    return "a=candidate:" in sdp
