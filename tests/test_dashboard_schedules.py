"""The dashboard's Schedules view in real headless Chromium, against an in-process exporter
whose clock the test moves: a schedule is listed with its timetable and next fire, paused,
resumed and run now from the page, and a fire made by the sweep shows as its last fire;
schedules are created, edited and deleted from the page, checked through the API."""

from __future__ import annotations

import re

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
    expect(row.locator('[data-field="fires"]')).to_have_text(
        "0 on time · 0 late · 0 skipped · 1 run by hand"
    )
    jobs = requests.get(
        f"{exporter.url}/api/v1/jobs", params={"name": "nightly_totals"}, timeout=5
    ).json()["jobs"]
    assert len(jobs) == 1 and jobs[0]["status"] == "pending"

    ticker_row = page.locator(f'tr[data-schedule-id="{ticker["id"]}"]')
    expect(ticker_row.locator('[data-field="lastFireAt"]')).to_have_text(NOT_SET)
    exporter.clock.advance(60)
    assert exporter.runtime.schedules.sweep() == 1
    expect(ticker_row.locator('[data-field="lastFireAt"]')).not_to_have_text(NOT_SET)
    expect(ticker_row.locator('[data-field="fires"]')).to_have_text(
        "1 on time · 0 late · 0 skipped · 0 run by hand"
    )
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


def schedules_of(exporter: Exporter) -> list[dict]:
    response = requests.get(f"{exporter.url}/api/v1/schedules", timeout=5)
    return response.json()["schedules"]


def test_a_schedule_is_created_from_the_page(exporter: Exporter, screens: Screens):
    page = screens.page()
    page.goto(f"{exporter.url}/#/schedules")
    expect(page.locator(".schedules-empty")).to_contain_text("No schedules yet — create one")
    screens.shot(page, "empty")
    page.locator(".schedules-empty button").click()
    form = page.locator(".schedule-form")
    expect(page.locator('.schedule-form input[name="type"]')).to_be_focused()
    form.locator('input[name="type"]').fill("REPORT")
    form.locator('input[name="name"]').fill("nightly_totals")
    form.locator('input[name="cron"]').fill("30 2 * * *")
    form.locator('input[name="timezone"]').fill("Europe/Berlin")
    form.locator('select[name="misfire"]').select_option("skip")
    form.locator('textarea[name="payload"]').fill('{"to": ')
    expect(form.locator("#schedule-payload-error")).to_contain_text("not valid JSON")
    form.locator("button[type=submit]").click()
    assert schedules_of(exporter) == []  # the page checked it and sent nothing
    form.locator('textarea[name="payload"]').fill('{"to": "ops"}')
    form.locator('input[name="maxAttempts"]').fill("3")
    screens.shot(page, "form")
    form.locator("button[type=submit]").click()
    expect(page.locator(".form-result")).to_contain_text("Created nightly_totals")
    (made,) = schedules_of(exporter)
    assert (made["type"], made["name"], made["cron"], made["timezone"]) == (
        "REPORT",
        "nightly_totals",
        "30 2 * * *",
        "Europe/Berlin",
    )
    assert (made["misfire"], made["payload"], made["maxAttempts"]) == ("skip", {"to": "ops"}, 3)
    row = page.locator(f'tr[data-schedule-id="{made["id"]}"]')
    expect(row).to_contain_text("30 2 * * * (Europe/Berlin)")
    expect(page.locator(".schedule-form-panel")).to_be_hidden()

    # An interval schedule: the choice between the two timetables is a radio pair.
    page.locator("button.new-schedule").click()
    form.locator('input[name="type"]').fill("TASK")
    form.locator('input[name="name"]').fill("heartbeat")
    form.locator('input[value="interval"]').check()
    expect(form.locator('input[name="cron"]')).to_be_hidden()
    form.locator('input[name="intervalSeconds"]').fill("90")
    form.locator("button[type=submit]").click()
    expect(page.locator("table.schedules tbody tr")).to_have_count(2)
    assert {s["name"]: s["intervalSeconds"] for s in schedules_of(exporter)} == {
        "nightly_totals": None,
        "heartbeat": 90,
    }
    screens.shot(page, "created")


def test_a_bad_cron_shows_the_field_error_and_creates_nothing(exporter: Exporter, screens: Screens):
    page = screens.page()
    page.goto(f"{exporter.url}/#/schedules")
    page.locator("button.new-schedule").click()
    form = page.locator(".schedule-form")
    form.locator('input[name="type"]').fill("T")
    form.locator('input[name="name"]').fill("n")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.method) if r.method != "GET" else None)
    form.locator('input[name="cron"]').fill("every day")
    form.locator("button[type=submit]").click()
    error = form.locator("#schedule-cron-error")
    expect(error).to_contain_text("Cron needs 5 fields")  # the page's own check...
    assert sent == []  # ...so nothing was sent
    expect(form.locator('input[name="cron"]')).to_have_attribute("aria-invalid", "true")
    # Five fields, but not a cron line: the server's 400 names `cron`, shown by the field.
    form.locator('input[name="cron"]').fill("61 * * * *")
    form.locator("button[type=submit]").click()
    expect(error).to_contain_text("invalid cron expression")
    expect(form.locator('input[name="cron"]')).to_be_focused()
    form.locator('input[name="cron"]').fill("* * * * *")
    form.locator('input[name="timezone"]').fill("Nowhere/Special")
    form.locator("button[type=submit]").click()
    expect(form.locator("#schedule-timezone-error")).to_contain_text("unknown time zone")
    expect(error).to_be_hidden()
    screens.shot(page, "errors")
    assert schedules_of(exporter) == []


