"""Which targets the grid accepts, and whom a signed object is addressed to."""

from __future__ import annotations

from collections.abc import Collection, Sequence
import re

from smart_community_protocol import community_target, within_community

from .errors import BadRequest

TARGET_FORMS = "community:<c>, feeder:<c>/<f>, transformer:<c>/<t> or home:<c>/<h>"
# The identifiers a target may name (the protocol's Placement accepts the same).
_PLACE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_place_id(value: str) -> bool:
    """Whether a feeder, transformer or home id can be part of a target."""
    return _PLACE_ID.match(value) is not None


def transformer_target(community: str, transformer: str) -> str:
    """The target naming one transformer of a community."""
    return f"transformer:{community}/{transformer}"


def is_grid_target(target: str, communities: Collection[str]) -> bool:
    """Whether the target names one of the grid's communities or a place inside one."""
    return any(within_community(target, community) for community in communities)


def home_targets(targets: Sequence[str] | None) -> list[str]:
    """The targets among ``targets`` that name one home."""
    return [target for target in targets or () if target.startswith("home:")]


def check_targets(targets: Sequence[str] | None, communities: Collection[str]) -> None:
    """Refuse targets that address nobody on this grid (a typo would silently reach no one)."""
    for index, target in enumerate(targets or ()):
        if not is_grid_target(target, communities):
            raise BadRequest(
                f"targets[{index}]: '{target}' is not a target of this grid; use {TARGET_FORMS}"
                f" with <c> one of {', '.join(sorted(communities))}"
            )


def audience(targets: Sequence[str] | None, communities: Collection[str]) -> list[str]:
    """The signature audience: the object's targets, or every community when it has none."""
    if targets:
        return list(targets)
    return [community_target(community) for community in sorted(communities)]
