"""The alternatives users would pick: a prometheus_client registry holding the same series,
and the plain Flask app that serves it (run as `python -m bench.baseline PORT FILE`)."""

from __future__ import annotations

import sys
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families


def equivalent_registry(exposition: str) -> CollectorRegistry:
    """Instrumented metrics (Gauge, Counter, Histogram) with the very series of `exposition`.

    `_created` samples are switched off so both sides render the same number of lines.
    """
    disable_created_metrics()
    registry = CollectorRegistry()
    for family in text_string_to_metric_families(exposition):
        if not family.samples:
            continue
        labelnames = sorted({k for s in family.samples for k in s.labels if k != "le"})
        if family.type == "gauge":
            metric = Gauge(family.name, family.documentation, labelnames, registry=registry)
            for sample in family.samples:
                _child(metric, labelnames, sample.labels).set(sample.value)
        elif family.type == "counter":
            metric = Counter(family.name, family.documentation, labelnames, registry=registry)
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    _child(metric, labelnames, sample.labels).inc(sample.value)
        elif family.type == "histogram":
            _histogram(family, labelnames, registry)
    return registry


def _child(metric, labelnames: list[str], labels: dict[str, str]):
    return metric.labels(*(labels[name] for name in labelnames)) if labelnames else metric


def _histogram(family, labelnames: list[str], registry: CollectorRegistry) -> None:
    buckets = sorted({float(s.labels["le"]) for s in family.samples if "le" in s.labels})
    metric = Histogram(
        family.name, family.documentation, labelnames, registry=registry, buckets=buckets
    )
    by_series: dict[tuple, list[tuple[float, float]]] = {}
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            key = tuple(sample.labels[name] for name in labelnames)
            by_series.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
    for key, points in by_series.items():
        child = metric.labels(*key)
        previous = 0.0
        for bound, cumulative in sorted(points):
            for _ in range(int(cumulative - previous)):
                child.observe(bound if bound != float("inf") else buckets[-2] + 1)
            previous = cumulative


def serve(port: int, exposition_file: Path) -> None:
    """A plain Flask + prometheus_client app on waitress, the way most exporters are built."""
    from flask import Flask, Response
    from waitress import serve as waitress_serve

    registry = equivalent_registry(exposition_file.read_text())
    app = Flask("baseline")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), content_type="text/plain; version=0.0.4")

    waitress_serve(app, host="127.0.0.1", port=port, threads=8, _quiet=True)


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
