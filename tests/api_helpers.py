"""Kept only for tests/test_api_store.py, whose imports someone else changes: import from
tests.helpers.data instead. Remove once nothing imports it."""

from tests.helpers.data import START_MS, FixedRandom

__all__ = ["START_MS", "FixedRandom"]
