"""Whose `X-Forwarded-For` and `X-Forwarded-Proto` count: only those of the proxies named in
KALEIDO_TRUSTED_PROXIES (addresses or networks). Any other peer could write whatever it likes
there, so its own address and scheme stand.

The client is the nearest address in `X-Forwarded-For` that is not a trusted proxy, read from
the right (each proxy appends the address it received the request from); the scheme is the
outermost trusted proxy's `X-Forwarded-Proto` (the first value: the TLS-terminating proxy's).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 20  # X-Forwarded-For entries looked at, from the right
_SCHEMES = ("http", "https")


@attrs.frozen
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, networks: Iterable[str]) -> TrustedProxies:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def trusts(self, host: str | None) -> bool:
        if not self.networks or host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def resolve(
        self, peer: str | None, scheme: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[str | None, str]:
        """(client address, scheme) of a request that arrived from `peer` over `scheme`."""
        if not self.trusts(peer):
            return peer, scheme
        forwarded_for: list[str] = []
        forwarded_proto: list[str] = []
        for name, value in headers:
            if name == b"x-forwarded-for":
                forwarded_for += [h.strip() for h in value.decode("latin-1").split(",")]
            elif name == b"x-forwarded-proto":
                forwarded_proto += [p.strip().lower() for p in value.decode("latin-1").split(",")]
        client = peer
        for hop in reversed([h for h in forwarded_for if h][-MAX_HOPS:]):
            client = _address(hop)
            if not self.trusts(client):
                break
        if forwarded_proto and forwarded_proto[0] in _SCHEMES:
            scheme = forwarded_proto[0]
        return client, scheme


def _address(hop: str) -> str:
    """An X-Forwarded-For entry as an address: `[::1]:443` and `1.2.3.4:5678` lose the port."""
    text = hop[:64]
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        return text.partition(":")[0]
    return text
