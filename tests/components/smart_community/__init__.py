"""Tests of the Smart Community integration."""
