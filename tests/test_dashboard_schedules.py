"""The dashboard's Schedules view in real headless Chromium, against an in-process exporter
whose clock the test moves: a schedule is listed with its timetable and next fire, paused,
resumed and run now from the page, and a fire made by the sweep shows as its last fire."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from tests.helpers.browser import Screens
from tests.helpers.served import Exporter

NOT_SET = "\u2013"  # what the page shows for a time not set yet (an en dash)

pytestmark = pytest.mark.slow


def create(exporter: Exporter, **body) -> dict:
    response = requests.post(f"{exporter.url}/api/v1/schedules", json=body, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()


def test_schedules_are_listed_paused_resumed_and_run_from_the_page(
    exporter: Exporter, screens: Screens
):
    nightly = create(
        exporter, type="REPORT", name="nightly_totals", cron="30 2 * * *", timezone="Europe/Berlin"
    )
    exporter.clock.advance(1)
    ticker = create(exporter, type="TASK", name="heartbeat", intervalSeconds=60)
    page = screens.page()
    page.goto(f"{exporter.url}/#/schedules")
    expect(page.locator('.tabs a[data-view="schedules"]')).to_have_attribute("aria-current", "page")
    rows = page.locator("table.schedules tbody tr")
    expect(rows).to_have_count(2)
    row = page.locator(f'tr[data-schedule-id="{nightly["id"]}"]')
    expect(row).to_contain_text("30 2 * * * (Europe/Berlin)")
    expect(row.locator(".badge")).to_have_text("active")
    expect(page.locator(f'tr[data-schedule-id="{ticker["id"]}"]')).to_contain_text("every 1 min")

    row.locator("button.pause").click()
    expect(row).to_have_attribute("data-state", "paused")
    expect(row.locator('[data-field="nextFireAt"]')).to_have_text(NOT_SET)
    expect(page.locator(".form-result")).to_have_text("Paused nightly_totals.")
    screens.shot(page, "paused")
    row.locator("button.resume").click()
    expect(row).to_have_attribute("data-state", "active")
    expect(page.locator(".form-result")).to_contain_text("Resumed nightly_totals: next fire")

    row.locator("button.run-now").click()
    expect(page.locator(".form-result")).to_contain_text("Created job")
    expect(row.locator('[data-field="fires"]')).to_have_text("0 / 0 / 0 / 1")
    jobs = requests.get(
        f"{exporter.url}/api/v1/jobs", params={"name": "nightly_totals"}, timeout=5
    ).json()["jobs"]
    assert len(jobs) == 1 and jobs[0]["status"] == "pending"

    ticker_row = page.locator(f'tr[data-schedule-id="{ticker["id"]}"]')
    expect(ticker_row.locator('[data-field="lastFireAt"]')).to_have_text(NOT_SET)
    exporter.clock.advance(60)
    assert exporter.runtime.schedules.sweep() == 1
    expect(ticker_row.locator('[data-field="lastFireAt"]')).not_to_have_text(NOT_SET)
    expect(ticker_row.locator('[data-field="fires"]')).to_have_text("1 / 0 / 0 / 0")
    screens.shot(page, "fired")


def test_a_refused_action_shows_why(exporter: Exporter, screens: Screens):
    schedule = create(exporter, type="TASK", name="cleanup", intervalSeconds=300)
    page = screens.page()
    page.goto(f"{exporter.url}/#/schedules")
    row = page.locator(f'tr[data-schedule-id="{schedule["id"]}"]')
    expect(row.locator("button.pause")).to_be_visible()
    # Someone else pauses it meanwhile: the page's Pause is now a 409, shown in place.
    requests.post(f"{exporter.url}/api/v1/schedules/{schedule['id']}/pause", timeout=5)
    row.locator("button.pause").click()
    expect(page.locator(".form-result")).to_contain_text("cleanup: schedule")
    expect(page.locator(".form-result")).to_contain_text("already paused")
    expect(row).to_have_attribute("data-state", "paused")
