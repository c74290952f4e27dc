"""Browser tests: the app served by a real uvicorn on a free port (in a thread of the test
process, so a test can also read the database), driven in Debian's Chromium by Playwright.

Every page a test opens is watched: a request to any origin but the server's, a console error
(a Content-Security-Policy violation is one) or an uncaught page error fails the test.
Chromium comes from ``apt-get install chromium`` (``/usr/bin/chromium``, or ``CHROMIUM``);
where it is missing the browser tests are skipped, unless ``REQUIRE_BROWSER=1`` (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from tests.helpers import PASSWORD, make_user
from tests.serving import free_port, wait_until

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
#: Playwright's own waits: generous, for a loaded machine.
TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if os.path.exists(found) else None


@dataclass
class LiveServer:
    url: str
    app: FastAPI


@pytest.fixture
def live(app: FastAPI) -> Iterator[LiveServer]:
    """The test's app, served on 127.0.0.1 by uvicorn until the test ends."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the web server started")
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is not installed (apt-get install -y chromium)")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watch:
    """What the pages of one test asked for and complained about."""

    origin: str
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(self.origin + "/")]


def _open_context(browser: Any, live: LiveServer, watch: Watch, **options: Any) -> Any:
    context = browser.new_context(base_url=live.url, accept_downloads=True, **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.on("request", lambda request: watch.requests.append(request.url))
    context.on(
        "response",
        lambda response: (
            watch.problems.append(f"{response.status} from {response.url}")
            if response.status >= 500
            else None
        ),
    )

    def on_page(page: Any) -> None:
        page.on(
            "console",
            lambda msg: (
                watch.problems.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda error: watch.problems.append(f"page error: {error}"))

    context.on("page", on_page)
    return context


@pytest.fixture
def watch(live: LiveServer) -> Watch:
    return Watch(live.url)


@pytest.fixture
def page(browser: Any, live: LiveServer, watch: Watch) -> Iterator[Any]:
    """A page at 1280x800 in a fresh browser context; at the end, no request left the server's
    origin and no page logged an error."""
    context = _open_context(browser, live, watch, viewport={"width": 1280, "height": 800})
    try:
        yield context.new_page()
    finally:
        context.close()
    assert watch.foreign() == [], "requests to other origins"
    # Chromium logs every 4xx a page receives, and htmx each 4xx it swaps in; the tests check
    # those statuses themselves (and any 5xx is a problem of its own, above).
    problems = [
        p
        for p in watch.problems
        if "Failed to load resource" not in p and p != "console error: htmx:responseError"
    ]
    assert problems == [], "the pages logged errors"


def log_in(page: Any, email: str, password: str = PASSWORD) -> None:
    """Log in through the login form, as a person would."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)


@pytest.fixture
def superuser_page(page: Any, live: LiveServer) -> Any:
    """The page, logged in as a new superuser ``root@example.com``."""
    make_user(live.app, "root@example.com", superuser=True)
    log_in(page, "root@example.com")
    return page


def fits_a_phone(page: Any) -> bool:
    """Whether the page, as it is now, fits 390x844 without sideways scrolling (the viewport
    goes back to 1280x800 afterwards)."""
    page.set_viewport_size({"width": 390, "height": 844})
    fits = bool(page.evaluate("() => document.documentElement.scrollWidth <= 390"))
    page.set_viewport_size({"width": 1280, "height": 800})
    return fits


_AXE = os.path.join(os.path.dirname(__file__), "vendor", "axe.min.js")


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        with open(_AXE, encoding="utf-8") as handle:
            page.evaluate(handle.read())  # evaluated by the browser itself: the CSP stays on
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
