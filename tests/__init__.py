"""Tests of Smart Community."""
