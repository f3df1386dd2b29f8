"""Kept only for bench/api.py, which imports PostgresCluster from here: import it from
tests.helpers.postgres instead. Remove once nothing imports it."""

from tests.helpers.postgres import PostgresCluster

__all__ = ["PostgresCluster"]
