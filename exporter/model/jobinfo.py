"""The JobInfoBase input shape (docs/contract.md §1), declared once for fast typed decoding."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

MAX_ID_LENGTH = 200
MAX_NAME_LENGTH = 200
MAX_TYPE_LENGTH = 100
MAX_FUTURE_MS = 24 * 3600 * 1000  # startTimestamp may lie at most this far ahead of now
MAX_ERROR_LENGTH = 4000
# The largest run number a store column holds (PostgreSQL's INTEGER): beyond it a push met
# the database's "out of range" as a 503, where the field was wrong, not the store.
MAX_ATTEMPT = 2**31 - 1

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
JobType = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TYPE_LENGTH)]
EpochMillis = Annotated[float, msgspec.Meta(ge=0)]
Attempt = Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPT)]
ErrorText = Annotated[str, msgspec.Meta(max_length=MAX_ERROR_LENGTH)]
Status = Literal["pending", "running", "retrying", "completed", "failed"]
WAITING_STATUSES = frozenset({"pending", "retrying"})
FINISHED_STATUSES = frozenset({"completed", "failed"})


class JobInfo(msgspec.Struct, rename="camel", frozen=True, gc=False):
    """One job as an app reports it. Unknown fields are ignored; `isFinished` must be a bool."""

    id: Id
    name: Name
    start_timestamp: EpochMillis
    background_job_type: JobType
    is_finished: bool
    finish_timestamp: EpochMillis | None = None
    status: Status | None = None
    attempt: Attempt = 1
    enqueue_timestamp: EpochMillis | None = None
    error: ErrorText | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


# The wire names of the fields, for error messages and the `field` label.
FIELD_WIRE_NAMES = {
    "id": "id",
    "name": "name",
    "start_timestamp": "startTimestamp",
    "background_job_type": "backgroundJobType",
    "is_finished": "isFinished",
    "finish_timestamp": "finishTimestamp",
    "status": "status",
    "attempt": "attempt",
    "enqueue_timestamp": "enqueueTimestamp",
    "error": "error",
}
ITEM_FIELD = "item"  # the `field` label when an item is not an object at all
