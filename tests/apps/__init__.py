"""Apps the integration tests run in real worker processes: a Celery app and a Dramatiq broker
with their tasks, each instrumented as a user would, plus the worker process helper."""
