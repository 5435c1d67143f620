"""Which addresses ICE offers: WCS's ``ip`` setting, or every address of the machine.

aioice gathers host candidates from ``get_host_addresses`` and leaves out
127.0.0.1; with ``ip`` set, exactly those addresses are used (loopback too).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import aioice.ice

_machine_addresses = aioice.ice.get_host_addresses


def announce(addresses: Sequence[str]) -> None:
    """Gather candidates on ``addresses`` only (empty: all of the machine's)."""
    if not addresses:
        aioice.ice.get_host_addresses = _machine_addresses
        return
    chosen = list(addresses)

    def configured(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [address for address in chosen
                if (use_ipv4 and ipaddress.ip_address(address).version == 4)
                or (use_ipv6 and ipaddress.ip_address(address).version == 6)]

    aioice.ice.get_host_addresses = configured
