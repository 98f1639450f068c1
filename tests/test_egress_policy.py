"""The egress allowlist as policy: entries, effects, JSON, TOML, CLI, plan; and the proxy's
own bounds, exercised over real sockets on the host (the sandboxed paths are in test_egress.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from procs import wait_until

from isolation import IsolationPolicy
from isolation.effects import Network
from isolation.egress import EgressProxy, ProxyLimits
from isolation.egress_rules import EgressRule, check_address, check_request, is_local_address, parse_rules
from isolation.errors import PolicyError
from isolation.profiles import parse_profiles


@pytest.mark.parametrize(
    ("entry", "pattern", "kind", "ports"),
    [
        ("pypi.org", "pypi.org", "name", (443, 80)),
        ("PyPI.org.", "pypi.org", "name", (443, 80)),
        ("*.pythonhosted.org:443", "*.pythonhosted.org", "suffix", (443,)),
        ("10.20.0.0/16:8080", "10.20.0.0/16", "cidr", (8080,)),
        ("127.0.0.2:8000,8001", "127.0.0.2", "ip", (8000, 8001)),
        ("[fd00::1]:443", "fd00::1", "ip", (443,)),
        ("fd00::/8", "fd00::/8", "cidr", (443, 80)),
    ],
)
def test_entries_parse(entry: str, pattern: str, kind: str, ports: tuple[int, ...]) -> None:
    rule = EgressRule.parse(entry)
    assert (rule.pattern, rule.kind, rule.ports) == (pattern, kind, ports)
    assert EgressRule.parse(str(rule)) == rule


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("", "not an entry"),
        ("pypi .org", "not an entry"),
        ("pypi.org:0", "port '0'"),
        ("pypi.org:https", "port 'https'"),
        ("10.0.0.1/8", "host bits set"),
        ("a*.org", "leading '*.'"),
        ("*", "leading '*.'"),
        ("*.", "not a host name"),
        ("999.1.1.1", "not a valid IP"),
        ("[::1", "brackets"),
        ("exa_mple.org", "not a host name"),
    ],
)
def test_malformed_entries_are_refused_with_the_fix(entry: str, says: str) -> None:
    with pytest.raises(PolicyError, match="egress_allow") as info:
        EgressRule.parse(entry)
    assert says in str(info.value)
    if says not in ("brackets",):
        assert "NAME, *.SUFFIX, IP or CIDR" in str(info.value)  # the fix


def test_matching_names_suffixes_addresses_and_ports() -> None:
    rules = parse_rules(["pypi.org", "*.pythonhosted.org:443", "10.20.0.0/16:8080", "127.0.0.2:8000"])
    assert check_request(rules, "pypi.org", 443).allowed and check_request(rules, "PYPI.ORG.", 80).allowed
    assert not check_request(rules, "pypi.org", 8080).allowed
    assert not check_request(rules, "evil-pypi.org", 443).allowed
    assert check_request(rules, "files.pythonhosted.org", 443).allowed
    assert not check_request(rules, "pythonhosted.org", 443).allowed  # "*." is below the suffix only
    assert not check_request(rules, "files.pythonhosted.org", 80).allowed
    assert check_request(rules, "10.20.3.4", 8080).allowed and not check_request(rules, "10.21.0.1", 8080).allowed
    # A name entry never matches an address, whatever the name resolves to.
    assert "never match an IP" in check_request(rules, "151.101.0.223", 443).rule


def test_local_addresses_need_an_explicit_entry_or_the_switch() -> None:
    import ipaddress

    rules = parse_rules(["pkgs.example", "10.20.0.0/16:443"])
    for text in ("127.0.0.1", "169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "::1", "fe80::1", "fd00::1"):
        addr = ipaddress.ip_address(text)
        assert is_local_address(addr), text
        assert not check_address(rules, addr, 443, allow_local=False, named_by="pkgs.example").allowed
        assert check_address(rules, addr, 443, allow_local=True, named_by="pkgs.example").allowed
    assert is_local_address(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert check_address(rules, ipaddress.ip_address("10.20.1.1"), 443, allow_local=False, named_by="x").allowed
    assert check_address(rules, ipaddress.ip_address("151.101.0.223"), 443, allow_local=False, named_by="x").allowed


def test_network_effect_allowlists_merge_and_bare_network_stays_the_host_network() -> None:
    p = IsolationPolicy.from_effects([Network(allow=("pypi.org",)), Network(allow=("*.pythonhosted.org:443",))])
    assert not p.network and [str(r) for r in p.egress_allow] == ["*.pythonhosted.org:443", "pypi.org"]
    assert IsolationPolicy.from_effects([Network]).network is True
    assert IsolationPolicy.from_effects([Network(), Network(allow=("pypi.org",))]).egress_allow == ()
    with pytest.raises(PolicyError, match="egress_allow"):
        Network(allow=("bad entry",))


def test_policy_json_round_trip_and_refusals() -> None:
    p = IsolationPolicy(egress_allow=["pypi.org", "127.0.0.2:8000"], allow_local_addresses=True)
    d = p.to_dict()
    assert d["egress_allow"] == ["pypi.org", "127.0.0.2:8000"] and d["allow_local_addresses"] is True
    assert IsolationPolicy.from_json(p.to_json()) == p
    assert "egress_allow" not in IsolationPolicy().to_dict()
    with pytest.raises(PolicyError, match="network=True already shares the host network"):
        IsolationPolicy(network=True, egress_allow=["pypi.org"])
    with pytest.raises(PolicyError, match="only applies to an egress allowlist"):
        IsolationPolicy(allow_local_addresses=True)
    with pytest.raises(PolicyError, match="must be a list"):
        IsolationPolicy.from_dict({"schema": 1, "egress_allow": "pypi.org"})
    with pytest.raises(PolicyError, match="port"):
        IsolationPolicy.from_dict({"schema": 1, "egress_allow": ["pypi.org:99999"]})


def test_profiles_carry_the_allowlist() -> None:
    text = '[profile.dl]\negress_allow = ["pypi.org", "*.pythonhosted.org:443"]\nallow_local_addresses = false\n'
    prof = parse_profiles(text)["dl"]
    assert [str(r) for r in prof.policy.egress_allow] == ["pypi.org", "*.pythonhosted.org:443"]
    assert Network(allow=("pypi.org", "*.pythonhosted.org:443")) in prof.effects.effects
    with pytest.raises(PolicyError, match=r"<string>:2: profile.dl.egress_allow"):
        parse_profiles('[profile.dl]\negress_allow = ["pypi.org:x"]\n')


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isolation", *args], capture_output=True, text=True, timeout=60)


def test_cli_plan_shows_the_allowlist_in_text_and_json() -> None:
    hosts = ["--allow-host", "pypi.org", "--allow-host", "*.pythonhosted.org:443", "--allow-local-addresses"]
    r = _cli("plan", "--backend", "bwrap", *hosts, "--", "true")
    assert r.returncode == 0, r.stderr
    assert "egress proxy at 127.0.0.1:3128 allows only:" in r.stdout
    assert "  pypi.org\n  *.pythonhosted.org:443\n" in r.stdout and "local addresses" in r.stdout
    r = _cli("plan", "--json", "--backend", "bwrap", *hosts, "--", "true")
    record = json.loads(r.stdout)
    assert record["egress"]["allow"] == ["pypi.org", "*.pythonhosted.org:443"]
    assert record["egress"]["allow_local_addresses"] is True
    assert record["egress"]["env"]["HTTPS_PROXY"] == "http://127.0.0.1:3128"
    assert record["egress"]["claim"].startswith("network:allowlist:sha256=")
    assert record["policy"]["egress_allow"] == ["pypi.org", "*.pythonhosted.org:443"]


def test_cli_refuses_malformed_entries_and_conflicts_with_exit_125() -> None:
    r = _cli("plan", "--backend", "bwrap", "--allow-host", "pypi.org:http", "--", "true")
    assert r.returncode == 125 and "port 'http'" in r.stderr
    r = _cli("run", "--backend", "bwrap", "--effect", "network", "--allow-host", "pypi.org", "--", "true")
    assert r.returncode == 125 and "already shares the host network" in r.stderr
    r = _cli("run", "--backend", "none", "--unsafe-no-isolation", "--allow-host", "pypi.org", "--", "true")
    assert r.returncode == 125 and "cannot enforce an egress allowlist" in r.stderr


# -- the proxy's bounds, on the host -------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[EgressProxy, int]]:
    proxy = EgressProxy(parse_rules(["example.invalid"]), False,
                        limits=ProxyLimits(max_connections=4, max_header=1024, header_timeout=1.0))  # fmt: skip
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    proxy.serve(listener)
    yield proxy, port
    proxy.stop()


def test_the_proxy_bounds_heads_slow_clients_and_connections(served: tuple[EgressProxy, int]) -> None:
    proxy, port = served
    with socket.create_connection(("127.0.0.1", port)) as s:  # an oversized head
        s.sendall(b"GET http://example.invalid/ HTTP/1.1\r\nX: " + b"a" * 4096)
        assert s.recv(100).startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", port)) as s:  # a head that never ends (slowloris)
        s.sendall(b"GET http://example.invalid/ HTTP/1.1\r\n")
        s.settimeout(30)
        assert s.recv(100).startswith(b"HTTP/1.1 408")
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]  # the limit's worth, idle
    try:
        for s in held:
            s.sendall(b"G")
        assert wait_until(lambda: proxy._slots._value == 0)  # type: ignore[attr-defined]  # the proxy holds all four
        with socket.create_connection(("127.0.0.1", port)) as extra:  # one more is closed at once
            extra.settimeout(30)
            assert extra.recv(100) == b""
    finally:
        for s in held:
            s.close()
    assert wait_until(lambda: proxy._slots._value == 4)  # type: ignore[attr-defined]  # the held ones are released
    with socket.create_connection(("127.0.0.1", port)) as s:  # garbage
        s.sendall(b"\x00\x01\x02 nonsense\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert proxy.log == ()  # none of these asked for a destination
