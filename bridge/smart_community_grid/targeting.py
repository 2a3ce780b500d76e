"""Which targets the grid accepts, and whom a signed object is addressed to."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from smart_community_protocol import community_target, within_community

from .errors import BadRequest

TARGET_FORMS = "community:<c>, feeder:<c>/<f>, transformer:<c>/<t> or home:<c>/<h>"


def is_grid_target(target: str, communities: Collection[str]) -> bool:
    """Whether the target names one of the grid's communities or a place inside one."""
    return any(within_community(target, community) for community in communities)


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
