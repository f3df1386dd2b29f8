"""The built-in dashboard in real headless Chromium, against the demo on 127.0.0.1.

One demo process (the `demo` fixture of tests/browser.py) serves every browser test; each test
opens its own browser context. Screenshots land in `test-artifacts/`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.helpers.browser import Screens

pytestmark = pytest.mark.slow

# Each chart is keyed by its panel (a job type on the By type view) and its kind, so two
# reads compare the same charts even when a panel for a newly seen type appears in between.
CHART_STATE = """() => [...document.querySelectorAll('[data-chart]')].map(c => ({
    key: (c.closest('[data-panel]')?.dataset.type || '') + '/' + c.dataset.chart,
    chart: c.dataset.chart, points: Number(c.dataset.points || 0),
    lastT: Number(c.dataset.lastT || 0), values: Number(c.dataset.values || 0)}))"""


def charts_with_data(page: Page, at_least: int, timeout_ms: float = 30_000) -> list[dict]:
    """Wait until `at_least` charts show points and every chart has a non-empty line."""
    page.wait_for_function(
        f"""() => {{ const charts = ({CHART_STATE})();
            return charts.length >= {at_least}
                && charts.every(c => c.points > 0 && c.values > 0); }}""",
        timeout=timeout_ms,
    )
    return page.evaluate(CHART_STATE)


def wait_for_movement(page: Page, before: list[dict], timeout_ms: float = 30_000) -> list[dict]:
    """Wait until every chart read in `before` shows a newer last point."""
    page.wait_for_function(
        f"""(before) => {{ const now = new Map(({CHART_STATE})().map(c => [c.key, c.lastT]));
            return before.every(chart => now.get(chart.key) > chart.lastT); }}""",
        arg=before,
        timeout=timeout_ms,
    )
    return page.evaluate(CHART_STATE)


@pytest.mark.parametrize(
    ("view", "charts"),
    [("summary", 3), ("types", 9), ("name", 3)],  # the demo has HTTP, TASK and CRON jobs
)
def test_each_view_draws_charts_with_data_that_move(demo, screens: Screens, view, charts):
    page = screens.page()
    page.goto(f"{demo.url}/#/{view}")
    expect(page.locator(f'.tabs a[data-view="{view}"]')).to_have_attribute("aria-current", "page")
    # The name view's history is sampled every 30 s: its rates need two samples.
    first = charts_with_data(page, charts, timeout_ms=60_000)
    assert {chart["chart"] for chart in first} == {"running", "throughput", "duration"}
    assert all(chart["points"] >= 2 or view == "name" for chart in first)
    screens.shot(page, "first")
    second = wait_for_movement(page, first)
    later = {chart["key"]: chart["lastT"] for chart in second}
    assert all(later[chart["key"]] > chart["lastT"] for chart in first)
    screens.shot(page, "moved")
    if view == "summary":
        started = page.locator('[data-tile="started"] strong').inner_text()
        assert int(started.replace(",", "")) > 0
    if view == "types":
        badges = page.locator(".type-badge").all_inner_texts()
        assert {"HTTP", "TASK", "CRON"} <= set(badges)
    if view == "name":
        assert "name=" in page.url  # the chosen function is in the address
        title = page.locator(".name-title").inner_text()
        page.reload()
        expect(page.locator(".name-title")).to_have_text(title)


def test_the_name_view_switches_function_from_the_picker(demo, screens: Screens):
    page = screens.page()
    page.goto(f"{demo.url}/#/name")
    charts_with_data(page, 3, timeout_ms=60_000)
    page.fill('input[type="search"]', "backup")
    expect(page.locator("select option")).to_have_count(1)
    page.select_option("select", index=0)
    expect(page.locator(".name-title")).to_contain_text("nightly_backup")
    assert "nightly_backup" in page.url


def background(page: Page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_the_theme_switch_applies_and_is_remembered(demo, screens: Screens):
    page = screens.page()
    page.goto(f"{demo.url}/#/summary")
    charts_with_data(page, 3)
    start = page.evaluate("document.documentElement.dataset.theme")
    light_background = background(page)
    screens.shot(page, start)
    page.click("#theme-toggle")
    other = "dark" if start == "light" else "light"
    expect(page.locator("html")).to_have_attribute("data-theme", other)
    assert background(page) != light_background
    charts_with_data(page, 3)  # the charts were rebuilt in the new colours, data intact
    screens.shot(page, other)
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", other)
    saved = page.evaluate("JSON.parse(localStorage.getItem('job-exporter.settings'))")
    assert saved["theme"] == other


def test_settings_are_checked_and_kept_in_the_browser(demo, screens: Screens):
    page = screens.page()
    page.goto(f"{demo.url}/#/summary")
    charts_with_data(page, 3)
    page.click("#settings-open")
    page.fill('input[name="pollSeconds"]', "0")
    page.click("#settings-save")
    expect(page.locator("#settings-error")).to_have_text(
        "Polling interval must be a whole number from 1 to 300."
    )
    page.fill('input[name="pollSeconds"]', "2")
    page.fill('input[name="maxPoints"]', "20")
    page.check('input[name="theme"][value="dark"]')
    page.click("#settings-save")
    expect(page.locator("#settings")).not_to_be_visible()
    page.reload()
    saved = page.evaluate("JSON.parse(localStorage.getItem('job-exporter.settings'))")
    assert saved == {
        "pollSeconds": 2,
        "maxPoints": 20,
        "slowMinutes": 60,
        "theme": "dark",
        "range": "1h",
    }
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    charts = charts_with_data(page, 3)
    assert all(chart["points"] <= 20 for chart in charts)


def test_a_phone_sized_screen_shows_everything_without_sideways_scrolling(demo, screens):
    page = screens.page(width=390, height=844)
    for view, charts in (("summary", 3), ("types", 9), ("name", 3)):
        page.goto(f"{demo.url}/#/{view}")
        charts_with_data(page, charts, timeout_ms=60_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        widths = page.evaluate(
            "[...document.querySelectorAll('.uplot')].map(e => e.getBoundingClientRect().right)"
        )
        assert widths and max(widths) <= 390
        for tab in page.locator(".tabs a").all():
            assert tab.is_visible()
        # Every tab whole on screen: none cut off at the edge of a bar that scrolls.
        rights = page.evaluate(
            "[...document.querySelectorAll('.tabs a')].map(e => e.getBoundingClientRect().right)"
        )
        assert len(rights) == 6 and max(rights) <= 390, rights
        screens.shot(page, view)
    page.click("#theme-toggle")
    screens.shot(page, "name-other-theme")
    page.goto(f"{demo.url}/#/jobs")
    expect(page.locator("table.jobs tbody tr").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator("table.jobs tbody tr").first.click()
    expect(page.locator('[data-panel="details"]')).to_have_attribute("data-job-id", re.compile("."))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screens.shot(page, "jobs")


def test_a_failing_request_shows_its_error_and_recovers(demo, screens: Screens):
    page = screens.page()
    failing = {"on": True}

    def answer(route):
        if failing["on"]:
            route.fulfill(status=503, json={"error": "store unavailable: locked", "errors": []})
        else:
            route.continue_()

    page.route("**/api/v1/stats/summary*", answer)
    page.goto(f"{demo.url}/#/summary")
    state = page.locator('.request-state[data-state="error"]')
    expect(state).to_contain_text("Could not load the summary: store unavailable: locked")
    screens.shot(page, "error")
    failing["on"] = False
    state.get_by_role("button", name="Try again").click()
    expect(page.locator('.request-state[data-state="error"]')).to_have_count(0)
    charts_with_data(page, 3)


def test_a_slow_request_shows_loading(demo, screens: Screens):
    page = screens.page()
    held = []

    def hold_the_first(route):
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/v1/stats/types*", hold_the_first)
    page.goto(f"{demo.url}/#/types")
    loading = page.locator('.request-state[data-state="loading"]')
    expect(loading).to_contain_text("Loading the job types")
    screens.shot(page, "loading")
    held[0].continue_()
    charts_with_data(page, 9)
    expect(loading).to_have_count(0)


def test_the_page_talks_only_to_its_own_exporter(demo, screens: Screens):
    page = screens.page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    for view, charts in (("summary", 3), ("types", 9), ("name", 3)):
        page.goto(f"{demo.url}/#/{view}")
        charts_with_data(page, charts, timeout_ms=60_000)
    page.goto(f"{demo.url}/#/jobs")
    expect(page.locator("table.jobs tbody tr").first).to_be_visible()
    path = screens.shot(page, "jobs")
    assert Path(path).stat().st_size > 10_000
    assert urls and all(url.startswith(f"{demo.url}/") for url in urls)
    paths = {url[len(demo.url) :].split("?")[0] for url in urls}
    assert all(p == "/" or p.startswith(("/ui/", "/api/v1/")) for p in paths), paths
