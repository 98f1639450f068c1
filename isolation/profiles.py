"""Named policies in TOML (`isolation.toml`): the project's sandboxes, reviewed like code.

A profile maps to exactly the `IsolationPolicy` its JSON form would give, so a
profile and a JSON policy are interchangeable. Every mistake is a PolicyError
naming the file, the line and the key, because a typo in a sandbox definition
(``netwrok = true``) must not silently give a different sandbox::

    [profile.build]
    description = "build the wheel"
    effects = ["network"]                  # unit effects; paths go in read/write
    read = ["/data", { host = "/srv/models", sandbox = "/models" }]
    write = ["out"]                        # relative paths: against this file's directory
    work = "."                             # bound at /work (default: a private empty /work)
    env = ["PIP_INDEX_URL"]                # added to the default allowlist
    seccomp = "default"
    # instead of effects = ["network"]: only these destinations, through the egress proxy
    # egress_allow = ["pypi.org", "*.pythonhosted.org:443"]
    # allow_local_addresses = false

    [profile.build.limits]
    memory = "2G"
    wall_timeout = 900
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from isolation.effects import EffectSet, FsRead, FsWrite, Network
from isolation.errors import PolicyError
from isolation.limits import Limits
from isolation.policy import DEFAULT_ENV_ALLOWLIST, Bind, IsolationPolicy

DEFAULT_FILE = "isolation.toml"

TOP_KEYS = ("profile",)
PROFILE_KEYS = (
    "description",
    "effects",
    "read",
    "write",
    "work",
    "env",
    "seccomp",
    "unsafe_no_seccomp",
    "limits",
    "egress_allow",
    "allow_local_addresses",
)
BIND_KEYS = ("host", "sandbox")
LIMIT_KEYS = tuple(f.name for f in attrs.fields(Limits))


@attrs.frozen
class Profile:
    """One named profile: its policy, and where it was defined (``file:line``)."""

    name: str
    policy: IsolationPolicy
    effects: EffectSet
    description: str = ""
    source: str = ""


def find_profile_file(cwd: str | None = None) -> str:
    """`isolation.toml` in `cwd` (default: the current directory), or PolicyError."""
    path = os.path.join(cwd or os.getcwd(), DEFAULT_FILE)
    if not os.path.isfile(path):
        raise PolicyError(f"no {DEFAULT_FILE} in {cwd or os.getcwd()}; give the file with --profile-file FILE")
    return path


def load_profiles(path: str) -> dict[str, Profile]:
    """Every profile in the TOML file at `path`, by name."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise PolicyError(f"profile file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"profile file {path}: not UTF-8 ({exc})") from None
    return parse_profiles(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def load_profile(name: str, path: str | None = None) -> Profile:
    """The profile `name` from `path` (default: `isolation.toml` in the current directory)."""
    path = path or find_profile_file()
    profiles = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise PolicyError(f"{path}: no profile {name!r} (profiles: {known})")
    return profiles[name]


def parse_profiles(text: str, *, source: str = "<string>", base_dir: str | None = None) -> dict[str, Profile]:
    """Parse profile TOML. Relative paths are resolved against `base_dir` (default: the current directory)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(m.group(1)) if m else max(1, len(text.splitlines()))
        raise PolicyError(f"{source}:{line}: invalid TOML: {exc}") from None
    ctx = _Context(source, _KeyLines(text), base_dir or os.getcwd())
    ctx.check_keys(doc, (), TOP_KEYS)
    table = doc.get("profile", {})
    if not isinstance(table, dict):
        raise ctx.error(("profile",), "expected tables [profile.NAME]")
    return {name: _profile(ctx, name, body) for name, body in table.items()}


@attrs.frozen
class _Context:
    source: str
    lines: _KeyLines
    base_dir: str

    def error(self, key: tuple[str, ...], message: str) -> PolicyError:
        line = self.lines.line_of(key)
        where = f"{self.source}:{line}" if line else self.source
        return PolicyError(f"{where}: {'.'.join(key)}: {message}")

    def check_keys(self, table: Mapping[str, Any], key: tuple[str, ...], known: Sequence[str]) -> None:
        for name in table:
            if name not in known:
                line = self.lines.line_of((*key, name))
                where = f"{self.source}:{line}" if line else self.source
                inside = f" in [{'.'.join(key)}]" if key else ""
                raise PolicyError(f"{where}: unknown key {name!r}{inside} (known: {', '.join(known)})")

    def path(self, key: tuple[str, ...], value: object) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a path string, got {value!r}")
        return os.path.abspath(os.path.join(self.base_dir, value))


def _profile(ctx: _Context, name: str, body: object) -> Profile:
    key = ("profile", name)
    if not isinstance(body, dict):
        raise ctx.error(key, "expected a table [profile.NAME]")
    ctx.check_keys(body, key, PROFILE_KEYS)
    description = body.get("description", "")
    if not isinstance(description, str):
        raise ctx.error((*key, "description"), "expected a string")
    effects = _effects(ctx, (*key, "effects"), body.get("effects", []))
    ro = _binds(ctx, (*key, "read"), body.get("read", []))
    rw = _binds(ctx, (*key, "write"), body.get("write", []))
    env = _names(ctx, (*key, "env"), body.get("env", []))
    kwargs: dict[str, Any] = {
        "ro_binds": ro,
        "rw_binds": rw,
        "network": Network() in effects.effects,
        "env_allowlist": (*DEFAULT_ENV_ALLOWLIST, *env),
    }
    if "work" in body:
        kwargs["work_host"] = ctx.path((*key, "work"), body["work"])
    if "egress_allow" in body:
        kwargs["egress_allow"] = _list(ctx, (*key, "egress_allow"), body["egress_allow"])
    for field in ("seccomp", "unsafe_no_seccomp", "allow_local_addresses"):
        if field in body:
            kwargs[field] = body[field]
    if "limits" in body:
        limits = body["limits"]
        if not isinstance(limits, dict):
            raise ctx.error((*key, "limits"), "expected a table [profile.NAME.limits]")
        ctx.check_keys(limits, (*key, "limits"), LIMIT_KEYS)
        try:
            kwargs["limits"] = Limits.from_dict(limits)
        except PolicyError as exc:
            raise ctx.error((*key, "limits"), str(exc)) from None
    try:
        policy = IsolationPolicy(**kwargs)
    except PolicyError as exc:
        field = _field_of(str(exc))
        raise ctx.error((*key, field) if field in body else key, str(exc)) from None
    # Path effects become the binds they imply, so `effects` reflects the whole profile.
    implied: list[object] = [*(FsRead(b.host) for b in ro), *(FsWrite(b.host) for b in rw)]
    if policy.egress_allow:
        implied.append(Network(allow=tuple(str(r) for r in policy.egress_allow)))
    all_effects = effects.union(implied)
    line = ctx.lines.line_of(key)
    return Profile(name, policy, all_effects, description, f"{ctx.source}:{line}" if line else ctx.source)


def _field_of(message: str) -> str:
    """Which profile key an IsolationPolicy error is about (its messages start with the field name)."""
    head = message.split(":", 1)[0].split(" ", 1)[0]
    return {"ro_binds": "read", "rw_binds": "write", "work_host": "work", "env_allowlist": "env"}.get(head, head)


def _list(ctx: _Context, key: tuple[str, ...], value: object) -> list[object]:
    if not isinstance(value, list):
        raise ctx.error(key, f"expected a list, got {value!r}")
    return value


def _effects(ctx: _Context, key: tuple[str, ...], value: object) -> EffectSet:
    items = _list(ctx, key, value)
    for item in items:
        if not isinstance(item, str):
            raise ctx.error(key, f"expected effect names, got {item!r} (paths go in read/write)")
    try:
        return EffectSet.of(items)
    except PolicyError as exc:
        raise ctx.error(key, str(exc)) from None


def _names(ctx: _Context, key: tuple[str, ...], value: object) -> list[str]:
    items = _list(ctx, key, value)
    for item in items:
        if not isinstance(item, str) or not item or "=" in item:
            raise ctx.error(key, f"invalid variable name {item!r}")
    return [str(i) for i in items]


def _binds(ctx: _Context, key: tuple[str, ...], value: object) -> list[Bind]:
    binds = []
    for item in _list(ctx, key, value):
        if isinstance(item, dict):
            ctx.check_keys(item, key, BIND_KEYS)
            if set(item) != set(BIND_KEYS):
                raise ctx.error(key, f"a bind table needs both host and sandbox, got {item!r}")
            host = ctx.path(key, item["host"])
            target = item["sandbox"]
            if not isinstance(target, str) or not target.startswith("/"):
                raise ctx.error(key, f"sandbox path must be absolute, got {target!r}")
            binds.append(Bind(host, target))
        else:
            path = ctx.path(key, item)
            binds.append(Bind.same(path))
    return binds


# -- line numbers ----------------------------------------------------------
# tomllib reports none for valid documents, so the keys' lines are found by a
# small scan of the text: table headers and `key =` lines, skipping the inside
# of multi-line strings. Good enough to point a person at the right line.

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, pos: int) -> tuple[list[str], int] | None:
    """A dotted TOML key starting at `pos`: (parts, position after it), or None."""
    parts: list[str] = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text):
            return None
        ch = text[pos]
        if ch in "\"'":
            end = pos + 1
            while end < len(text) and text[end] != ch:
                end += 2 if ch == '"' and text[end] == "\\" else 1
            if end >= len(text):
                return None
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            m = _BARE.match(text, pos)
            if not m:
                return None
            parts.append(m.group())
            pos = m.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


class _KeyLines:
    """Where each key path is defined: 1-based line numbers, first definition wins."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.defined: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_string: str | None = None
        for number, line in enumerate(self.lines, 1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            stripped = line.lstrip()
            if stripped.startswith("["):
                double = stripped.startswith("[[")
                parsed = _parse_key(stripped, 2 if double else 1)
                if parsed is not None:
                    table = tuple(parsed[0])
                    for i in range(1, len(table) + 1):
                        self.defined.setdefault(table[:i], number)
                continue
            parsed = _parse_key(line, 0)
            if parsed is None or not line[parsed[1] :].startswith("="):
                continue
            path = (*table, *parsed[0])
            for i in range(len(table) + 1, len(path) + 1):
                self.defined.setdefault(path[:i], number)
            value = line[parsed[1] + 1 :]
            for quote in ('"""', "'''"):
                if value.count(quote) % 2 == 1:
                    in_string = quote

    def line_of(self, key: Sequence[str]) -> int | None:
        """The line defining `key`, or else the line of the nearest ancestor; inside an
        ancestor's inline table or multi-line array, the first later line naming the key."""
        key = tuple(key)
        if key in self.defined:
            return self.defined[key]
        for depth in range(len(key) - 1, 0, -1):
            start = self.defined.get(key[:depth])
            if start is None:
                continue
            pattern = re.compile(rf"(^|[{{,\s]){re.escape(key[-1])}\s*=")
            for number in range(start, len(self.lines) + 1):
                line = self.lines[number - 1]
                if number > start and line.lstrip().startswith("["):
                    break
                if pattern.search(line):
                    return number
            return start
        return None
