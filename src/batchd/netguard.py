"""Where batchd may send requests of its own (webhooks, HTTP tasks).

A URL given by a client must not reach the server's own network: its host is
resolved and every address it resolves to is checked; loopback, private
(RFC 1918, unique-local, carrier-grade NAT), link-local, multicast, unspecified and
reserved addresses are refused unless ``BATCHD_OUTBOUND_ALLOW`` lets them through
(``loopback``, ``private``, ``link_local``, or CIDR networks). The request then goes
to the address that was checked (the URL's host stays in ``Host`` and TLS SNI), so a
second DNS answer cannot point it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from batchd.domain import errors

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
KINDS = ("loopback", "private", "link_local")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT


class UnsafeUrl(errors.InvalidInput):
    code = "unsafe_url"


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Which address kinds and networks outbound requests may reach beyond the public ones."""

    kinds: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> OutboundPolicy:
        """``"loopback, 10.2.0.0/16"`` → a policy; raises ValueError on a bad entry."""
        kinds: set[str] = set()
        networks: list[Network] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if part in KINDS:
                kinds.add(part)
            else:
                try:
                    networks.append(ipaddress.ip_network(part, strict=False))
                except ValueError:
                    raise ValueError(
                        f"{part!r} is neither one of {', '.join(KINDS)} nor a network"
                    ) from None
        return cls(kinds=frozenset(kinds), networks=tuple(networks))

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be reached, or None when it may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in n for n in self.networks):
            return None
        kind = _kind(address)
        if kind is None or kind in self.kinds:
            return None
        return f"a {kind.replace('_', '-')} address ({address})"


def _kind(address: Address) -> str | None:
    # Unspecified (0.0.0.0 reaches this host) and multicast first: they are never allowed
    # as "private" or "global".
    if address.is_unspecified or address.is_multicast:
        return "reserved"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED):
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the address a request to it must go to."""

    url: str
    host: str
    address: Address

    def request_url(self) -> httpx.URL:
        return httpx.URL(self.url).copy_with(host=str(self.address))

    def extensions(self) -> dict[str, str]:
        return {"sni_hostname": self.host}

    def headers(self) -> dict[str, str]:
        parsed = httpx.URL(self.url)
        default = {"http": 80, "https": 443}[parsed.scheme]
        port = parsed.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {"Host": host if port in (None, default) else f"{host}:{port}"}


def check_syntax(url: str) -> tuple[str, str, int]:
    """The host, scheme and port of an absolute ``http(s)`` URL; raises UnsafeUrl."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("the URL must be absolute, http:// or https://")
    if parts.username or parts.password:
        raise UnsafeUrl("the URL must not carry credentials")
    return parts.hostname, parts.scheme, port or (443 if parts.scheme == "https" else 80)


async def resolve(url: str, policy: OutboundPolicy) -> Target:
    """Check ``url`` and every address its host resolves to.

    Raises:
        UnsafeUrl: not an http(s) URL, unresolvable, or an address the policy refuses.
    """
    host, _, port = check_syntax(url)
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise UnsafeUrl(f"cannot resolve {host!r}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise UnsafeUrl(f"{host!r} resolves to no address")
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise UnsafeUrl(
                f"refused: {host} resolves to {reason}; see BATCHD_OUTBOUND_ALLOW"
            )
    return Target(url=url, host=host, address=addresses[0])


async def refusals(urls: list[str], policy: OutboundPolicy) -> dict[str, str]:
    """The URLs of ``urls`` that may not be called, each with why (hosts resolved once)."""
    refused: dict[str, str] = {}
    by_host: dict[tuple[str, int], str | None] = {}
    for url in dict.fromkeys(urls):
        try:
            host, scheme, port = check_syntax(url)
        except UnsafeUrl as exc:
            refused[url] = exc.message
            continue
        key = (host, port)
        if key not in by_host:
            try:
                await resolve(f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}/",
                              policy)
                by_host[key] = None
            except UnsafeUrl as exc:
                by_host[key] = exc.message
        if by_host[key] is not None:
            refused[url] = by_host[key]  # type: ignore[assignment]
    return refused
