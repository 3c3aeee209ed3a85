"""Where webhook deliveries may go: receivers' URLs and addresses checked against SSRF."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import Invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Names and addresses of clouds' instance metadata, refused whatever else is allowed.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "metadata.tencentyun.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.0.23",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Numbers the resolver reads as IPv4 addresses though ``ipaddress`` does not (2130706433,
# 0x7f.1, 127.1): checked as the address they are.
_LEGACY_IPV4 = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}")


@dataclass(frozen=True)
class Destinations:
    """Where deliveries may go: https to public addresses always; plain http and loopback or
    private addresses in development and test (``is_local``) or to ``trusted_hosts``; link-local
    and metadata addresses never."""

    is_local: bool = False
    trusted_hosts: frozenset[str] = frozenset()

    def is_trusted(self, host: str) -> bool:
        return self.is_local or host in self.trusted_hosts


def destinations_for(environment: str, *, trusted_hosts: Iterable[str] = ()) -> Destinations:
    """The destinations of a deployment in ``environment``."""
    return Destinations(
        is_local=environment in ("development", "test"),
        trusted_hosts=frozenset(host.lower().rstrip(".") for host in trusted_hosts),
    )


@dataclass(frozen=True)
class Target:
    """A receiver's URL, taken apart."""

    url: str
    scheme: str
    # Lower case, in ASCII (IDNA), without a trailing dot; an IPv6 address without brackets.
    host: str
    port: int
    # The path and query, as the request line gives them.
    path: str


def _refused(url: str, why: str) -> Invalid:
    return Invalid(f"Deliveries cannot go to {url[:200]!r}: {why}", field="url")


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_ipv4(found: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is where it goes."""
    if not isinstance(found, ipaddress.IPv6Address):
        return None
    if found.ipv4_mapped is not None:
        return found.ipv4_mapped
    if found.sixtofour is not None:
        return found.sixtofour
    if found in _NAT64:
        return ipaddress.IPv4Address(int(found) & 0xFFFFFFFF)
    return None


def address_refusal(found: IPAddress, *, may_be_private: bool) -> str | None:
    """Why deliveries may not go to ``found``; None when they may."""
    found = _embedded_ipv4(found) or found
    if found in METADATA_ADDRESSES:
        return "a cloud's instance metadata address"
    if found.is_link_local:
        return "a link-local address"
    if found.is_unspecified:
        return "the unspecified address"
    if found.is_multicast or found.is_reserved:
        return "a multicast or reserved address"
    if found.is_global:
        return None
    if may_be_private and (found.is_loopback or found.is_private):
        return None
    return "a loopback address" if found.is_loopback else "a private or non-public address"


def check_url(url: str, destinations: Destinations) -> Target:
    """``url`` as a receiver's, or Invalid saying why deliveries may not go there."""
    if any(character.isspace() or not character.isprintable() for character in url):
        raise _refused(url, "a URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _refused(url, f"not a URL ({error})") from None
    if port == 0:
        raise _refused(url, "port 0 is no port a receiver listens on")
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise _refused(url, "receivers are reached over https")
    if "@" in parts.netloc:
        raise _refused(url, "credentials do not belong in the URL: deliveries are signed")
    if parts.fragment:
        raise _refused(url, "a receiver's URL has no fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _refused(url, "it names no host")
    literal = _literal_address(host)
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _refused(url, "not a valid host name") from None
    if scheme == "http" and not destinations.is_trusted(host):
        raise _refused(url, "plain http goes only to hosts the deployment trusts: use https")
    if host in METADATA_HOSTS:
        raise _refused(url, "a cloud's instance metadata service")
    if literal is not None:
        refusal = address_refusal(literal, may_be_private=destinations.is_trusted(host))
        if refusal is not None:
            raise _refused(url, f"{host} is {refusal}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    return Target(url=url, scheme=scheme, host=host, port=port or default_port, path=path)


def resolve(target: Target, destinations: Destinations) -> list[IPAddress]:
    """The addresses ``target`` reaches, every one of them allowed, or Invalid naming the one
    that is not; OSError (or UnicodeError) when its name does not resolve."""
    literal = _literal_address(target.host)
    if literal is not None:
        return [literal]
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM):
        candidate = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if candidate not in found:
            found.append(candidate)
    may_be_private = destinations.is_trusted(target.host)
    for candidate in found:
        refusal = address_refusal(candidate, may_be_private=may_be_private)
        if refusal is not None:
            raise _refused(target.url, f"{target.host} resolves to {candidate}, {refusal}")
    return found


def check_receiver(url: str, destinations: Destinations) -> str:
    """A receiver's URL checked as a subscription is made: a name that does not resolve yet
    passes (every delivery checks again where it resolves to)."""
    target = check_url(url, destinations)
    with contextlib.suppress(OSError, UnicodeError, ValueError):
        resolve(target, destinations)
    return url
