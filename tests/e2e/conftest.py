"""End-to-end tests run Home Assistant with the custom integration enabled, against the real
mock grid and bridge (tests/e2e/stack.py)."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .stack import Stack, started_stack


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components.smart_community."""


@pytest.fixture
def bridge_settings() -> dict[str, Any]:
    """Bridge configuration on top of the stack's own; a test module may override it."""
    return {}


@pytest.fixture
def grid_settings() -> dict[str, Any]:
    """Scenario keys on top of the stack's own; a test module may override it."""
    return {}


@pytest.fixture
async def stack(
    socket_enabled: None,
    tmp_path: Path,
    bridge_settings: dict[str, Any],
    grid_settings: dict[str, Any],
) -> AsyncIterator[Stack]:
    """The three tiers' grid and bridge, started for one test."""
    async with started_stack(tmp_path, bridge_settings, grid_settings) as started:
        yield started
