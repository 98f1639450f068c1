"""Egress allowlist entries: which destinations a sandbox's proxy may connect to.

An entry is ``PATTERN[:PORT[,PORT...]]``; PATTERN is a host name, ``*.suffix``,
an IP address or a CIDR (IPv6 in brackets when ports follow: ``[fd00::1]:443``).
Ports default to 443 and 80. A name entry matches requests for that name only,
never for the addresses it resolves to: a request for a bare IP is allowed only
by an entry naming that IP or a CIDR holding it. Where the name resolves to a
local address (loopback, link-local, private, unique-local), the connection is
refused unless an IP/CIDR entry names that address or the policy sets
``allow_local_addresses``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Literal

import attrs

from isolation.errors import PolicyError

DEFAULT_PORTS: tuple[int, ...] = (443, 80)
PROXY_PORT = 3128  # the egress proxy inside a sandbox's own network namespace: nothing else listens there
RuleKind = Literal["name", "suffix", "ip", "cidr"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_FIX = "write NAME, *.SUFFIX, IP or CIDR, optionally followed by :PORT[,PORT...] (e.g. pypi.org:443 or 10.0.0.0/8:8080)"

# Address space a name must not silently lead to (metadata services, the host's own
# services, the internal network): refused unless named explicitly or allowed.
LOCAL_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "169.254.0.0/16",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "0.0.0.0/8",
        "100.64.0.0/10",
        "::1/128",
        "::/128",
        "fe80::/10",
        "fc00::/7",
    )
)


def is_local_address(addr: IPAddress) -> bool:
    """Loopback, link-local, private, unique-local (and unspecified/CGNAT) space."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in LOCAL_NETWORKS if net.version == addr.version)


def _host_name(text: str) -> str:
    name = text.lower().rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise PolicyError(f"egress_allow: {text!r} is not a host name; {_FIX}")
    return name


def _ports(text: str, entry: str) -> tuple[int, ...]:
    ports: list[int] = []
    for part in text.split(","):
        if not part.isdigit() or not 1 <= int(part) <= 65535:
            raise PolicyError(f"egress_allow: {entry!r}: port {part!r} is not a number from 1 to 65535; {_FIX}")
        ports.append(int(part))
    return tuple(dict.fromkeys(ports))


def _split(entry: str) -> tuple[str, str | None]:
    """(pattern, ports text or None); IPv6 takes brackets when ports follow."""
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0 or (end + 1 < len(entry) and entry[end + 1] != ":"):
            raise PolicyError(f"egress_allow: {entry!r}: unbalanced brackets; write [IPV6]:PORT")
        return entry[1:end], (entry[end + 2 :] if end + 1 < len(entry) else None)
    if entry.count(":") > 1:  # a bare IPv6 address or network, no ports
        return entry, None
    pattern, sep, ports = entry.partition(":")
    return pattern, ports if sep else None


@attrs.frozen(cache_hash=True)
class EgressRule:
    """One allowlist entry, parsed. `str()` gives it back in canonical form."""

    pattern: str
    kind: RuleKind
    ports: tuple[int, ...] = DEFAULT_PORTS

    @classmethod
    def parse(cls, entry: object) -> EgressRule:
        if isinstance(entry, EgressRule):
            return entry
        if not isinstance(entry, str) or not entry.strip() or any(c.isspace() for c in entry.strip()):
            raise PolicyError(f"egress_allow: {entry!r} is not an entry; {_FIX}")
        text = entry.strip()
        pattern, port_text = _split(text)
        ports = DEFAULT_PORTS if port_text is None else _ports(port_text, text)
        if "/" in pattern:
            try:
                net = ipaddress.ip_network(pattern, strict=True)
            except ValueError as exc:
                raise PolicyError(f"egress_allow: {text!r}: {exc}; {_FIX}") from None
            return cls(str(net), "cidr", ports)
        try:
            return cls(str(ipaddress.ip_address(pattern)), "ip", ports)
        except ValueError:
            pass
        if pattern.startswith("*."):
            return cls("*." + _host_name(pattern[2:]), "suffix", ports)
        if "*" in pattern:
            raise PolicyError(f"egress_allow: {text!r}: a wildcard is only allowed as a leading '*.'; {_FIX}")
        if re.fullmatch(r"[0-9.]+", pattern):
            raise PolicyError(f"egress_allow: {text!r} is not a valid IP address; {_FIX}")
        return cls(_host_name(pattern), "name", ports)

    def __str__(self) -> str:
        host = f"[{self.pattern}]" if self.kind == "ip" and ":" in self.pattern else self.pattern
        return host if self.ports == DEFAULT_PORTS else f"{host}:{','.join(map(str, self.ports))}"

    def matches_name(self, name: str, port: int) -> bool:
        """Whether a request for host `name` (not an IP literal) on `port` is allowed."""
        if port not in self.ports:
            return False
        if self.kind == "name":
            return name == self.pattern
        if self.kind == "suffix":
            return name.endswith(self.pattern[1:])  # "*.example.org": below example.org, not itself
        return False

    def covers_address(self, addr: IPAddress, port: int | None = None) -> bool:
        """Whether this IP/CIDR entry names `addr` (on `port`, when given)."""
        if port is not None and port not in self.ports:
            return False
        if self.kind == "ip":
            return addr == ipaddress.ip_address(self.pattern)
        if self.kind == "cidr":
            net = ipaddress.ip_network(self.pattern)
            return net.version == addr.version and addr in net
        return False


def parse_rules(entries: Iterable[object]) -> tuple[EgressRule, ...]:
    if isinstance(entries, str | bytes):
        raise PolicyError(f"egress_allow: expected a list of entries, got the string {entries!r}")
    return tuple(dict.fromkeys(EgressRule.parse(e) for e in entries))


@attrs.frozen
class Verdict:
    """A policy decision: `rule` names the entry that allowed, or why it was refused."""

    allowed: bool
    rule: str


def check_request(rules: tuple[EgressRule, ...], host: str, port: int) -> Verdict:
    """The first check, before any name is resolved: the host as asked, and the port."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        addr = None
    if addr is not None:
        for r in rules:
            if r.covers_address(addr, port):
                return Verdict(True, str(r))
        return Verdict(False, f"no entry names the address {addr} on port {port} (name entries never match an IP)")
    name = host.lower().rstrip(".")
    for r in rules:
        if r.matches_name(name, port):
            return Verdict(True, str(r))
    return Verdict(False, f"no entry allows {name} on port {port}")


def check_address(
    rules: tuple[EgressRule, ...], addr: IPAddress, port: int, *, allow_local: bool, named_by: str
) -> Verdict:
    """The second check, on each address the name resolved to: local space needs an explicit entry."""
    if not is_local_address(addr):
        return Verdict(True, named_by)
    for r in rules:
        if r.covers_address(addr, port):
            return Verdict(True, str(r))
    if allow_local:
        return Verdict(True, f"{named_by} (allow_local_addresses)")
    return Verdict(
        False,
        f"{addr} is a local address (loopback, link-local, private or unique-local); name it with an IP/CIDR "
        "entry or set allow_local_addresses",
    )
