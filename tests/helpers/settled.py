"""A SQLite store whose job rows are all settled after every write (schema step 11): the
tests of `store_url` then find, change and delete each job through the settled part of
`jobs_key`, where a running store keeps all but its newest rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from exporter.store.sqlite import SqliteDialect


def settle_after_every_write(monkeypatch: pytest.MonkeyPatch) -> None:
    write = SqliteDialect.write

    @contextmanager
    def write_then_settle(self: SqliteDialect) -> Iterator[object]:
        with write(self) as db:
            yield db
        if getattr(self, "_settling", False):  # the settler's own writes
            return
        self._settling = True  # type: ignore[attr-defined]
        try:
            with self.read() as reader:
                self.settler.run(reader, recent=0)
        finally:
            self._settling = False  # type: ignore[attr-defined]

    monkeypatch.setattr(SqliteDialect, "write", write_then_settle)
