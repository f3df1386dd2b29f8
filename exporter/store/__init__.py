"""Open a store from its URL: `sqlite:///path/file.db` or `postgresql://user@host:port/db`."""

from __future__ import annotations

from urllib.parse import urlsplit

from exporter.store.base import Prune, Snapshot, StaleIndex, Store, StoreError

__all__ = ["Prune", "Snapshot", "StaleIndex", "Store", "StoreError", "open_store"]


def open_store(url: str) -> Store:
    """The store a URL names; ValueError for a URL no store understands."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from exporter.store.sqlite import SqliteStore, sqlite_path

        return SqliteStore(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        from exporter.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(
        f"unsupported store URL {url!r}: expected sqlite:///path/file.db or "
        "postgresql://user@host:port/db"
    )
