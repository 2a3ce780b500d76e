"""Tests of the mock grid (run with -p no:homeassistant)."""
