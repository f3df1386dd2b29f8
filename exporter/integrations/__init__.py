"""Framework integrations: report Celery tasks and Dramatiq messages from where they run.

Each one turns its framework's hooks into JobInfoBase events (docs/contract.md §1, §6) and
hands them to `exporter.client.JobReporter`, one per process, so forked pool children report
too. The framework itself is imported only by the module that needs it:

    from exporter.integrations.celery import instrument
    from exporter.integrations.dramatiq import JobExporterMiddleware
"""
