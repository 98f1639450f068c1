"""`IsolationPolicy`: what a sandbox may see and do, derived from effects or loaded from JSON."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any

import attrs

from isolation.effects import EffectSet, FsRead, FsWrite, Network
from isolation.errors import PolicyError
from isolation.limits import Limits
from isolation.paths import (
    check_host_source,
    check_no_kernel_fs,
    check_sandbox_target,
    is_within,
    normalize_path,
    read_mounts,
)
from isolation.seccomp_profile import normalize_choice as _normalize_seccomp

SCHEMA_VERSION = 1

# Variables passed from the caller when set. Everything else is dropped:
# the caller's environment is where secrets (tokens, keys) live.
DEFAULT_ENV_ALLOWLIST: tuple[str, ...] = ("LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ")

# `seccomp`: "default", "none" (only with unsafe_no_seccomp=True) or named
# extensions joined by "+" (isolation.seccomp_profile.EXTENSIONS).
SECCOMP_CHOICES_BUILTIN: tuple[str, ...] = ("default", "none")


@attrs.frozen
class Bind:
    """A host path made visible at `sandbox` inside the sandbox."""

    host: str
    sandbox: str

    @classmethod
    def same(cls, path: str) -> Bind:
        return cls(path, path)


def _env_name(name: object) -> str:
    if not isinstance(name, str) or not name or "=" in name or "\x00" in name:
        raise PolicyError(f"env_allowlist: invalid variable name {name!r}")
    return name


def _bind_tuple(items: Iterable[Bind]) -> tuple[Bind, ...]:
    return tuple(items)


def _str_tuple(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(items)


@attrs.frozen(cache_hash=True)  # used as a cache key on every run
class IsolationPolicy:
    """What the sandbox sees. Construct with `from_effects`, `from_json` or directly.

    Every path is validated when the policy is built; whether host paths exist
    is checked by `check_host_paths` just before a run (a policy may be written
    on one machine and used on another).
    """

    ro_binds: tuple[Bind, ...] = attrs.field(default=(), converter=_bind_tuple)
    rw_binds: tuple[Bind, ...] = attrs.field(default=(), converter=_bind_tuple)
    work_host: str | None = None
    network: bool = False
    env_allowlist: tuple[str, ...] = attrs.field(default=DEFAULT_ENV_ALLOWLIST, converter=_str_tuple)
    seccomp: str = "default"
    unsafe_no_seccomp: bool = False
    limits: Limits = attrs.field(factory=Limits)

    def __attrs_post_init__(self) -> None:
        for field_name in ("ro_binds", "rw_binds"):
            binds = getattr(self, field_name)
            clean = []
            for b in binds:
                if not isinstance(b, Bind):
                    raise PolicyError(f"{field_name}: expected Bind, got {b!r}")
                host = normalize_path(b.host, what=f"{field_name} host")
                target = normalize_path(b.sandbox, what=f"{field_name} sandbox")
                check_host_source(host, what=field_name)
                check_sandbox_target(target, what=field_name)
                clean.append(Bind(host, target))
            object.__setattr__(self, field_name, tuple(dict.fromkeys(clean)))
        if self.work_host is not None:
            object.__setattr__(self, "work_host", normalize_path(self.work_host, what="work_host"))
            check_host_source(self.work_host, what="work_host")
        if not isinstance(self.network, bool):
            raise PolicyError(f"network: expected true or false, got {self.network!r}")
        object.__setattr__(self, "env_allowlist", tuple(dict.fromkeys(_env_name(n) for n in self.env_allowlist)))
        self._check_seccomp()
        if not isinstance(self.limits, Limits):
            raise PolicyError(f"limits: expected Limits, got {self.limits!r}")
        targets: dict[str, str] = {}
        for b in (*self.rw_binds, *self.ro_binds):
            if targets.get(b.sandbox, b.host) != b.host:
                raise PolicyError(f"two different host paths are bound at {b.sandbox}")
            targets[b.sandbox] = b.host

    def _check_seccomp(self) -> None:
        """Normalize the profile choice; turning the filter off must be spelled out twice."""
        if not isinstance(self.seccomp, str) or not self.seccomp:
            raise PolicyError(f"seccomp: expected a profile name, got {self.seccomp!r}")
        if not isinstance(self.unsafe_no_seccomp, bool):
            raise PolicyError(f"unsafe_no_seccomp: expected true or false, got {self.unsafe_no_seccomp!r}")
        try:
            object.__setattr__(self, "seccomp", _normalize_seccomp(self.seccomp))
        except ValueError as exc:
            raise PolicyError(f"seccomp: {exc}") from None
        if self.seccomp == "none" and not self.unsafe_no_seccomp:
            raise PolicyError("seccomp 'none' turns the syscall filter off; it needs unsafe_no_seccomp=True as well")
        if self.unsafe_no_seccomp and self.seccomp != "none":
            raise PolicyError(f"unsafe_no_seccomp=True only goes with seccomp 'none', not {self.seccomp!r}")

    # -- construction -----------------------------------------------------

    @classmethod
    def from_effects(
        cls, effects: Iterable[object], *, env_allowlist: Iterable[str] | None = None, work_host: str | None = None
    ) -> IsolationPolicy:
        """Derive the sandbox from declared effects.

        `Network` shares the host network; `FsRead(p)` binds `p` read-only and
        `FsWrite(p)` read-write at the same path. Every other effect leaves the
        strict baseline: no network, no host paths beyond the system view.
        No effect relaxes the syscall filter: every derived policy gets the
        ``default`` seccomp profile (extensions are chosen explicitly with
        ``evolve(seccomp=...)``; docs/seccomp.md has the mapping).
        """
        es = effects if isinstance(effects, EffectSet) else EffectSet.of(effects)
        ro = [Bind.same(e.path) for e in es if isinstance(e, FsRead)]
        rw = [Bind.same(e.path) for e in es if isinstance(e, FsWrite)]
        allow = DEFAULT_ENV_ALLOWLIST if env_allowlist is None else (*DEFAULT_ENV_ALLOWLIST, *env_allowlist)
        return cls(ro_binds=ro, rw_binds=rw, network=Network() in es.effects, env_allowlist=allow, work_host=work_host)

    def evolve(self, **changes: Any) -> IsolationPolicy:
        return attrs.evolve(self, **changes)

    def with_read(self, *paths: str) -> IsolationPolicy:
        return self.evolve(ro_binds=(*self.ro_binds, *(Bind.same(p) for p in paths)))

    def with_write(self, *paths: str) -> IsolationPolicy:
        return self.evolve(rw_binds=(*self.rw_binds, *(Bind.same(p) for p in paths)))

    def with_python(self) -> IsolationPolicy:
        """Expose the running Python (its prefixes) read-only, so `sys.executable` can run inside."""
        return self.with_read(*python_paths())

    # -- checks -----------------------------------------------------------

    def check_host_paths(self) -> None:
        """Raise PolicyError naming the first host path that does not exist, or that is
        (or holds a submount of) a kernel file system such as proc or sysfs.

        Run before every run, since mounts change: /proc/self/mountinfo is read once
        per check, and only when the policy binds anything.
        """
        for b in self.ro_binds:
            if not os.path.exists(b.host):
                raise PolicyError(f"read-only bind source {b.host} does not exist")
        for b in self.rw_binds:
            if not os.path.exists(b.host):
                raise PolicyError(f"writable bind source {b.host} does not exist (create it first)")
        if self.work_host is not None and not os.path.isdir(self.work_host):
            raise PolicyError(f"work directory {self.work_host} does not exist or is not a directory")
        sources = [("ro_binds", b.host) for b in self.ro_binds] + [("rw_binds", b.host) for b in self.rw_binds]
        if self.work_host is not None:
            sources.append(("work_host", self.work_host))
        if sources:
            check_no_kernel_fs(sources, read_mounts())

    # -- JSON -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "ro_binds": [{"host": b.host, "sandbox": b.sandbox} for b in self.ro_binds],
            "rw_binds": [{"host": b.host, "sandbox": b.sandbox} for b in self.rw_binds],
            "work_host": self.work_host,
            "network": self.network,
            "env_allowlist": list(self.env_allowlist),
            "seccomp": self.seccomp,
            **({"unsafe_no_seccomp": True} if self.unsafe_no_seccomp else {}),
            "limits": self.limits.to_dict(),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: object) -> IsolationPolicy:
        if not isinstance(data, dict):
            raise PolicyError(f"policy: expected a JSON object, got {type(data).__name__}")
        known = {"schema", "ro_binds", "rw_binds", "work_host", "network", "env_allowlist", "seccomp"}
        known |= {"unsafe_no_seccomp", "limits"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyError(f"policy: unknown field(s) {', '.join(unknown)}")
        if data.get("schema") != SCHEMA_VERSION:
            raise PolicyError(f"policy: unsupported schema {data.get('schema')!r}; this version reads {SCHEMA_VERSION}")
        kwargs: dict[str, Any] = {}
        for key in ("ro_binds", "rw_binds"):
            raw = data.get(key, [])
            if not isinstance(raw, list):
                raise PolicyError(f"policy: {key} must be a list")
            binds = []
            for item in raw:
                if not isinstance(item, dict) or set(item) != {"host", "sandbox"}:
                    raise PolicyError(
                        f'policy: each entry of {key} must be {{"host": ..., "sandbox": ...}}, got {item!r}'
                    )
                binds.append(Bind(item["host"], item["sandbox"]))
            kwargs[key] = binds
        if "work_host" in data:
            kwargs["work_host"] = data["work_host"]
        if "network" in data:
            kwargs["network"] = data["network"]
        if "env_allowlist" in data:
            if not isinstance(data["env_allowlist"], list):
                raise PolicyError("policy: env_allowlist must be a list of names")
            kwargs["env_allowlist"] = data["env_allowlist"]
        if "seccomp" in data:
            kwargs["seccomp"] = data["seccomp"]
        if "unsafe_no_seccomp" in data:
            kwargs["unsafe_no_seccomp"] = data["unsafe_no_seccomp"]
        if "limits" in data:
            kwargs["limits"] = Limits.from_dict(data["limits"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> IsolationPolicy:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PolicyError(f"policy: malformed JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str) -> IsolationPolicy:
        try:
            with open(path, "rb") as f:
                return cls.from_json(f.read())
        except OSError as exc:
            raise PolicyError(f"policy file {path}: {exc.strerror}") from None


def python_paths() -> tuple[str, ...]:
    """Host directories that hold the running interpreter and what it needs: its
    prefixes (the standard library; a venv's pyvenv.cfg and packages), the directory
    of its executable, and the directory of the libpython it has loaded (a shared
    build may keep it apart, e.g. LD_LIBRARY_PATH or an rpath). The system view
    covers /usr; the rest is what `with_python()` binds, so `sys.version`,
    `sys.prefix` and the packages inside are the caller's."""
    candidates = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix]
    candidates.append(os.path.dirname(os.path.realpath(sys.executable)))
    candidates += [os.path.dirname(p) for p in _loaded_libpython()]
    paths: list[str] = []
    for p in candidates:
        p = os.path.realpath(p)
        if not p or is_within(p, "/usr") or any(is_within(p, q) for q in paths):
            continue
        paths = [q for q in paths if not is_within(q, p)] + [p]
    return tuple(paths)


def _loaded_libpython() -> list[str]:
    """Host paths of the libpython shared objects mapped into this process (none for a static build)."""
    found: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                path = fields[5].strip() if len(fields) == 6 else ""
                if path.startswith("/") and os.path.basename(path).startswith("libpython") and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found


STRICT = IsolationPolicy()
