"""Pages of other origins: their writes refused, the dashboard never framed, CORS for the
allowed ones (exporter/api/origins.py). Headless Chromium acts out the attack for real."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.helpers.served import LiveServer, live_server
from tests.helpers.sources import serve_handler
from tests.helpers.waiting import wait_until

ELSEWHERE = "http://elsewhere.example"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path, cors_origins=(ELSEWHERE,)) as served:
        yield served


def failed_job(server: LiveServer) -> dict:
    server.create(maxAttempts=1)
    leased = server.lease()
    assert leased is not None
    return server.step(leased["id"], "fail", {"worker": "w1", "error": "boom", "retryable": False})


def test_a_write_from_a_page_of_another_origin_is_refused(server: LiveServer):
    job = failed_job(server)
    answer = server.post(
        f"/api/v1/jobs/{job['id']}/retry", headers={"Origin": "http://evil.example"}
    )
    assert answer.status_code == 403
    assert answer.json()["errors"] == [{"field": "Origin", "message": "not an allowed origin"}]
    assert server.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "failed"
    for headers in ({"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        assert (
            server.post("/api/v1/jobs", {"type": "T", "name": "x"}, headers=headers).status_code
            == 403
        )


def test_same_origin_pages_and_programs_write_as_before(server: LiveServer):
    job = failed_job(server)
    own = server.base_url
    answer = server.post(f"/api/v1/jobs/{job['id']}/retry", headers={"Origin": own})
    assert answer.status_code == 200, answer.text
    assert server.post("/api/v1/jobs", {"type": "T", "name": "x"}).status_code == 201


def test_an_allowed_origin_may_read_and_write_with_cors_headers(server: LiveServer):
    preflight = server.session.options(
        server.url("/api/v1/jobs"),
        headers={
            "Origin": ELSEWHERE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ELSEWHERE
    assert "Idempotency-Key" in preflight.headers["Access-Control-Allow-Headers"]
    read = server.get("/api/v1/jobinfo", headers={"Origin": ELSEWHERE})
    assert read.status_code == 200
    assert read.headers["Access-Control-Allow-Origin"] == ELSEWHERE
    assert "Origin" in read.headers["Vary"]
    created = server.post("/api/v1/jobs", {"type": "T", "name": "x"}, headers={"Origin": ELSEWHERE})
    assert created.status_code == 201
    other = server.get("/api/v1/jobinfo", headers={"Origin": "http://evil.example"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers


def test_every_answer_forbids_framing(server: LiveServer):
    for path in ("/", "/metrics", "/api/v1/jobs", "/nowhere"):
        headers = server.get(path).headers
        assert headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path


class EvilSite:
    """A page of another origin on 127.0.0.1 with a form that posts to the exporter."""

    def __init__(self, target: str) -> None:
        page = f"""<!doctype html><html><body>
        <form id="f" method="post" action="{target}"><button>win a prize</button></form>
        <iframe id="frame" src="{target.split("/api/")[0]}/"></iframe>
        </body></html>""".encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        self.server, _ = serve_handler(Handler)
        # "localhost" is another origin than the exporter's 127.0.0.1, as another site is.
        self.url = f"http://localhost:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_a_form_on_another_site_cannot_retry_a_job_from_a_visitors_browser(
    tmp_path: Path, browser: Browser
):
    with live_server(tmp_path) as server:  # no token, no allowed origin: the default
        job = failed_job(server)
        evil = EvilSite(server.url(f"/api/v1/jobs/{job['id']}/retry"))
        context = browser.new_context()
        try:
            page = context.new_page()
            answers: list[int] = []
            page.on(
                "response",
                lambda response: (
                    answers.append(response.status) if "/retry" in response.url else None
                ),
            )
            page.goto(evil.url)
            page.wait_for_load_state("load")
            (framed,) = [frame for frame in page.frames if frame is not page.main_frame]
            framed_url = framed.url  # Chromium's error page when framing is refused
            page.click("button")
            wait_until(lambda: answers, timeout=10)
        finally:
            context.close()
            evil.close()
        assert answers == [403]
        assert server.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "failed"
        assert framed_url.startswith("chrome-error://"), framed_url
