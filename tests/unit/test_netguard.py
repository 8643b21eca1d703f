"""The outbound address guard: every way of writing an inner address is refused."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from batchd import netguard
from batchd.settings import Settings

GUARD = netguard.OutboundPolicy()

# (URL, a word the refusal must contain)
REFUSED: list[tuple[str, str]] = [
    # IPv4 loopback in every notation getaddrinfo and browsers accept
    ("http://127.0.0.1/", "loopback"),
    ("http://127.255.255.254:8080/x", "loopback"),
    ("http://2130706433/", "loopback"),  # decimal
    ("http://0177.0.0.1/", "loopback"),  # octal
    ("http://0177.0000.0000.0001/", "loopback"),
    ("http://017700000001/", "loopback"),  # one octal number
    ("http://0x7f.0x0.0x0.0x1/", "loopback"),  # hex parts
    ("http://0x7f000001/", "loopback"),  # one hex number
    ("http://0X7F.1/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://127.1/", "loopback"),  # short forms
    ("http://127.0.1/", "loopback"),
    ("http://127.0.0.1./", "loopback"),  # a trailing dot
    ("http://０x7f.1/", "loopback"),  # full-width digits, IDNA-mapped
    ("http://１２７。０。０。１/", "loopback"),  # and full-width dots
    ("http://localhost/", "loopback"),
    ("http://LOCALHOST./", "loopback"),
    ("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", "loopback"),  # IDNA maps it to localhost
    ("http://api.localhost/", "loopback"),
    # IPv4 private, shared, link-local and the rest
    ("http://10.0.0.1/", "private"),
    ("http://012.0.0.1/", "private"),  # 10.0.0.1 in octal
    ("http://167772161/", "private"),  # 10.0.0.1 in decimal
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://0xc0.0xa8.1/", "private"),  # 192.168.0.1
    ("http://100.64.0.1/", "private"),  # carrier-grade NAT
    ("http://100.127.255.254/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://2852039166/", "link-local"),  # 169.254.169.254 in decimal
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://0.1.2.3/", "reserved"),  # this network, 0/8
    ("http://224.0.0.1/", "multicast"),
    ("http://239.255.255.250/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://192.0.0.8/", "reserved"),  # IETF protocol assignments
    ("http://192.0.2.1/", "documentation"),
    ("http://198.51.100.7/", "documentation"),
    ("http://203.0.113.9/", "documentation"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://198.19.255.1/", "benchmarking"),
    # IPv6 ranges
    ("http://[::1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]:8080/", "loopback"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),  # a zone id
    ("http://[FE80::A:1%25lo]:9/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456:789a::1]/", "private"),
    ("http://[fec0::1]/", "private"),  # deprecated site-local
    ("http://[feff::1]/", "private"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[ff05::1:3]/", "multicast"),
    ("http://[2001:db8::1]/", "documentation"),
    ("http://[3fff::1]/", "documentation"),
    ("http://[2001:2::1]/", "benchmarking"),
    ("http://[100::1]/", "reserved"),  # discard-only
    ("http://[5f00::1]/", "reserved"),  # SRv6 SIDs
    ("http://[64:ff9b:1::808:808]/", "reserved"),  # local-use NAT64
    ("http://[::ffff:0:0:1:2]/", "reserved"),
    # IPv6 forms that carry an IPv4 address
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("http://[::ffff:7f00:1]/", "loopback"),  # the same, in hex
    ("http://[0:0:0:0:0:ffff:7f00:0001]/", "loopback"),
    ("http://[::FFFF:10.1.2.3]/", "private"),
    ("http://[::ffff:a9fe:a9fe]/", "link-local"),
    ("http://[::ffff:0.0.0.0]/", "unspecified"),
    ("http://[::127.0.0.1]/", "IPv4-compatible"),
    ("http://[::7f00:1]/", "loopback"),
    ("http://[::10.0.0.1]/", "private"),
    ("http://[::8.8.8.8]/", "reserved"),  # deprecated even when it carries a public one
    ("http://[::ffff:0:127.0.0.1]/", "IPv4-translated"),
    ("http://[::ffff:0:a9fe:a9fe]/", "link-local"),
    ("http://[64:ff9b::127.0.0.1]/", "NAT64"),
    ("http://[64:ff9b::7f00:1]/", "loopback"),
    ("http://[64:ff9b::a00:1]/", "private"),
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
    ("http://[64:ff9b:1::7f00:1]/", "loopback"),  # local-use NAT64, /96 layout
    ("http://[2002:7f00:1::]/", "6to4"),
    ("http://[2002:a9fe:a9fe::1]/", "link-local"),
    ("http://[2002:c0a8:101::]/", "private"),
    ("http://[2002:808:808::1]/", "tunnelled"),  # 6to4 of a public one: relayed
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "Teredo"),  # client 127.0.0.1
    ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", "private"),  # client 10.0.0.1
    ("http://[2001::1]/", "Teredo"),
    # URLs that are not plain http(s) to a host
    ("http://good.com@127.0.0.1/", "credentials"),
    ("http://127.0.0.1:80@good.com/", "credentials"),
    ("http://u:p@1.1.1.1/", "credentials"),
    ("http://127.0.0.1\\@good.com/", "backslash"),
    ("http://127.0.0.1 /", "spaces"),
    ("http://127%2e0%2e0%2e1/", "host"),
    ("http://1.2.3.4.5/", "IPv4"),
    ("http://256.0.0.1/", "IPv4"),
    ("http://08.0.0.1/", "IPv4"),
    ("http://example.123/", "IPv4"),
    ("http://[::ffff:127.0.0.1/", "valid"),
    ("http://[127.0.0.1]/", "valid"),
    ("ftp://1.1.1.1/", "http"),
    ("file:///etc/passwd", "http"),
    ("//1.1.1.1/", "http"),
]

ALLOWED = [
    "https://1.1.1.1/hook", "http://8.8.8.8:8080/x", "http://134744072/",  # 8.8.8.8
    "http://0x8.0x8.0x8.0x8/", "http://8.8.2056/", "http://1.1.1.1./",
    "http://[2606:4700:4700::1111]/", "http://[2001:4860:4860::8888]:443/",
    "http://[::ffff:8.8.8.8]/",  # IPv4-mapped public: the same host
    "http://[64:ff9b::808:808]/",  # DNS64 / NAT64 to a public address
    "http://100.63.255.255/", "http://100.128.0.1/", "http://172.32.0.1/",
    "http://198.17.255.255/", "http://198.20.0.1/", "http://11.0.0.1/",
]


def test_netguard_table_is_large_and_covers_both_families() -> None:
    assert len(REFUSED) >= 60
    assert sum(1 for url, _ in REFUSED if "[" in url) >= 30


@pytest.mark.parametrize("url, word", REFUSED)
async def test_netguard_refuses(url: str, word: str) -> None:
    refused = await netguard.refusals([url], GUARD)
    assert url in refused, url
    assert word.lower() in refused[url].lower(), refused[url]
    with pytest.raises(netguard.UnsafeUrl):
        await netguard.resolve(url, GUARD)


@pytest.mark.parametrize("url", ALLOWED)
async def test_netguard_allows_public_addresses(url: str) -> None:
    assert await netguard.refusals([url], GUARD) == {}
    target = await netguard.resolve(url, GUARD)
    assert GUARD.refusal(target.address) is None


@pytest.mark.parametrize("allow, url", [
    ("loopback", "http://127.0.0.1:9/"), ("loopback", "http://0x7f.1/"),
    ("loopback", "http://[::1]/"), ("loopback", "http://[::ffff:127.0.0.1]/"),
    ("loopback", "http://[64:ff9b::7f00:1]/"),
    ("private", "http://10.0.0.1/"), ("private", "http://[fd00::1]/"),
    ("private", "http://[fec0::1]/"), ("private", "http://100.64.0.1/"),
    ("link-local", "http://169.254.169.254/"), ("link_local", "http://[fe80::1%25eth0]/"),
    ("10.2.0.0/16", "http://10.2.3.4/"), ("10.2.0.0/16", "http://[::ffff:10.2.3.4]/"),
    ("fd12:3456::/32", "http://[fd12:3456::9]/"), ("192.0.2.0/24", "http://192.0.2.5/"),
    ("2002::/16", "http://[2002:808:808::1]/"), ("198.18.0.0/15", "http://198.18.0.1/"),
])
async def test_netguard_policy_lets_through_what_it_names(allow: str, url: str) -> None:
    policy = netguard.OutboundPolicy.parse(allow)
    assert await netguard.refusals([url], policy) == {}
    assert url in await netguard.refusals([url], GUARD)


@pytest.mark.parametrize("allow, url", [
    ("private", "http://127.0.0.1/"), ("loopback", "http://10.0.0.1/"),
    ("10.2.0.0/16", "http://10.3.0.1/"), ("loopback", "http://0.0.0.0/"),
    ("private", "http://[2002:7f00:1::]/"),  # allowing a kind never opens another's
    ("2002::/16", "http://[2002:7f00:1::]/"),  # nor does allowing the tunnel range
    ("private, loopback", "http://[ff02::1]/"), ("private", "http://192.0.2.1/"),
    ("private", "http://198.18.0.1/"),
])
async def test_netguard_policy_refuses_what_it_does_not_name(allow: str, url: str) -> None:
    assert url in await netguard.refusals([url], netguard.OutboundPolicy.parse(allow))


def test_netguard_policy_parse_refuses_unknown_entries() -> None:
    for bad in ("intranet", "10.0.0.0/33", "public"):
        with pytest.raises(ValueError):
            netguard.OutboundPolicy.parse(bad)
    policy = netguard.OutboundPolicy.parse(" Loopback , LINK-LOCAL, 10.2.0.0/16,,")
    assert policy.kinds == {"loopback", "link_local"}


@pytest.mark.parametrize("address, form, inner", [
    ("::ffff:7f00:1", "IPv4-mapped", "127.0.0.1"), ("::7f00:1", "IPv4-compatible", "127.0.0.1"),
    ("::ffff:0:a00:1", "IPv4-translated", "10.0.0.1"), ("64:ff9b::808:808", "NAT64", "8.8.8.8"),
    ("64:ff9b:1::a00:1", "local-use NAT64", "10.0.0.1"), ("2002:a00:1::", "6to4", "10.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo", "127.0.0.1"),
])
def test_netguard_finds_the_ipv4_address_an_ipv6_address_carries(
    address: str, form: str, inner: str,
) -> None:
    assert netguard.embedded_ipv4(ipaddress.IPv6Address(address)) == (
        form, ipaddress.IPv4Address(inner))
    assert netguard.embedded_ipv4(ipaddress.IPv6Address("2606:4700::1")) is None
    assert netguard.embedded_ipv4(ipaddress.IPv6Address("::1")) is None


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    async def getaddrinfo(self: Any, host: str, port: int, **kw: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in answers[host]]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)


async def test_netguard_checks_every_address_a_name_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {
        "hooks.example.com": ["93.184.216.34"],
        "split.example.com": ["93.184.216.34", "::ffff:127.0.0.1"],
        "six.example.com": ["fe80::1%eth0"], "tunnel.example.com": ["2002:a9fe:a9fe::"],
    })
    target = await netguard.resolve("https://HOOKS.example.com./x", GUARD)
    assert (str(target.address), target.host) == ("93.184.216.34", "hooks.example.com")
    assert str(target.request_url()) == "https://93.184.216.34/x"
    assert target.headers() == {"Host": "hooks.example.com"}
    assert target.extensions() == {"sni_hostname": "hooks.example.com"}
    refused = await netguard.refusals([
        "http://split.example.com/", "http://six.example.com/", "http://tunnel.example.com/",
        "http://nowhere.example.com/",
    ], GUARD)
    assert "loopback" in refused["http://split.example.com/"]
    assert "link-local" in refused["http://six.example.com/"]
    assert "6to4" in refused["http://tunnel.example.com/"]
    assert "cannot resolve" in refused["http://nowhere.example.com/"]


async def test_netguard_connect_time_check_defeats_dns_rebinding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name that was public when the URL was given and is private when it is called."""
    fake_dns(monkeypatch, {"rebind.example.com": ["93.184.216.34"]})
    url = "http://rebind.example.com/hook"
    assert await netguard.refusals([url], GUARD) == {}  # accepted at submission
    fake_dns(monkeypatch, {"rebind.example.com": ["127.0.0.1"]})
    with pytest.raises(netguard.UnsafeUrl, match="loopback"):
        await netguard.resolve(url, GUARD)  # what every delivery and call does
    fake_dns(monkeypatch, {})
    with pytest.raises(netguard.Unresolvable):
        await netguard.resolve(url, GUARD)


