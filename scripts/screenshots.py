"""Screenshots of every web UI page, light and dark, for docs/ui.md.

Starts a real ``taskledger serve`` on a throwaway SQLite database filled by
``taskledger generate``, logs in as the initial superuser in Debian's Chromium (Playwright,
never a browser download), and saves ``docs/ui/<page>-<theme>.png`` at 1280x800 (and the Runs
page at 390x844 too). Run it with ``make screenshots``; nothing outside 127.0.0.1 is asked for.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "ui"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
#: (file name, path): the pages, in the order docs/ui.md shows them.
PAGES = [
    ("login", "/login"),
    ("runs", "/runs"),
    ("tasks", "/tasks"),
    ("rooms", "/rooms"),
    ("agents", "/agents"),
    ("retention", "/retention"),
    ("keys", "/keys"),
    ("users", "/users"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(data: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env.update(TASKLEDGER_DATA_DIR=str(data), TASKLEDGER_LOG_LEVEL="WARNING")
    taskledger = [sys.executable, "-m", "taskledger"]
    subprocess.run([*taskledger, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        [*taskledger, "generate", "--runs", "3000", "--days", "30", "--seed", "7"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = _free_port()
    process = subprocess.Popen(
        [*taskledger, "serve", "--port", str(port), "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _password(data: Path) -> str:
    found = sorted(data.glob("initial_admin_password*"))
    if not found:
        raise SystemExit(f"no initial_admin_password file in {data}")
    return found[0].read_text().strip()


def _log_in(page: Page, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill("admin@localhost")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, _server(Path(tmp)) as url:
        password = _password(Path(tmp))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=options.chromium, args=ARGS)
            for theme in ("light", "dark"):
                for width, height, suffix in ((1280, 800, ""), (390, 844, "-phone")):
                    context = browser.new_context(
                        base_url=url,
                        viewport={"width": width, "height": height},
                        color_scheme=theme,
                    )
                    page = context.new_page()
                    for name, path in PAGES:
                        if suffix and name not in ("runs", "tasks"):
                            continue
                        if name == "login":
                            page.goto(path)
                        else:
                            if "/login" in page.url or page.url == "about:blank":
                                _log_in(page, password)
                            page.goto(path)
                        page.wait_for_load_state("networkidle")
                        target = options.out / f"{name}{suffix}-{theme}.png"
                        page.screenshot(path=str(target), full_page=False)
                        print(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target)
                    context.close()
            browser.close()


if __name__ == "__main__":
    main()
