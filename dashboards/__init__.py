"""job-exporter's monitoring mixin: one config shared by the Prometheus rules and the dashboards.

`python -m dashboards` regenerates `prometheus/rules/*.rules.yml` and `grafana/dashboards/*.json`
from this package; the generated files are committed, and a test checks they match.
"""
