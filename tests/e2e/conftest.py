"""End-to-end tests run Home Assistant with the custom integration enabled."""

import pytest


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components.smart_community."""
