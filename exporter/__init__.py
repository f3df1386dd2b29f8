"""job-exporter: Prometheus metrics, alerts and dashboards for an app's background jobs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("job-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
