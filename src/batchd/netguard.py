"""Where batchd may send requests of its own (webhooks, HTTP tasks, the LLM endpoint).

A URL must not reach the server's own network. Its host is read the way a browser or
``getaddrinfo`` would read it (IDNA and case folded, a trailing dot dropped, IPv4 in
decimal, octal, hex or short form such as ``2130706433``, ``0177.0.0.1``, ``0x7f.1``,
``127.1``, IPv6 in brackets with or without a zone id), then a name is resolved and
every address it resolves to is checked. IPv6 addresses that carry an IPv4 address
(IPv4-mapped, -compatible and -translated, NAT64, 6to4, Teredo) are judged by the
address they carry as well as by their own range.

Refused unless ``BATCHD_OUTBOUND_ALLOW`` lets them through: loopback, private (RFC 1918,
carrier-grade NAT, unique-local, deprecated site-local), link-local (``loopback``,
``private`` and ``link_local`` name these kinds), and, allowed only by a CIDR entry,
unspecified, multicast, broadcast, documentation, benchmarking, tunnelled (6to4,
Teredo) and every other reserved or non-global address. The request then goes to the
address that was checked (the URL's host stays in ``Host`` and TLS SNI), so a second
DNS answer cannot point it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit

import httpx

from batchd.domain import errors

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
KINDS = ("loopback", "private", "link_local")
"""The address kinds ``BATCHD_OUTBOUND_ALLOW`` may name; anything else needs a CIDR."""


def _nets(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Named explicitly rather than left to ``is_private``/``is_global``, whose lists differ
# between Python releases (3.11 calls fec0::/10 and 64:ff9b:1::/48 global).
_PRIVATE = _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                 "fc00::/7", "fec0::/10")
_DOCUMENTATION = _nets("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                       "2001:db8::/32", "3fff::/20")
_BENCHMARKING = _nets("198.18.0.0/15", "2001:2::/48")
_TUNNELLED = _nets("2002::/16", "2001::/32")  # 6to4, Teredo: relayed to an IPv4 host
_NOT_GLOBAL = _nets("0.0.0.0/8", "192.0.0.0/24", "240.0.0.0/4", "::/8", "100::/64",
                    "64:ff9b:1::/48", "2001::/23", "5f00::/16")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
# Forms that are only another spelling of the IPv4 address they carry.
_ALIASES = ("IPv4-mapped", "NAT64")
_LABELS = {"link_local": "link-local"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)\Z")


class UnsafeUrl(errors.InvalidInput):
    code = "unsafe_url"


class Unresolvable(UnsafeUrl):
    """The host name did not resolve (now): refused when given, worth a retry when called."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries and the name of the form, or None."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address in _TRANSLATED:
        return "IPv4-translated", low32
    if address in _NAT64:
        return "NAT64", low32
    if address in _LOCAL_NAT64:
        return "local-use NAT64", low32  # the /96 layout, the one in common use
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]  # the client, de-obfuscated
    if address in _COMPATIBLE and int(address) > 1:  # not :: or ::1
        return "IPv4-compatible", low32
    return None


def kind_of(address: Address) -> str | None:
    """The kind of a non-public address (``loopback``, ``private``, …), None if public."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address == _BROADCAST:
        return "broadcast"
    for kind, networks in (("private", _PRIVATE), ("documentation", _DOCUMENTATION),
                           ("benchmarking", _BENCHMARKING), ("tunnelled", _TUNNELLED)):
        if any(address in n for n in networks):
            return kind
    if (address.is_reserved or address.is_private or not address.is_global
            or any(address in n for n in _NOT_GLOBAL)):
        return "reserved"
    return None


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Which address kinds and networks outbound requests may reach beyond the public ones."""

    kinds: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> OutboundPolicy:
        """``"loopback, 10.2.0.0/16, fd00:1::/64"`` → a policy; ValueError on a bad entry."""
        kinds: set[str] = set()
        networks: list[Network] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name = part.lower().replace("-", "_")
            if name in KINDS:
                kinds.add(name)
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(
                    f"{part!r} is neither one of {', '.join(KINDS)} nor a network (CIDR)"
                ) from None
        return cls(kinds=frozenset(kinds), networks=tuple(networks))

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be reached, or None when it may."""
        if isinstance(address, ipaddress.IPv6Address):
            address = ipaddress.IPv6Address(address.packed)  # without a zone id
            carried = embedded_ipv4(address)
            if carried is not None:
                form, inner = carried
                reason = self._judge(inner)
                if reason is not None:
                    return f"{reason} carried in the {form} address {address}"
                if form in _ALIASES:
                    return None
        return self._judge(address)

    def _judge(self, address: Address) -> str | None:
        if any(address in n for n in self.networks):
            return None
        kind = kind_of(address)
        if kind is None or kind in self.kinds:
            return None
        label = _LABELS.get(kind, kind)
        return f"{'an' if label[0] in 'aeiou' else 'a'} {label} address ({address})"


@dataclass(frozen=True, slots=True)
class Host:
    """A URL's parts as a connection would read them; ``address`` for a literal host."""

    scheme: str
    name: str
    port: int
    address: Address | None


