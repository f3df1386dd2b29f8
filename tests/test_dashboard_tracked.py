"""The dashboard's Tracked view in real headless Chromium, against one in-process exporter
per module holding pushed and scraped jobs of every status: a job running for three hours
comes first among running jobs with its age and the slow mark, a failed job's error shows
in its row and whole in its detail, filters, search and paging follow the address, and the
page fits a phone."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from exporter.clock import ManualClock
from tests.helpers.browser import Screens
from tests.helpers.served import Exporter
from tests.helpers.sources import JobSource

pytestmark = pytest.mark.slow

NOW_MS = time.time() * 1000
HOUR_MS = 3_600_000
SLOW_START_MS = NOW_MS - 3 * HOUR_MS - 60_000  # the three-hour job's start
ERROR = (
    "Traceback (most recent call last):\n"
    '  File "billing/tasks.py", line 42, in charge\n'
    "    raise PaymentDeclined(card)\n"
    "PaymentDeclined: card ending 4242 was declined <b>not markup</b>\n" + "detail " * 80
)
COMPLETED = 60  # more than a page (50)


def item(job_id: str, name: str, start_ms: float, **fields) -> dict:
    return {
        "id": job_id,
        "name": name,
        "startTimestamp": start_ms,
        "backgroundJobType": fields.pop("type", "TASK"),
        "isFinished": fields.pop("finished", False),
        **fields,
    }


def push(exporter: Exporter, source: str, items: list[dict]) -> None:
    url = f"{exporter.url}/api/v1/push"
    answer = requests.post(url, params={"source": source}, json=items, timeout=10)
    assert answer.status_code == 202, answer.text


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    source = JobSource()
    folder: Path = tmp_path_factory.mktemp("tracked")
    exporter = Exporter(folder / "store.db", {"app": source.url}, ManualClock(NOW_MS))
    try:
        # render_report usually takes 2 s (ten runs); one has run for three hours.
        runs = [
            item(
                f"rr-{n}",
                "render_report",
                NOW_MS - HOUR_MS + n * 10_000,
                finished=True,
                status="completed",
                finishTimestamp=NOW_MS - HOUR_MS + n * 10_000 + 2_000,
            )
            for n in range(10)
        ]
        push(exporter, "billing", runs)
        push(
            exporter,
            "billing",
            [
                item("slow-1", "render_report", SLOW_START_MS),
                item("fresh-1", "send_email", NOW_MS - 30_000),
                item(
                    "fail-1",
                    "charge_card",
                    NOW_MS - 120_000,
                    finished=True,
                    status="failed",
                    finishTimestamp=NOW_MS - 110_000,
                    error=ERROR,
                    attempt=2,
                ),
                item(
                    "wait-1",
                    "charge_card",
                    NOW_MS - 5_000,
                    status="pending",
                    enqueueTimestamp=NOW_MS - 5_000,
                ),
            ],
        )
        # No history for nightly_load: two hours is over the default limit of 60 minutes.
        push(exporter, "etl", [item("etl-1", "nightly_load", NOW_MS - 2 * HOUR_MS, type="CRON")])
        push(
            exporter,
            "batch",
            [
                item(
                    f"b-{n:03}",
                    "batch_item",
                    NOW_MS - 600_000 + n * 1000,
                    finished=True,
                    status="completed",
                    finishTimestamp=NOW_MS - 600_000 + n * 1000 + 250,
                )
                for n in range(COMPLETED)
            ],
        )
        # A scraped job that vanishes for two scrapes is lost.
        source.serve_jobs([item("gone-1", "sync_crm", NOW_MS - 900_000)])
        exporter.scrape()
        source.serve_jobs([])
        exporter.scrape()
        exporter.scrape()
        yield exporter
    finally:
        exporter.close()
        source.close()


def open_view(screens: Screens, served: Exporter, hash: str = "", width: int = 1280) -> Page:
    page = screens.page(width=width)
    page.goto(f"{served.url}/#/tracked{hash}")
    return page


def rows(page: Page):
    return page.locator("table.tracked tbody tr")


def dark(page: Page) -> None:
    page.click("#theme-toggle")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")


def test_a_job_running_for_three_hours_comes_first_with_its_age_and_slow_mark(served, screens):
    page = open_view(screens, served, "?status=running")
    first = rows(page).first
    expect(first).to_have_attribute("data-job-id", "slow-1")
    # Its start was 3 h 1 min before this module began; the age ticks on from there.
    minutes = int((time.time() * 1000 - SLOW_START_MS) // 60_000) - 180
    ages = "|".join(f"{m:02}" for m in (minutes, minutes + 1))
    expect(first.locator("[data-age]")).to_have_text(re.compile(rf"^3 h ({ages}) min$"))
    expect(first.locator("[data-mark=slow]")).to_be_visible()
    expect(first.locator("[data-mark=slow]")).to_have_text("⚠ slow")
    expect(first.locator("[data-mark=slow]")).to_have_attribute(
        "title", re.compile(r"usual p95 of 2\.4\d s")
    )
    etl = page.locator('tr[data-job-id="etl-1"]')
    limit = re.compile("longer than 1 h 00 min")
    expect(etl.locator("[data-mark=slow]")).to_have_attribute("title", limit)
    expect(page.locator('tr[data-job-id="fresh-1"] [data-mark=slow]')).to_be_hidden()
    ids = [rows(page).nth(n).get_attribute("data-job-id") for n in range(3)]
    assert ids == ["slow-1", "etl-1", "fresh-1"]  # oldest first
    # The age ticks.
    fresh_age = page.locator('tr[data-job-id="fresh-1"] [data-age]')
    seen = fresh_age.inner_text()
    expect(fresh_age).not_to_have_text(seen)
    screens.shot(page, "running-light")
    dark(page)
    screens.shot(page, "running-dark")


def test_the_limit_in_settings_marks_running_jobs_and_is_validated(served, screens):
    page = open_view(screens, served, "?status=running")
    etl_mark = page.locator('tr[data-job-id="etl-1"] [data-mark=slow]')
    expect(etl_mark).to_be_visible()
    page.click("#settings-open")
    page.fill('input[name="slowMinutes"]', "-5")
    page.click("#settings-save")
    expect(page.locator("#settings-error")).to_contain_text(
        "Mark running jobs older than must be a whole number from 0 to 10080"
    )
    screens.shot(page, "settings-refused")
    page.fill('input[name="slowMinutes"]', "0")
    page.click("#settings-save")
    expect(page.locator("#settings")).not_to_be_visible()
    expect(etl_mark).to_be_hidden()  # no limit: only the p95 marks
    expect(page.locator('tr[data-job-id="slow-1"] [data-mark=slow]')).to_be_visible()
    page.reload()
    expect(page.locator('tr[data-job-id="etl-1"] [data-mark=slow]')).to_be_hidden()
    stored = page.evaluate("JSON.parse(localStorage.getItem('job-exporter.settings'))")
    assert stored["slowMinutes"] == 0


def test_a_failed_job_shows_its_error_in_the_row_and_whole_in_its_detail(served, screens):
    page = open_view(screens, served, "?status=failed")
    row = rows(page).first
    expect(row).to_have_attribute("data-job-id", "fail-1")
    # Of a traceback, the row shows the exception's line, as text.
    expect(row.locator("[data-field=error]")).to_have_text(
        "PaymentDeclined: card ending 4242 was declined <b>not markup</b>"
    )
    row.focus()
    page.keyboard.press("Enter")
    detail = page.locator("[data-panel=tracked-details]")
    expect(detail).to_be_visible()
    expect(detail).to_have_attribute("data-job-id", "fail-1")
    assert detail.locator("pre[data-field=error]").text_content() == ERROR
    assert detail.locator("pre[data-field=error] b").count() == 0  # text, never markup
    for field, text in (
        ("source", "billing"),
        ("attempt", "2"),
        ("status", "failed"),
        ("durationSeconds", "10 s"),
        ("type", "TASK"),
    ):
        expect(detail.locator(f"dd[data-field={field}]")).to_have_text(text)
    expect(detail.locator("dd[data-field=finishedAt]")).not_to_have_text("\u2013")  # known
    screens.shot(page, "failed-detail-light")
    dark(page)
    screens.shot(page, "failed-detail-dark")
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()
    expect(row).to_be_focused()


def test_filters_search_and_paging_follow_the_address(served, screens):
    page = open_view(screens, served)
    expect(rows(page).first).to_be_visible()
    screens.shot(page, "all")
    page.select_option('select[name="status"]', "completed")
    page.fill('input[name="source"]', "batch")
    page.click("text=Apply")
    expect(page).to_have_url(re.compile(r"#/tracked\?status=completed&source=batch$"))
    expect(rows(page)).to_have_count(50)
    expect(rows(page).first).to_have_attribute("data-job-id", f"b-{COMPLETED - 1:03}")
    page.click("text=Next")
    expect(rows(page)).to_have_count(COMPLETED - 50)
    expect(rows(page).last).to_have_attribute("data-job-id", "b-000")
    expect(page.locator("text=Page 2")).to_be_visible()
    page.click("text=Previous")
    expect(rows(page).first).to_have_attribute("data-job-id", f"b-{COMPLETED - 1:03}")
    # Search by part of an id, any case; the address holds it.
    page.goto(f"{served.url}/#/tracked?q=FAIL-")
    expect(rows(page)).to_have_count(1)
    expect(page.locator('input[name="q"]')).to_have_value("FAIL-")
    # A link to a job, from its detail.
    rows(page).first.click()
    page.click("text=Link to this job")
    expect(page).to_have_url(re.compile(r"#/tracked\?source=billing&q=fail-1$"))
    expect(rows(page)).to_have_count(1)
    for hash, job_id in (
        ("?status=lost", "gone-1"),
        ("?status=pending", "wait-1"),
        ("?type=CRON", "etl-1"),
        ("?name=send_email", "fresh-1"),
    ):
        page.goto(f"{served.url}/#/tracked{hash}")
        expect(rows(page)).to_have_count(1)
        expect(rows(page).first).to_have_attribute("data-job-id", job_id)
    page.goto(f"{served.url}/#/tracked?status=pending&source=nowhere")
    expect(page.locator(".empty-state")).to_have_text("No pending jobs match these filters.")
    page.click("a[data-status=running]")
    expect(page.locator(".empty-state")).to_be_hidden()
    expect(rows(page).first).to_have_attribute("data-job-id", "slow-1")
    # The Queue tab, for job-API jobs, is linked.
    expect(page.locator('[data-panel=tracked] a[href="#/jobs"]')).to_be_visible()


def test_an_empty_status_and_a_failing_request_say_so(served, screens):
    page = screens.page()
    page.route(
        "**/api/v1/tracked?*",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": "the store is not answering", "errors": []}',
        ),
    )
    page.goto(f"{served.url}/#/tracked")
    expect(page.locator(".request-state")).to_contain_text(
        "Could not load the tracked jobs: the store is not answering"
    )
    expect(page.locator(".request-state button")).to_have_text("Try again")
    page.unroute("**/api/v1/tracked?*")
    page.click(".request-state button")
    expect(rows(page).first).to_be_visible()
    expect(page.locator(".request-state")).to_be_hidden()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_view_fits_a_phone(served, screens, theme):
    page = open_view(screens, served, "?status=failed", width=390)
    expect(rows(page).first).to_be_visible()
    if theme == "dark":
        dark(page)
    # Neither the page nor anything in the view scrolls sideways.
    wide = """Math.max(document.documentElement.scrollWidth, ...[...document.querySelectorAll(
        '#view *')].map(e => e.scrollWidth > e.clientWidth + 1
        && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX) ? 9999 : 0))"""
    assert page.evaluate(wide) <= 390
    screens.shot(page, f"phone-list-{theme}")
    rows(page).first.click()
    expect(page.locator("[data-panel=tracked-details]")).to_be_visible()
    assert page.evaluate(wide) <= 390
    screens.shot(page, f"phone-detail-{theme}")
    page.goto(f"{served.url}/#/tracked?status=running")
    expect(rows(page).first).to_have_attribute("data-job-id", "slow-1")
    assert page.evaluate(wide) <= 390
    screens.shot(page, f"phone-running-{theme}")
