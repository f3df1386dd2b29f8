"""The charts' percentiles, time ranges and top failing table in real headless Chromium,
against the demo on 127.0.0.1 (the session's one `demo` process). Screenshots land in
`test-artifacts/`, in both themes and at phone width."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.helpers.browser import Screens

pytestmark = pytest.mark.slow

DURATION_LINES = """(selector) => [...document.querySelectorAll(selector)].map(
    c => JSON.parse(c.dataset.lines || '{}'))"""


def wait_for_percentiles(page: Page, charts: int, timeout_ms: float = 60_000) -> list[dict]:
    """Wait until `charts` run time charts draw a p50, p95 and p99 line with values."""
    page.wait_for_function(
        f"""() => {{ const lines = ({DURATION_LINES})('[data-chart="duration"]');
            return lines.length >= {charts}
                && lines.every(l => l.p50 > 0 && l.p95 > 0 && l.p99 > 0); }}""",
        timeout=timeout_ms,
    )
    return page.evaluate(DURATION_LINES, '[data-chart="duration"]')


def spans(page: Page) -> set[int]:
    script = "[...document.querySelectorAll('[data-chart]')].map(c => Number(c.dataset.span))"
    return set(page.evaluate(script))


@pytest.mark.parametrize(("view", "charts"), [("summary", 1), ("types", 3), ("name", 1)])
def test_every_chart_view_draws_percentiles(demo, screens: Screens, view, charts):
    page = screens.page()
    page.goto(f"{demo.url}/#/{view}")
    wait_for_percentiles(page, charts)
    legend = page.locator('[data-chart="duration"] .u-legend').first.inner_text()
    assert "p50" in legend and "p95" in legend and "p99" in legend and "Mean" in legend
    screens.shot(page, "light")
    page.click("#theme-toggle")
    wait_for_percentiles(page, charts)
    screens.shot(page, "dark")


def test_choosing_a_range_changes_what_the_charts_span_and_request(demo, screens: Screens):
    page = screens.page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/stats/summary" in r.url else None)
    page.goto(f"{demo.url}/#/summary")
    page.wait_for_function("() => document.querySelector('[data-chart]')?.dataset.span === '3600'")
    assert "window=3600" in asked[-1]
    page.click('.ranges [data-range="24h"]')
    page.wait_for_function("() => document.querySelector('[data-chart]')?.dataset.span === '86400'")
    assert spans(page) == {86400}
    assert any("window=86400" in url for url in asked)
    expect(page.locator('[data-range="24h"]')).to_have_attribute("aria-pressed", "true")
    screens.shot(page, "24h")
    page.reload()  # kept with the settings
    expect(page.locator('[data-range="24h"]')).to_have_attribute("aria-pressed", "true")
    page.wait_for_function("() => document.querySelector('[data-chart]')?.dataset.span === '86400'")
    # Keyboard: focus the 15 min choice and press Enter; the focus ring is visible.
    page.focus('[data-range="15m"]')
    outline = page.evaluate(
        "getComputedStyle(document.querySelector('[data-range=\"15m\"]')).outlineStyle"
    )
    assert outline != "none"
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('[data-chart]')?.dataset.span === '900'")
    assert any("window=900" in url for url in asked)
    page.goto(f"{demo.url}/#/types")  # one choice for every chart view
    expect(page.locator('[data-range="15m"]')).to_have_attribute("aria-pressed", "true")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-chart]')].some(c => c.dataset.span === '900')"
    )


def test_top_failing_lists_a_failing_function_that_opens_by_name(demo, screens: Screens):
    page = screens.page()
    page.goto(f"{demo.url}/#/summary")
    first = page.locator("table.failing tbody tr a").first
    expect(first).to_be_visible(timeout=60_000)
    name = first.inner_text()
    row = page.locator("table.failing tbody tr").first
    assert int(row.locator(".failures").inner_text().replace(",", "")) > 0
    assert row.locator("td").nth(4).inner_text().endswith("%")
    screens.shot(page, "failing")
    first.click()
    expect(page.locator('.tabs a[data-view="name"]')).to_have_attribute("aria-current", "page")
    expect(page.locator(".name-title")).to_contain_text(name)
    assert "source=" in page.url and "type=" in page.url


def test_top_failing_shows_its_empty_loading_and_error_states(demo, screens: Screens):
    page = screens.page()
    page.route(
        "**/api/v1/stats/failing*",
        lambda route: route.fulfill(
            status=200,
            content_type="application/json",
            body=json.dumps({"window": 3600, "step": 30, "failing": [], "untracked": 0}),
        ),
    )
    page.goto(f"{demo.url}/#/summary")
    expect(page.locator('[data-panel="failing"] .empty-note')).to_have_text(
        "No job failed in the last hour."
    )
    expect(page.locator("table.failing")).to_be_hidden()
    page.unroute("**/api/v1/stats/failing*")
    page.route(
        "**/api/v1/stats/failing*",
        lambda route: route.fulfill(
            status=400,
            content_type="application/json",
            body=json.dumps({"error": "invalid window", "errors": [{"field": "window"}]}),
        ),
    )
    error = page.locator('[data-panel="failing"] .request-state[data-state="error"]')
    expect(error).to_contain_text("invalid window", timeout=10_000)
    expect(page.locator('[data-panel="failing"] .empty-note')).to_be_hidden()
    screens.shot(page, "error")


def test_the_new_parts_fit_a_phone_in_both_themes(demo, screens: Screens):
    page = screens.page(width=390, height=844)
    for view, charts in (("summary", 1), ("types", 3), ("name", 1)):
        page.goto(f"{demo.url}/#/{view}")
        wait_for_percentiles(page, charts)
        if view == "summary":
            expect(page.locator("table.failing tbody tr").first).to_be_visible(timeout=60_000)
        for theme in ("light", "dark"):
            page.evaluate(
                "(t) => { const key = 'job-exporter.settings';"
                " const s = JSON.parse(localStorage.getItem(key));"
                " localStorage.setItem(key, JSON.stringify({...s, theme: t})); }",
                theme,
            )
            page.reload()
            wait_for_percentiles(page, charts)
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 390, f"{view} ({theme}) is {wide} px wide"
            screens.shot(page, f"{view}-{theme}")
