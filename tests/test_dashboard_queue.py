"""The Queue view's management in real headless Chromium (issue 22): newest first, Cancel
and Delete per row, the bulk retry, each confirmation declined and accepted, and the
metrics each step moves, read over HTTP before and after."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.helpers.browser import Screens
from tests.helpers.served import Exporter

pytestmark = pytest.mark.slow
JOBS = "/api/v1/jobs"


def api(exporter: Exporter, path: str, body: dict | None = None) -> requests.Response:
    return requests.post(f"{exporter.url}{JOBS}{path}", json=body, timeout=5)


def create(exporter: Exporter, name: str, job_type: str = "REPORT") -> dict:
    response = api(exporter, "", {"type": job_type, "name": name, "maxAttempts": 1})
    assert response.status_code == 201
    return response.json()


def fail(exporter: Exporter, job: dict) -> None:
    leased = api(exporter, "/lease", {"worker": "w", "types": [job["type"]]}).json()
    assert leased["id"] == job["id"]
    api(exporter, f"/{job['id']}/fail", {"worker": "w", "error": "boom", "retryable": False})


def metric(exporter: Exporter, family: str, name: str, **labels: str) -> float:
    value = exporter.metrics().job(family, source="api", type="REPORT", job=name, **labels)
    return value or 0.0


def status_of(exporter: Exporter, job: dict) -> str | None:
    response = requests.get(f"{exporter.url}{JOBS}/{job['id']}", timeout=5)
    return response.json()["status"] if response.status_code == 200 else None


def open_queue(screens: Screens, exporter: Exporter, width: int = 1280) -> Page:
    page = screens.page(width=width)
    page.goto(f"{exporter.url}/#/jobs")
    expect(page.locator("table.jobs tbody tr").first).to_be_visible()
    return page


def test_the_queue_tab_lists_newest_first_and_switches_to_oldest(exporter, screens):
    jobs = [create(exporter, f"n{i}") for i in range(3)]
    page = open_queue(screens, exporter)
    expect(page.locator('nav a[data-view="jobs"]')).to_have_text("Queue")
    rows = page.locator("table.jobs tbody tr")
    expect(rows.first).to_have_attribute("data-job-id", jobs[-1]["id"])
    page.select_option('.filters select[name="order"]', "oldest")
    expect(rows.first).to_have_attribute("data-job-id", jobs[0]["id"])
    screens.shot(page, "oldest")


def test_cancel_from_the_page_moves_the_pending_gauge(exporter, screens):
    job = create(exporter, "to_cancel")
    assert metric(exporter, "background_jobs_pending", "to_cancel") == 1
    page = open_queue(screens, exporter)
    row = page.locator(f'tr[data-job-id="{job["id"]}"]')
    row.locator("button.cancel").click()
    expect(row.locator(".badge")).to_have_text("cancelled")
    assert status_of(exporter, job) == "cancelled"
    assert metric(exporter, "background_jobs_pending", "to_cancel") == 0
    assert metric(exporter, "background_jobs_cancelled_total", "to_cancel") == 1
    expect(row.locator("button.delete")).to_be_visible()
    screens.shot(page, "cancelled")
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    screens.shot(page, "cancelled-dark")


def test_delete_asks_first_and_a_declined_one_changes_nothing(exporter, screens):
    job = create(exporter, "to_delete")
    fail(exporter, job)
    before = metric(exporter, "background_jobs_finished_total", "to_delete", outcome="failed")
    page = open_queue(screens, exporter)
    row = page.locator(f'tr[data-job-id="{job["id"]}"]')
    row.locator("button.delete").click()
    dialog = page.locator("dialog.confirm-dialog")
    expect(dialog).to_contain_text("Delete failed job to_delete")
    screens.shot(page, "confirm-delete")
    page.keyboard.press("Escape")  # declined
    expect(dialog).to_have_count(0)
    assert status_of(exporter, job) == "failed"
    row.locator("button.delete").click()
    dialog.locator("button.keep").click()  # declined again, by its button
    assert status_of(exporter, job) == "failed"
    row.locator("button.delete").click()
    dialog.locator("button.confirm").click()
    expect(row).to_have_count(0)
    assert status_of(exporter, job) is None
    after = metric(exporter, "background_jobs_finished_total", "to_delete", outcome="failed")
    assert after == before == 1


def test_retry_all_failed_retries_the_filtered_jobs_and_says_how_many(exporter, screens):
    mine = [create(exporter, "nightly") for _ in range(3)]
    other = create(exporter, "weekly")
    for job in (*mine, other):
        fail(exporter, job)
    page = open_queue(screens, exporter)
    page.fill('.filters input[name="name"]', "nightly")
    page.click(".filters button[type=submit]")
    page.click("button.bulk-retry")
    dialog = page.locator("dialog.confirm-dialog")
    expect(dialog).to_contain_text("Retry every failed job of name nightly?")
    dialog.locator("button.keep").click()
    assert metric(exporter, "background_jobs_retries_total", "nightly", trigger="manual") == 0
    page.click("button.bulk-retry")
    page.keyboard.press("Tab")  # from Keep to the confirm button, by keyboard
    page.keyboard.press("Enter")
    expect(page.locator(".bulk-result")).to_have_text("Retried 3 jobs of name nightly.")
    screens.shot(page, "retried")
    assert [status_of(exporter, job) for job in mine] == ["pending"] * 3
    assert status_of(exporter, other) == "failed"
    assert metric(exporter, "background_jobs_retries_total", "nightly", trigger="manual") == 3
    assert metric(exporter, "background_jobs_pending", "nightly") == 3


def test_cancel_all_pending_at_phone_width(exporter, screens):
    jobs = [create(exporter, "bulk_cancel") for _ in range(2)]
    page = open_queue(screens, exporter, width=390)
    page.click("button.bulk-cancel")
    page.locator("dialog.confirm-dialog button.confirm").click()
    expect(page.locator(".bulk-result")).to_have_text("Cancelled 2 jobs.")
    assert [status_of(exporter, job) for job in jobs] == ["cancelled"] * 2
    assert metric(exporter, "background_jobs_cancelled_total", "bulk_cancel") == 2
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= 390, f"the page scrolls sideways: {wide} px wide"
    screens.shot(page, "phone")
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    screens.shot(page, "phone-dark")
