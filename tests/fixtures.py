"""Fixtures shared by the test modules (kept apart from conftest so they can be imported)."""
