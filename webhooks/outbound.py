"""Requests to partners' webhook URLs, which must never reach the server's own network.

A partner chooses the URL, so the server resolves its host itself and refuses a target
unless every address it resolves to is public: not private, loopback, link-local,
multicast, reserved, unspecified, shared (100.64/10) or otherwise not globally routable,
also when spelt as an IPv4-mapped, 6to4 or Teredo IPv6 address. Then it connects to the
address it checked (the name is not looked up again, so a DNS answer that changes between
the check and the connection cannot redirect it), while TLS still checks the certificate
for the name and sends it as SNI, and `Host` names it. No redirect is followed, the
connection and the answer each have a short timeout, and at most
WEBHOOK_RESPONSE_MAX_BYTES of the answer are read. Only https, except for hosts the
administrator allows (WEBHOOK_ALLOWED_HOSTS: names, compared exactly, or IP networks),
which may also be internal and plain http.

HTTP is urllib3's (already the client library's HTTP): its pools take the address to
connect to apart from the name to verify (`server_hostname`, `assert_hostname`).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
URL_MAX_LENGTH = 2048
USER_AGENT = "consortium-webhooks/1"


class TargetRefused(Exception):
    """A URL the server will not request: its form, its scheme, or where it resolves."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lowercase name or IP literal, without brackets
    port: int
    path: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def target_parse(url: str) -> Target:
    """The parts of a webhook URL, refused unless it is an absolute http(s) URL with a host,
    without user information or fragment, at most URL_MAX_LENGTH characters of ASCII."""
    if len(url) > URL_MAX_LENGTH:
        raise TargetRefused(f"the URL is longer than {URL_MAX_LENGTH} characters")
    if not url.isascii() or any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise TargetRefused("the URL must be ASCII without spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TargetRefused(f"the URL cannot be read: {error}") from None
    if parts.scheme not in ("https", "http"):
        raise TargetRefused("the URL must be https")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not carry a user or password")
    if parts.fragment or url.endswith("#"):
        raise TargetRefused("the URL must not carry a fragment")
    host = parts.hostname.rstrip(".").lower()
    if not host:
        raise TargetRefused("the URL has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, host, port or default, path)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why the server must not connect to `address`, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = address_refusal(embedded)
            return None if reason is None else f"{reason} (embedded in {address})"
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not address.is_global:
        return f"{address} is not a globally routable address"
    return None


def _allowed_networks() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks = []
    for item in settings.WEBHOOK_ALLOWED_HOSTS:
        text = item.strip().lower()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            names.add(text.rstrip("."))
    return names, networks


def host_allowed(host: str, addresses: list[IPAddress] | None = None) -> bool:
    """Whether the administrator allowed `host`: by name, or (an IP literal, or every
    address it resolved to) inside an allowed network."""
    names, networks = _allowed_networks()
    if host in names:
        return True
    if addresses is None:
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            return False
    return bool(addresses) and all(
        any(address in network for network in networks) for address in addresses
    )


def target_resolve(target: Target) -> list[IPAddress]:
    """The addresses to connect to for `target`, each one checked; TargetRefused if the
    name does not resolve, or any address it resolves to is internal and the host is not
    allowed (one internal answer among public ones is refused too: a client could be given
    either)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise TargetRefused(f"{target.host} does not resolve: {error}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"{target.host} resolves to no address")
    allowed = host_allowed(target.host, addresses)
    if target.scheme != "https" and not allowed:
        raise TargetRefused("the URL must be https")
    if not allowed:
        for address in addresses:
            reason = address_refusal(address)
            if reason is not None:
                raise TargetRefused(f"{target.host} resolves to {reason}")
    return addresses


def target_check(url: str) -> Target:
    """Parse and resolve `url` now, as a delivery would (TargetRefused otherwise)."""
    target = target_parse(url)
    target_resolve(target)
    return target


@dataclass(frozen=True)
class Answer:
    status: int | None
    duration_ms: int
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(*, url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to `url` under the rules above; never raises for the receiver's sake: a
    refused target, a timeout or a broken connection is an Answer with no status."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = target_parse(url)
        addresses = target_resolve(target)
    except TargetRefused as error:
        return Answer(None, took(), f"refused: {error}")
    connect, read = settings.WEBHOOK_CONNECT_TIMEOUT, settings.WEBHOOK_READ_TIMEOUT
    request_headers = {
        **headers,
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    pool: urllib3.HTTPConnectionPool
    # The first address; one that does not answer is a failed attempt, retried later.
    address = str(addresses[0])
    timeout = urllib3.Timeout(connect=connect, read=read)
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            address, target.port, timeout=timeout, retries=False, maxsize=1
        )
    deadline = started + connect + read
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers=request_headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            received = 0
            # A receiver trickling its answer is cut off at the deadline: the read timeout
            # bounds each read, not the whole answer.
            for chunk in response.stream(16 * 1024):
                received += len(chunk)
                if received > settings.WEBHOOK_RESPONSE_MAX_BYTES:
                    break
                if time.monotonic() > deadline:
                    return Answer(None, took(), f"no whole answer within {connect + read:g} s")
        finally:
            response.close()
        return Answer(response.status, took())
    except urllib3.exceptions.HTTPError as error:
        return Answer(None, took(), f"{type(error).__name__}: {error}"[:500])
    except OSError as error:
        return Answer(None, took(), f"{type(error).__name__}: {error}"[:500])
    finally:
        pool.close()
