"""`python -m exporter` is `job-exporter`."""

from exporter.cli import main

main()