def _ipv4(name: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of a host written as the URL standard and ``inet_aton`` read it
    (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``), None for a name."""
    parts = name.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not _NUMBER.match(parts[-1]):
        return None
    if len(parts) > 4 or not all(_NUMBER.match(p) for p in parts):
        raise UnsafeUrl(f"{name!r} is not a valid IPv4 address")
    numbers = []
    for p in parts:
        if p[:2].lower() == "0x":
            numbers.append(int(p[2:] or "0", 16))
        elif len(p) > 1 and p[0] == "0":
            try:
                numbers.append(int(p, 8))
            except ValueError:
                raise UnsafeUrl(f"{name!r} is not a valid IPv4 address") from None
        else:
            numbers.append(int(p))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise UnsafeUrl(f"{name!r} is not a valid IPv4 address")
    value = last + sum(n << (8 * (3 - i)) for i, n in enumerate(head))
    return ipaddress.IPv4Address(value)


def _host_name(raw: str) -> str:
    if raw.isascii():
        return raw.lower()
    try:  # IDNA 2003 with nameprep, as getaddrinfo reads a name: ｌｏｃａｌｈｏｓｔ → localhost
        return raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeUrl(f"{raw!r} is not a valid host name") from None


def _split(url: str) -> tuple[SplitResult, int]:
    """The URL's parts and port, checked for what no safe URL has."""
    if _BAD_CHARS.search(url):
        raise UnsafeUrl("the URL must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("the URL must be absolute, http:// or https://")
    if "@" in parts.netloc:
        raise UnsafeUrl("the URL must not carry credentials")
    return parts, port or _DEFAULT_PORTS[parts.scheme]


def _ipv6_host(scheme: str, raw: str, port: int) -> Host:
    text = unquote(raw).split("%", 1)[0]  # a zone id says which interface, not where
    try:
        return Host(scheme, text, port, ipaddress.IPv6Address(text))
    except ValueError:
        raise UnsafeUrl(f"{raw!r} is not a valid IPv6 address") from None


def parse(url: str) -> Host:
    """The scheme, host and port of an absolute ``http(s)`` URL; raises UnsafeUrl."""
    parts, port = _split(url)
    raw = parts.hostname or ""
    if parts.netloc.startswith("["):
        return _ipv6_host(parts.scheme, raw, port)
    name = _host_name(raw)
    if "%" in name or ":" in name:
        raise UnsafeUrl(f"{raw!r} is not a valid host name")
    address = _ipv4(name)
    if address is not None:
        return Host(parts.scheme, str(address), port, address)
    name = name[:-1] if name.endswith(".") else name
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return Host(parts.scheme, name, port, _LOOPBACK)
    try:  # what the HTTP client will read must be what was checked
        if httpx.URL(url).host.rstrip(".") != name:
            raise UnsafeUrl(f"the URL's host {raw!r} is ambiguous")
    except httpx.InvalidURL as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    return Host(parts.scheme, name, port, None)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the address a request to it must go to."""

    url: str
    host: str
    address: Address
    scheme: str = "https"
    port: int = 443

    def request_url(self) -> httpx.URL:
        # Built from the parts that were checked: the HTTP client never reads the host.
        parts = urlsplit(self.url)
        address = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        query = f"?{parts.query}" if parts.query else ""
        port = "" if self.port == _DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return httpx.URL(f"{self.scheme}://{address}{port}{parts.path or '/'}{query}")

    def extensions(self) -> dict[str, str]:
        return {"sni_hostname": self.host}

    def headers(self) -> dict[str, str]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = self.port == _DEFAULT_PORTS[self.scheme]
        return {"Host": host if default else f"{host}:{self.port}"}


async def _addresses(host: Host) -> list[Address]:
    if host.address is not None:
        return [host.address]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host.name, host.port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise Unresolvable(f"cannot resolve {host.name!r}: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def literal_refusal(url: str, policy: OutboundPolicy) -> str | None:
    """Why ``url`` may not be called, judged without DNS (a name passes), or None."""
    try:
        host = parse(url)
    except UnsafeUrl as exc:
        return exc.message
    if host.address is None:
        return None
    reason = policy.refusal(host.address)
    return None if reason is None else f"refused: {host.name} is {reason}"


async def resolve(url: str, policy: OutboundPolicy) -> Target:
    """Check ``url`` and every address its host resolves to; the address to connect to.

    Raises:
        UnsafeUrl: not an http(s) URL, unresolvable, or an address the policy refuses.
    """
    host = parse(url)
    addresses = await _addresses(host)
    if not addresses:
        raise Unresolvable(f"{host.name!r} resolves to no address")
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            said = "is" if host.address is not None else "resolves to"
            raise UnsafeUrl(f"refused: {host.name} {said} {reason}; see BATCHD_OUTBOUND_ALLOW")
    first = addresses[0]
    if isinstance(first, ipaddress.IPv6Address) and first.ipv4_mapped is not None:
        first = first.ipv4_mapped  # the same host, reached without an IPv6 socket
    return Target(url=url, host=host.name, address=first, scheme=host.scheme, port=host.port)


async def refusals(urls: list[str], policy: OutboundPolicy) -> dict[str, str]:
    """The URLs of ``urls`` that may not be called, each with why (hosts resolved once)."""
    refused: dict[str, str] = {}
    by_host: dict[tuple[str, int], str | None] = {}
    for url in dict.fromkeys(urls):
        try:
            host = parse(url)
        except UnsafeUrl as exc:
            refused[url] = exc.message
            continue
        key = (host.name, host.port)
        if key not in by_host:
            try:
                await resolve(url, policy)
                by_host[key] = None
            except UnsafeUrl as exc:
                by_host[key] = exc.message
        reason = by_host[key]
        if reason is not None:
            refused[url] = reason
    return refused
