"""The one reader of /metrics pages: samples looked up by name and labels."""

from __future__ import annotations

from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, frozenset[tuple[str, str]]]
PROCESS_PREFIXES = ("process_", "python_")


class Metrics:
    """One read of a /metrics page, with samples looked up by name and labels.

    `job()` reads one job family's sample. Its defaults belong to the reader: a page of a
    scraping exporter is read for source `app`, and a series that does not exist reads None
    (so a test can tell it is absent); a page of the job API (LiveServer) is read for source
    `api`, and an absent series reads 0, where its counters start.
    """

    def __init__(self, text: str, *, source: str = "app", missing: float | None = None) -> None:
        self.text = text
        self.source = source
        self.missing = missing
        self.samples: dict[Sample, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, metric: str, /, **labels: str) -> float | None:
        return self.samples.get((metric, frozenset(labels.items())))

    def job(
        self,
        metric: str,
        /,
        type: str = "TASK",
        job: str = "send_email",
        source: str | None = None,
        **labels: str,
    ) -> float | None:
        """A job family's sample by type, `job` (the name label) and source, given in that
        order or by keyword; the source defaults to the reader's."""
        found = self.value(
            metric, source=self.source if source is None else source, type=type, name=job, **labels
        )
        return self.missing if found is None else found

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def exporter_samples(self) -> dict[Sample, float]:
        """The samples without `process_*` and `python_*`, which change on every read."""
        return {
            key: value
            for key, value in self.samples.items()
            if not key[0].startswith(PROCESS_PREFIXES)
        }


def read_metrics(base_url: str) -> Metrics:
    """GET `base_url`/metrics (5 s timeout); an error status fails the test."""
    response = requests.get(f"{base_url}/metrics", timeout=5)
    response.raise_for_status()
    return Metrics(response.text)


def run_counts(metrics: Metrics, source: str, type: str, name: str) -> dict[str, float | None]:
    """What the integration tests check of one series, from one page: runs started and
    finished by outcome, retries, the histograms' counts and the two gauges."""

    def one(family: str, **labels: str) -> float | None:
        return metrics.value(family, source=source, type=type, name=name, **labels)

    finished = "background_jobs_finished_total"
    return {
        "started": one("background_jobs_started_total"),
        "completed": one(finished, outcome="completed"),
        "failed": one(finished, outcome="failed"),
        "lost": one(finished, outcome="lost"),
        "retries": one("background_jobs_retries_total", trigger="automatic"),
        "durations": one("background_jobs_duration_seconds_count"),
        "queue_waits": one("background_jobs_queue_wait_seconds_count"),
        "running": one("background_jobs_running"),
        "pending": one("background_jobs_pending"),
    }


def tracked_runs(base_url: str, source: str, job_id: str) -> list[dict[str, Any]]:
    """The job as `GET /api/v1/tracked` lists it: one entry, as its latest run left it."""
    answer = requests.get(
        f"{base_url}/api/v1/tracked",
        params={"source": source, "q": job_id, "limit": 500},
        timeout=5,
    )
    answer.raise_for_status()
    return [entry for entry in answer.json()["jobs"] if entry["id"] == job_id]
