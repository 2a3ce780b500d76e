"""Targets: how objects address a community, a feeder, a transformer or a home.

OpenADR 3.1 targets are free strings. Ours name a place in the community's topology, so one
list can say "the whole community" or "transformer T3 only":
``community:<c>``, ``feeder:<c>/<f>``, ``transformer:<c>/<t>``, ``home:<c>/<h>``.
"""

from __future__ import annotations

from dataclasses import dataclass
import re

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class TargetError(ValueError):
    """An identifier cannot be part of a target."""


def _checked(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise TargetError(f"{kind} id {value!r} must be 1-64 letters, digits, '_' or '-'")
    return value


def community_target(community: str) -> str:
    """The target naming every home of a community."""
    return f"community:{_checked('community', community)}"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a home sits: community, feeder, transformer, home."""

    community: str
    feeder: str
    transformer: str
    home: str

    def __post_init__(self) -> None:
        """Reject identifiers that would not round-trip through a target string."""
        for kind in ("community", "feeder", "transformer", "home"):
            _checked(kind, getattr(self, kind))

    @property
    def targets(self) -> frozenset[str]:
        """Every target that addresses this home."""
        c = self.community
        return frozenset(
            {
                community_target(c),
                f"feeder:{c}/{self.feeder}",
                f"transformer:{c}/{self.transformer}",
                f"home:{c}/{self.home}",
            }
        )

    @property
    def home_target(self) -> str:
        """The target naming this home alone."""
        return f"home:{self.community}/{self.home}"


def addresses(targets: list[str] | None, audience: frozenset[str]) -> bool:
    """Whether an object's targets include the audience (an object without targets is for all)."""
    return not targets or not audience.isdisjoint(targets)


def within_community(target: str, community: str) -> bool:
    """Whether a target names the community or a place inside it."""
    if target == f"community:{community}":
        return True
    kind, _, rest = target.partition(":")
    return kind in {"feeder", "transformer", "home"} and rest.startswith(f"{community}/")
