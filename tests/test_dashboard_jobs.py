"""The dashboard's Jobs view in real headless Chromium.

Against the demo: a job created from the form is run by the demo workers, and a payload
that is not JSON is refused before anything is sent. Against an in-process exporter where
the test itself is the only worker (so nothing races it): a job is leased, failed and
retried, each step seen in the page.
"""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.helpers.browser import Screens
from tests.helpers.served import Exporter

pytestmark = pytest.mark.slow


def fill_form(page: Page, type: str, name: str, payload: str, max_attempts: str = "") -> None:
    page.fill('.create-form input[name="type"]', type)
    page.fill('.create-form input[name="name"]', name)
    page.fill('.create-form textarea[name="payload"]', payload)
    page.fill('.create-form input[name="maxAttempts"]', max_attempts)


def test_a_payload_that_is_not_json_is_refused_before_sending(demo, screens: Screens):
    page = screens.page()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(f"{demo.url}/#/jobs")
    expect(page.locator("table.jobs tbody tr").first).to_be_visible()
    fill_form(page, "TASK", "send_invoice", '{"to": "ada@example.org",}')
    expect(page.locator("#create-payload-error")).to_contain_text("Payload is not valid JSON")
    page.click("text=Create job")
    expect(page.locator(".form-result")).to_have_text(
        "Nothing was sent: fix the fields marked above."
    )
    fill_form(page, "", "send_invoice", "[1, 2]", max_attempts="0")
    page.click("text=Create job")
    expect(page.locator("#create-type-error")).to_have_text("Type is required.")
    expect(page.locator("#create-maxAttempts-error")).to_contain_text("whole number")
    screens.shot(page, "refused")
    assert posts == []


def test_a_job_created_from_the_form_is_run_by_the_demo_workers(demo, screens):
    page = screens.page()
    page.goto(f"{demo.url}/#/jobs")
    fill_form(page, "EXPORT", "build_csv", '{"rows": [1, 2, 3], "to": "ada@example.org"}')
    page.click("text=Create job")
    result = page.locator(".form-result")
    expect(result).to_contain_text("Created job")
    job_id = result.get_attribute("data-job-id")
    details = page.locator('[data-panel="details"]')
    expect(details).to_have_attribute("data-job-id", job_id)
    expect(details.locator('[data-field="payload"]')).to_contain_text('"ada@example.org"')
    # A demo worker leases it within a second or two, then completes or fails it.
    expect(details).not_to_have_attribute("data-status", "pending", timeout=20_000)
    expect(details).to_contain_text("demo-worker-")
    screens.shot(page, "running")
    expect(details).to_have_attribute(
        "data-status", re.compile("completed|failed|pending"), timeout=20_000
    )
    job = requests.get(f"{demo.url}/api/v1/jobs/{job_id}", timeout=5).json()
    assert job["attempts"] >= 1 and job["startedAt"] is not None
    screens.shot(page, "ran")


def api(exporter: Exporter, path: str, body: dict | None = None) -> requests.Response:
    return requests.post(f"{exporter.url}/api/v1/jobs{path}", json=body, timeout=5)


def test_a_failed_job_is_retried_from_the_page(exporter: Exporter, screens: Screens):
    page = screens.page()
    page.goto(f"{exporter.url}/#/jobs")
    fill_form(page, "REPORT", "monthly_totals", '{"month": "2026-10"}', max_attempts="1")
    page.click("text=Create job")
    expect(page.locator(".form-result")).to_contain_text("(pending)")
    job_id = page.locator(".form-result").get_attribute("data-job-id")
    details = page.locator('[data-panel="details"]')
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row.locator(".badge")).to_have_text("pending")

    leased = api(exporter, "/lease", {"worker": "test-worker", "types": ["REPORT"]})
    assert leased.status_code == 200 and leased.json()["id"] == job_id
    expect(details).to_have_attribute("data-status", "running")
    expect(details).to_contain_text("test-worker")
    expect(row.locator(".badge")).to_have_text("running")

    failed = api(
        exporter,
        f"/{job_id}/fail",
        {"worker": "test-worker", "error": "disk full", "retryable": False},
    )
    assert failed.status_code == 200 and failed.json()["status"] == "failed"
    expect(details).to_have_attribute("data-status", "failed")
    expect(details.locator('[data-field="lastError"]')).to_have_text("disk full")
    page.select_option('.filters select[name="status"]', "failed")
    page.click(".filters button")
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    expect(row.locator("button.retry")).to_be_visible()
    screens.shot(page, "failed")

    row.locator("button.retry").click()
    expect(details).to_have_attribute("data-status", "pending")
    expect(details).to_contain_text("Retry scheduled: now pending.")
    expect(page.locator("table.jobs tbody tr")).to_have_count(0)  # no longer failed
    screens.shot(page, "retried")
    job = requests.get(f"{exporter.url}/api/v1/jobs/{job_id}", timeout=5).json()
    assert job["status"] == "pending" and job["lastError"] == "disk full"
    retries = exporter.metrics().job(
        "background_jobs_retries_total",
        source="api",
        type="REPORT",
        job="monthly_totals",
        trigger="manual",
    )
    assert retries == 1


def test_a_refused_retry_shows_why(exporter: Exporter, screens: Screens):
    created = api(exporter, "", {"type": "REPORT", "name": "weekly", "maxAttempts": 1}).json()
    api(exporter, "/lease", {"worker": "w", "types": ["REPORT"]})
    api(exporter, f"/{created['id']}/fail", {"worker": "w", "error": "boom", "retryable": False})
    page = screens.page()
    page.goto(f"{exporter.url}/#/jobs")
    row = page.locator(f'tr[data-job-id="{created["id"]}"]')
    expect(row.locator("button.retry")).to_be_visible()
    row.click()
    expect(page.locator('[data-panel="details"]')).to_have_attribute("data-status", "failed")
    api(exporter, f"/{created['id']}/retry")  # someone else retried it meanwhile: now a 409
    page.locator('[data-panel="details"] button.retry').click()
    expect(page.locator('[data-panel="details"] .form-result')).to_contain_text("Retry failed:")
    expect(page.locator('[data-panel="details"]')).to_have_attribute("data-status", "pending")


def test_an_exporter_with_an_api_token_takes_it_from_the_settings(make_exporter, screens):
    exporter = make_exporter({}, api_token="s3cret-token")
    page = screens.page()
    page.goto(f"{exporter.url}/#/jobs")
    fill_form(page, "TASK", "send_email", '{"to": "ada@example.org"}')
    page.click("text=Create job")
    expect(page.locator(".form-result")).to_contain_text("enter the API token in Settings")
    page.click("#settings-open")
    page.fill('input[name="token"]', "s3cret-token")
    page.click("#settings-save")
    page.click("text=Create job")
    expect(page.locator(".form-result")).to_contain_text("Created job")
    assert page.evaluate("localStorage.getItem('job-exporter.settings')").find("s3cret") == -1
