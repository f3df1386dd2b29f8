"""What one database does its own way, for the one SQL store (sql.py) to call.

A dialect owns its connections and how a transaction opens and ends, the placeholder and
locking clauses its SQL needs, how it writes many rows at once, its schema steps, and what
tells a snapshot that something changed. Everything else is SQL both databases run, written
once in the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

from exporter.model.tracked import Plan
from exporter.store.base import Snapshot
from exporter.store.health import StoreFault
from exporter.store.tables import ADD_TO_COUNT, ADD_TO_TRACKED, JOB_COLUMNS


class Cursor(Protocol):
    """What the store reads of either driver's cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the store asks of either driver's connection, inside a transaction."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...


C = TypeVar("C", bound=Connection)


class Dialect(ABC, Generic[C]):
    """One database's ways, over its connections of type C."""

    placeholder: str  # a bound value in SQL text
    for_update: str  # appended to a SELECT of rows about to change: lock them till commit
    skip_locked: str  # ... or lock them and pass over rows another transaction holds
    max_in: int  # the most values one `in_clause` may bind
    # A read of one source's jobs along jobs_status (its open jobs, a batch of the prune):
    # the table as FROM names it, and the source as WHERE compares it. Not along the
    # primary key, which passes every job the source retains on the way.
    jobs_by_status: str
    source_by_status: str
    # What comes before `source = ? AND id = ?` to find one job by its key: in SQLite the
    # key is (settled, source, id) (schema step 11), and a job is in either part.
    by_key: str
    errors: tuple[type[Exception], ...]  # what the driver raises when the database fails
    where: str  # the database, for messages (no password)
    migrations: tuple[str, ...]  # the scripts of each schema step, in order

    def __init__(self) -> None:
        self.insert_job = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({self.marks(16)})"
        self.add_count = f"INSERT INTO counts VALUES ({self.marks(6)}){ADD_TO_COUNT}"
        self._add_tracked = f"INSERT INTO tracked_counts VALUES ({self.marks(2)}){ADD_TO_TRACKED}"

    def add_tracked(self, db: C, source: str, jobs: int) -> None:
        """Add `jobs` (negative: rows deleted) to the source's kept count of tracked jobs,
        in the transaction that inserted or deleted them."""
        if jobs:
            db.execute(self._add_tracked, (source, jobs))

    def marks(self, count: int) -> str:
        """`count` placeholders, comma-separated."""
        return ", ".join([self.placeholder] * count)

    # --- connections and transactions ----------------------------------------------------

    @abstractmethod
    def write(self) -> AbstractContextManager[C]:
        """A write transaction: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def read(self, consistent: bool = False) -> AbstractContextManager[C]:
        """A connection to read on; `consistent` when several statements must see one
        state of the database."""

    @abstractmethod
    def snapshot(self, cached: Snapshot | None) -> Snapshot:
        """`cached` while nothing was committed since it was read, else a fresh snapshot."""

    def fault_of(self, error: Exception) -> str:
        """The StoreFault word for one of `errors`."""
        return StoreFault.ERROR

    def start(self) -> None:
        """Called once the schema is current, before the store is used."""

    @abstractmethod
    def close(self) -> None: ...

    # --- schema --------------------------------------------------------------------------

    @abstractmethod
    def schema_version(self, db: C) -> int:
        """How many schema steps the database has taken (inside the migration's write)."""

    @abstractmethod
    def set_schema_version(self, db: C, version: int) -> None: ...

    @abstractmethod
    def run_script(self, db: C, script: str) -> None:
        """Run one schema step's statements."""

    # --- locks ---------------------------------------------------------------------------

    @abstractmethod
    def lock(self, db: C, key: int) -> None:
        """Hold `key` until the transaction ends, so one writer at a time runs what follows
        (migrating, counting schedules against their limit)."""

    @abstractmethod
    def lock_source(self, db: C, source: str) -> None:
        """Make sure the source's row can be locked by the `for_update` read that follows."""

    # --- writing and asking about many rows ----------------------------------------------

    @abstractmethod
    def insert_jobs(self, db: C, plan: Plan) -> None:
        """Insert every new row of `plan`."""

    @abstractmethod
    def add_counts(self, db: C, rows: list[tuple[Any, ...]]) -> None:
        """Add each (source, type, name, family, label, value) row to its count, in the
        order given."""

    @abstractmethod
    def execute_many(self, db: C, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    def delete_jobs(self, db: C, source: str, job_ids: list[str]) -> int:
        """Delete the source's jobs of `job_ids`; returns how many rows went."""

    @abstractmethod
    def in_clause(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` is one of `values` (at most `max_in`), and the values it binds."""

    @abstractmethod
    def insert_id(self, db: C, sql: str, values: Sequence[Any], key: str) -> int:
        """Run an INSERT and return the `key` the database numbered the new row with."""
