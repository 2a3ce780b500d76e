"""Fixtures of the whole test suite."""

# Imported before Home Assistant's test plugin puts its own testing configuration directory,
# which has a "custom_components" package of its own, on sys.path.
import custom_components.smart_community  # noqa: F401
