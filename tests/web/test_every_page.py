"""Every page, on a project filled with generated data: axe-core finds no serious or critical
violation, light and dark; at 1280x800 and at 390x844 nothing scrolls sideways; and no request
leaves the server's origin (the ``page`` fixture checks that, and that nothing logged an error).
Each page's own tests run axe-core in the other states they show, at the phone size too."""

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


#: (theme, width, height, run axe-core): each theme checked by axe once (contrast differs), the
#: phone size for its layout (the same in both themes: only colours change).
VIEWS = [("light", 1280, 800, True), ("dark", 1280, 800, True), ("light", 390, 844, False)]


def test_every_page_is_accessible_and_fits_a_phone(page: Any, filled: LiveServer) -> None:
    log_in(page, "root@example.com")
    for scheme, width, height, axe in VIEWS:
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size({"width": width, "height": height})
        for path in PAGES:
            response = page.goto(path)
            assert response is not None and response.status == 200, path
            if axe:
                assert serious_violations(page) == [], f"{path} at {width}x{height}, {scheme}"
            overflow = page.evaluate("() => document.documentElement.scrollWidth")
            assert overflow <= width, f"{path} scrolls sideways at {width}px"
