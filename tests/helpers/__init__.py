"""Helpers shared by the test modules, one module per kind; the fixtures are in tests/conftest.py.

- `data`: what the tests feed in: START_MS, TOKEN, `job()` items, FixedRandom.
- `metrics`: the one reader of /metrics pages: Metrics, `read_metrics()`.
- `waiting`: the one way to wait for a condition: `poll()`, `wait_until()`.
- `sources`: fake job sources over HTTP: Reply, JobSource, ChaosSource.
- `served`: the app served in-process over real HTTP: ServedApp, Exporter, LiveServer,
  `live_server()`, `sqlite_url()`.
- `processes`: real processes and tools: ExporterProcess, `free_port()`, `require_tool()`,
  `promtool_check_metrics()`, `resident_mb()`.
- `postgres`: a throwaway PostgreSQL cluster: PostgresCluster.
- `browser`: Debian's Chromium driven by Playwright: `chromium()`, Screens.
"""
