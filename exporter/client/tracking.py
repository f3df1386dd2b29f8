"""A job's start and finish as JobInfoBase events, from a decorator or a with-block.

Subclasses decide where events go (pushed to the exporter, or kept for a scrape). The app's
own exceptions pass through untouched: the with-block never catches them.
"""

from __future__ import annotations

import functools
import inspect
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

MAX_NAME = 200
MAX_TYPE = 100

F = TypeVar("F", bound=Callable[..., Any])


class JobTracking:
    """Base of the reporters: turns calls and blocks into start and finish events."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def emit(self, item: dict[str, Any]) -> None:
        """Deliver one JobInfoBase event; must return at once and never raise."""
        raise NotImplementedError

    def job(self, type: str, name: str, job_id: str | None = None) -> TrackedJob:
        """`with reporter.job("TASK", "resize"):` reports the block as one job."""
        return TrackedJob(
            self, _checked(type, MAX_TYPE, "type"), _checked(name, MAX_NAME, "name"), job_id
        )

    def track(self, type: str, name: str | None = None) -> Callable[[F], F]:
        """`@reporter.track(type="TASK")` reports every call; the name defaults to the
        function's qualified name."""
        _checked(type, MAX_TYPE, "type")
        if name is not None:
            _checked(name, MAX_NAME, "name")

        def decorate(func: F) -> F:
            job_name = name or f"{func.__module__}.{func.__qualname__}"[-MAX_NAME:]

            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    with self.job(type, job_name):
                        return await func(*args, **kwargs)

                return run_async  # type: ignore[return-value]

            @functools.wraps(func)
            def run(*args: Any, **kwargs: Any) -> Any:
                with self.job(type, job_name):
                    return func(*args, **kwargs)

            return run  # type: ignore[return-value]

        return decorate

    def now_ms(self) -> float:
        return round(self._clock() * 1000, 3)


class TrackedJob:
    """One run of a block: a start event on enter, a finish event on exit."""

    def __init__(self, tracking: JobTracking, type: str, name: str, job_id: str | None) -> None:
        self._tracking = tracking
        self.item: dict[str, Any] = {
            "id": job_id or uuid.uuid4().hex,
            "name": name,
            "backgroundJobType": type,
        }

    @property
    def id(self) -> str:
        return self.item["id"]

    def __enter__(self) -> TrackedJob:
        self.item.update(startTimestamp=self._tracking.now_ms(), isFinished=False, status="running")
        self._tracking.emit(dict(self.item))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        finish = max(self._tracking.now_ms(), self.item["startTimestamp"])
        self.item.update(
            isFinished=True,
            finishTimestamp=finish,
            status="failed" if exc_type is not None else "completed",
        )
        self._tracking.emit(dict(self.item))
        # Returning None lets the app's exception go on exactly as it was raised.


def _checked(value: str, limit: int, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ValueError(f"job {what} must be a string of 1 to {limit} characters: {value!r}")
    return value
