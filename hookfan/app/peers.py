"""Which peers are trusted proxies (``--trusted-proxies``). Pure: no I/O."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

MAX_REMEMBERED = 65536
"""Peer addresses whose answer is kept; past it each new one is worked out again."""


class TrustedPeers:
    """Whether a peer address lies in one of the given networks. The answer for an address is
    remembered, so a request costs one dict lookup. An address that does not parse is not
    trusted; an IPv4-mapped IPv6 address (``::ffff:10.1.2.3``) counts as its IPv4 address."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
        self._known: dict[str, bool] = {}

    def __call__(self, addr: str) -> bool:
        known = self._known.get(addr)
        if known is None:
            known = self._lookup(addr)
            if len(self._known) < MAX_REMEMBERED:
                self._known[addr] = known
        return known

    def _lookup(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)
