"""Every page, on a project filled with generated data: axe-core finds no serious or critical
violation, light and dark, at 1280x800 and at 390x844 (no sideways scrolling), and no request
leaves the server's origin (the ``page`` fixture checks that, and that nothing logged an error)."""

from __future__ import annotations

from typing import Any

import pytest

from taskledger.services.generate import generate
from tests.helpers import make_project, make_user, state_of
from tests.web.conftest import LiveServer, log_in, serious_violations

PAGES = ["/runs", "/tasks", "/rooms", "/agents", "/retention", "/keys", "/users"]


@pytest.fixture
def filled(live: LiveServer) -> LiveServer:
    root = make_user(live.app, "root@example.com", superuser=True)
    project = make_project(live.app, root, "demo")
    generate(state_of(live.app).engine, project.id, runs=300, days=20, agents=3, seed=5)
    return live


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_is_accessible_and_fits_a_phone(
    page: Any, filled: LiveServer, scheme: str
) -> None:
    page.emulate_media(color_scheme=scheme)
    log_in(page, "root@example.com")
    for path in PAGES:
        for width, height in ((1280, 800), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            response = page.goto(path)
            assert response is not None and response.status == 200, path
            assert serious_violations(page) == [], f"{path} at {width}x{height}, {scheme}"
            overflow = page.evaluate("() => document.documentElement.scrollWidth")
            assert overflow <= width, f"{path} scrolls sideways at {width}px"