def test_edit_changes_the_schedule(exporter: Exporter, screens: Screens):
    made = create(exporter, type="TASK", name="cleanup", cron="0 * * * *", maxAttempts=2)
    page = screens.page()
    page.goto(f"{exporter.url}/#/schedules")
    row = page.locator(f'tr[data-schedule-id="{made["id"]}"]')
    row.locator("button.edit").click()
    form = page.locator(".schedule-form")
    expect(form.locator('input[name="name"]')).to_have_value("cleanup")
    expect(form.locator('input[name="cron"]')).to_have_value("0 * * * *")
    expect(form.locator('input[name="maxAttempts"]')).to_have_value("2")
    form.locator('input[name="name"]').fill("cleanup_often")
    form.locator('input[value="interval"]').check()
    form.locator('input[name="intervalSeconds"]').fill("300")
    screens.shot(page, "editing")
    form.locator("button[type=submit]").click()
    expect(page.locator(".form-result")).to_contain_text("Saved cleanup_often")
    expect(row).to_contain_text("every 5 min")
    (after,) = schedules_of(exporter)
    assert (after["id"], after["name"], after["cron"], after["intervalSeconds"]) == (
        made["id"],
        "cleanup_often",
        None,
        300,
    )
    assert after["maxAttempts"] == 2 and after["type"] == "TASK"
    expect(row.locator("button.edit")).to_be_focused()


def test_delete_asks_first(exporter: Exporter, screens: Screens):
    made = create(exporter, type="TASK", name="doomed", intervalSeconds=60)
    page = screens.page()
    page.goto(f"{exporter.url}/#/schedules")
    row = page.locator(f'tr[data-schedule-id="{made["id"]}"]')
    dialog = page.locator("dialog.confirm-dialog")
    row.locator("button.delete").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("doomed (TASK), every 1 min")
    expect(dialog.locator("button.cancel-delete")).to_be_focused()
    screens.shot(page, "confirm")
    page.keyboard.press("Escape")  # declines
    expect(dialog).to_be_hidden()
    expect(row.locator("button.delete")).to_be_focused()
    row.locator("button.delete").click()
    dialog.locator("button.cancel-delete").click()  # declines too
    expect(dialog).to_be_hidden()
    assert [s["id"] for s in schedules_of(exporter)] == [made["id"]]
    # Keyboard only: Enter on the focused Delete opens it, Tab to Delete in the dialog.
    row.locator("button.delete").focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Tab")
    expect(dialog.locator("button.confirm-delete")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".form-result")).to_have_text("Deleted doomed.")
    expect(page.locator("table.schedules tbody tr")).to_have_count(0)
    assert schedules_of(exporter) == []


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 390])
def test_the_fires_read_in_words_in_both_themes_and_on_a_phone(
    exporter: Exporter, screens: Screens, theme: str, width: int
):
    ticker = create(exporter, type="TASK", name="heartbeat", intervalSeconds=60)
    create(
        exporter,
        type="REPORT",
        name="nightly_totals_for_every_region",
        cron="30 2 * * *",
        timezone="Europe/Berlin",
    )
    exporter.clock.advance(60)
    assert exporter.runtime.schedules.sweep() == 1
    requests.post(f"{exporter.url}/api/v1/schedules/{ticker['id']}/run", timeout=5)
    page = screens.page(width=width, height=800)
    page.add_init_script(
        "localStorage.setItem('job-exporter.settings',"
        f" JSON.stringify({{pollSeconds: 1, theme: '{theme}'}}))"
    )
    page.goto(f"{exporter.url}/#/schedules")
    row = page.locator(f'tr[data-schedule-id="{ticker["id"]}"]')
    fires = row.locator('[data-field="fires"]')
    expect(fires).to_have_text("1 on time · 0 late · 0 skipped · 1 run by hand")
    expect(fires).to_be_visible()
    assert "late: missed while no exporter ran" in fires.get_attribute("title")
    expect(page.locator(".fires-legend")).to_be_visible()
    expect(row.locator('[data-field="lastFireAt"] time')).to_have_attribute(
        "datetime", re.compile("T")
    )
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways: {scroll} > {width}"
    screens.shot(page, f"list-{theme}-{width}")
    page.locator("button.new-schedule").click()
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the form scrolls sideways: {scroll} > {width}"
    page.keyboard.press("Tab")
    screens.shot(page, f"form-{theme}-{width}")
