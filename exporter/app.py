"""The Flask app factory: wiring only (the tutorial's `create_app`, with a settings object)."""

from __future__ import annotations

import random

from flask import Flask

from exporter import web
from exporter.api import (
    auth,
    bodies,
    demo,
    durations,
    errors,
    jobs,
    metrics,
    off,
    openapi,
    origins,
    push,
    schedules,
    stats,
    tracked,
)
from exporter.clock import Clock
from exporter.config import Settings
from exporter.runtime.process import EXTENSION, Runtime
from exporter.store import Store


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    rng: random.Random | None = None,
) -> Flask:
    """An app serving the exporter's endpoints; call `runtime_of(app).start()` to scrape.

    `rng` is the job queue's source of backoff jitter (tests inject a fixed one).
    """
    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes  # larger bodies: 413
    runtime = app.extensions[EXTENSION] = Runtime(settings, clock=clock, store=store, rng=rng)
    errors.init_app(app)
    bodies.init_app(app)
    origins.init_app(app, settings.cors_origins)
    auth.init_app(app, settings)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(push.blueprint)
    app.register_blueprint(tracked.blueprint)
    if settings.job_api:
        app.register_blueprint(jobs.blueprint)
        app.register_blueprint(schedules.blueprint)
    else:
        app.register_blueprint(off.job_api_off())
    app.register_blueprint(openapi.blueprint)
    if settings.page:
        app.register_blueprint(stats.blueprint)
        app.register_blueprint(durations.blueprint)
        app.register_blueprint(web.blueprint)
    else:
        app.register_blueprint(off.page_off())
    if settings.mock_source:
        demo.init_app(app, runtime.clock)
    return app


def runtime_of(app: Flask) -> Runtime:
    return app.extensions[EXTENSION]