async def test_netguard_pins_the_checked_address() -> None:
    target = await netguard.resolve("http://[::ffff:8.8.8.8]:8080/a?b=1",
                                    netguard.OutboundPolicy())
    assert str(target.request_url()) == "http://8.8.8.8:8080/a?b=1"
    target = await netguard.resolve("http://0x8.0x8.0x8.0x8/", netguard.OutboundPolicy())
    assert str(target.request_url()) == "http://8.8.8.8/"
    assert target.headers() == {"Host": "8.8.8.8"}
    target = await netguard.resolve("https://[2606:4700:4700::1111]:8443/",
                                    netguard.OutboundPolicy())
    assert target.headers() == {"Host": "[2606:4700:4700::1111]:8443"}
    assert str(target.request_url()) == "https://[2606:4700:4700::1111]:8443/"
    # A notation the HTTP client itself cannot read still goes where it was checked to.
    target = await netguard.resolve("http://0177.0.0.1:8080/p%20q?r=1#frag",
                                    netguard.OutboundPolicy.parse("loopback"))
    assert str(target.request_url()) == "http://127.0.0.1:8080/p%20q?r=1"
    assert target.headers() == {"Host": "127.0.0.1:8080"}


def test_settings_refuse_an_llm_endpoint_the_guard_refuses() -> None:
    with pytest.raises(ValueError, match="llm_base_url"):
        Settings(llm_base_url="http://127.0.0.1:8000/v1")
    with pytest.raises(ValueError, match="llm_base_url"):
        Settings(llm_base_url="http://[::ffff:a00:1]/v1", outbound_allow="loopback")
    assert Settings(llm_base_url="http://127.0.0.1:8000/v1", outbound_allow="loopback")
    assert Settings(llm_base_url="http://10.0.5.7:8000/v1", outbound_allow="10.0.5.7/32")
    with pytest.raises(ValueError, match="outbound_allow"):
        Settings(outbound_allow="intranet")
