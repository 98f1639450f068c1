"""Effects a stage declares; `IsolationPolicy.from_effects` turns them into a sandbox.

Every effect is a frozen attrs class. Effects without fields may be given as the
class itself (``Network``) or as an instance (``Network()``); `EffectSet`
normalizes both to instances.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

import attrs

from isolation.egress_rules import parse_rules
from isolation.errors import PolicyError


@attrs.frozen
class Pure:
    """No side effects at all."""

    name: ClassVar[str] = "pure"


@attrs.frozen
class Fallible:
    """May fail; no extra capability."""

    name: ClassVar[str] = "fallible"


@attrs.frozen
class Llm:
    """Calls a language model. Needs no sandbox capability by itself (declare `Network` too)."""

    model: str = ""
    name: ClassVar[str] = "llm"


@attrs.frozen
class NonDeterministic:
    """Output may differ between runs; no extra capability."""

    name: ClassVar[str] = "nondeterministic"


@attrs.frozen
class Process:
    """Spawns subprocesses (always allowed inside the sandbox)."""

    name: ClassVar[str] = "process"


@attrs.frozen
class Cost:
    """Spends money; bookkeeping only."""

    cents: int = 0
    name: ClassVar[str] = "cost"


def _allow_tuple(items: Iterable[str]) -> tuple[str, ...]:
    """Validated and canonical at construction: a typo fails where it is written."""
    return tuple(str(r) for r in parse_rules(items))


@attrs.frozen
class Network:
    """Needs the network.

    Bare (``Network`` or ``Network()``): the sandbox shares the host's network
    namespace. With ``allow=("pypi.org", "*.pythonhosted.org:443", ...)``: the
    sandbox keeps its own network namespace (no route out) and reaches only the
    listed destinations, through an egress proxy (docs/network.md).
    """

    allow: tuple[str, ...] = attrs.field(default=(), converter=_allow_tuple)
    name: ClassVar[str] = "network"


@attrs.frozen
class Unknown:
    """Effects unknown: gets the strict baseline, nothing more."""

    name: ClassVar[str] = "unknown"


@attrs.frozen
class FsRead:
    """Reads `path`: bound read-only at the same path inside the sandbox."""

    path: str
    name: ClassVar[str] = "fsread"


@attrs.frozen
class FsWrite:
    """Writes `path`: bound read-write at the same path inside the sandbox."""

    path: str
    name: ClassVar[str] = "fswrite"


Effect = Pure | Fallible | Llm | NonDeterministic | Process | Cost | Network | Unknown | FsRead | FsWrite

_UNIT_EFFECTS: dict[str, type] = {
    cls.name: cls for cls in (Pure, Fallible, Llm, NonDeterministic, Process, Cost, Network, Unknown)
}
_EFFECT_TYPES: tuple[type, ...] = (*_UNIT_EFFECTS.values(), FsRead, FsWrite)
UNIT_EFFECT_NAMES: tuple[str, ...] = tuple(_UNIT_EFFECTS)


def effect_from_name(name: str) -> Effect:
    """Parse a lower-case effect name as used by the CLI (``network``, ``pure``, ...)."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    cls = _UNIT_EFFECTS.get(key)
    if cls is None:
        known = ", ".join(UNIT_EFFECT_NAMES)
        raise PolicyError(f"unknown effect {name!r}; known effects: {known} (use --read/--write for paths)")
    effect: Effect = cls()
    return effect


def _normalize(item: object) -> Effect:
    if isinstance(item, type) and item in _UNIT_EFFECTS.values():
        effect: Effect = item()
        return effect
    if isinstance(item, _EFFECT_TYPES):
        return item  # type: ignore[return-value]
    if isinstance(item, str):
        return effect_from_name(item)
    raise PolicyError(f"not an effect: {item!r}")


@attrs.frozen
class EffectSet:
    """An immutable, hashable set of effects."""

    effects: frozenset[Effect] = attrs.field(factory=frozenset)

    @classmethod
    def of(cls, items: Iterable[object] = ()) -> EffectSet:
        return cls(frozenset(_normalize(i) for i in items))

    def __iter__(self) -> Iterator[Effect]:
        return iter(sorted(self.effects, key=repr))

    def __len__(self) -> int:
        return len(self.effects)

    def __contains__(self, item: object) -> bool:
        try:
            return _normalize(item) in self.effects
        except PolicyError:
            return False

    def union(self, other: Iterable[object]) -> EffectSet:
        return EffectSet(self.effects | EffectSet.of(other).effects)
