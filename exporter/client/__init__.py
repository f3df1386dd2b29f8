"""A small client for apps: report jobs, serve them for scraping, or run job-API workers.

Needs nothing beyond `requests` (and Flask for the endpoint helper, which an app serving
one already has):

    reporter = JobReporter("http://exporter:9188", source="billing")

    @reporter.track(type="TASK")
    def resize(image): ...

    with reporter.job("TASK", "nightly-report"):
        ...

    Worker("http://exporter:9188", handlers={"EMAIL": send_email}).run()
"""

from exporter.client.inprocess import InProcessJobs
from exporter.client.reporter import JobReporter
from exporter.client.worker import RetryableError, Worker

__all__ = ["InProcessJobs", "JobReporter", "RetryableError", "Worker"]
