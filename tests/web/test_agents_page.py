"""The Agents page in Chromium: heartbeats red past the connection cleanup window, the open
connections, and an agent's connections, sessions, and instructions with acknowledgements;
and over plain HTTP, access and bad input."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update

from taskledger.enums import AcknowledgementStatus
from taskledger.retention.policy.load import policy_from_dict
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.policy.rules import Policy
from taskledger.schemas.instructions import AcknowledgementCreate
from taskledger.services import instructions
from taskledger.services.access import Principal, PrincipalKind
from taskledger.services.connections import stale_window
from taskledger.store.models import Agent, AgentConnection, Instruction
from taskledger.store.types import utcnow
from tests.helpers import (
    make_agent,
    make_connection,
    make_instruction,
    make_project,
    make_session,
    make_user,
    transaction,
)
from tests.web.conftest import LiveServer, fits_a_phone, log_in, serious_violations
from tests.web.http_login import logged_in

#: The ``default`` policy's ``connections-stale`` rule (the policy in force in the tests).
WINDOW = timedelta(hours=24)


def age_heartbeats(
    live: LiveServer, agent: Agent, connection: AgentConnection, by: timedelta
) -> None:
    """Move the last heartbeat of ``agent`` and its ``connection`` ``by`` into the past."""
    moment = utcnow() - by
    with transaction(live.app) as session:
        session.execute(
            update(AgentConnection)
            .where(AgentConnection.id == connection.id)
            .values(last_heartbeat_at=moment)
        )
        session.execute(update(Agent).where(Agent.id == agent.id).values(last_heartbeat_at=moment))


def test_agents_with_a_stale_and_a_fresh_connection(page: Any, live: LiveServer) -> None:
    owner = make_user(live.app, "owner@example.com")
    project = make_project(live.app, owner, "alpha")
    empty = make_project(live.app, owner, "beta")
    fresh = make_agent(live.app, project, "fresh-worker")
    stale = make_agent(live.app, project, "stale-worker")
    agent_session = make_session(live.app, project, fresh)
    make_connection(live.app, project, fresh)
    make_connection(live.app, project, fresh)
    old = make_connection(live.app, project, stale)
    age_heartbeats(live, stale, old, WINDOW + timedelta(hours=2))
    instruction = make_instruction(live.app, project, fresh)
    make_instruction(live.app, project, fresh)  # never acknowledged
    # As the agent's own key would: the acknowledgements name the agent.
    agent_principal = Principal(
        kind=PrincipalKind.API_KEY, project_id=project.id, agent_id=fresh.id
    )
    with transaction(live.app) as session:
        loaded = session.get(Instruction, instruction.id)
        assert loaded is not None
        for status, message in (("received", None), ("accepted", "on it")):
            instructions.acknowledge(
                session=session,
                principal=agent_principal,
                instruction=loaded,
                data=AcknowledgementCreate(status=AcknowledgementStatus(status), message=message),
            )

    log_in(page, owner.email)
    page.goto(f"/agents?project={project.id}")
    stale_row = page.locator("tr[data-agent='stale-worker']")
    fresh_row = page.locator("tr[data-agent='fresh-worker']")
    assert stale_row.locator("time.stale").inner_text() == "1 d ago"
    assert fresh_row.locator("time").inner_text() == "just now"
    assert fresh_row.locator(".stale").count() == 0
    assert fresh_row.locator("td.num").inner_text() == "2"
    assert stale_row.locator("td.num").inner_text() == "1"
    assert "connections-stale" in page.locator("#stale-rule").inner_text()
    assert page.evaluate(
        "getComputedStyle(document.querySelector('time.stale')).color"
    ) != page.evaluate(
        "getComputedStyle(document.querySelector('tr[data-agent=fresh-worker] time')).color"
    )
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    stale_row.get_by_role("link", name="stale-worker").click()
    page.wait_for_url(f"**/agents/{stale.id}")
    connection_row = page.locator(f"tr[data-connection='{old.id}']")
    assert connection_row.locator("time.stale").count() == 1
    assert page.get_by_text("No sessions yet").is_visible()
    assert page.get_by_text("No instructions yet").is_visible()
    assert serious_violations(page) == []

    page.get_by_role("link", name="← Agents of alpha").click()
    page.get_by_role("link", name="fresh-worker").click()
    page.wait_for_url(f"**/agents/{fresh.id}")
    assert page.locator("tr[data-connection]").count() == 2
    assert page.locator("tr[data-connection] .stale").count() == 0
    session_row = page.locator(f"tr[data-session='{agent_session.id}']")
    assert session_row.locator(".badge").inner_text() == "active"
    acks = page.locator(f"tr[data-instruction='{instruction.id}'] .acks li")
    assert acks.count() == 2
    assert acks.nth(0).locator(".badge").inner_text() == "received"
    assert "accepted" in acks.nth(1).inner_text() and "on it" in acks.nth(1).inner_text()
    assert page.locator("tr[data-instruction]").filter(has_text="none yet").count() == 1
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    # The switcher keeps to the page; a project without agents says what to do.
    page.goto(f"/agents?project={project.id}")
    page.get_by_label("Project").select_option(label="beta")
    page.wait_for_url(f"**/agents?project={empty.id}")
    assert page.get_by_text("No agents yet").is_visible()
    assert "POST /api/v1/agents" in page.locator(".empty").inner_text()
    assert serious_violations(page) == []
    assert fits_a_phone(page)


def test_agents_access_and_bad_input(live: LiveServer) -> None:
    owner = make_user(live.app, "owner@example.com")
    stranger = make_user(live.app, "stranger@example.com")
    mine = make_project(live.app, owner, "alpha")
    theirs = make_project(live.app, stranger, "beta")
    their_agent = make_agent(live.app, theirs, "theirs")
    make_agent(live.app, mine, "mine")
    with logged_in(live.url, owner.email) as (http, _token):
        assert http.get(f"/agents?project={theirs.id}").status_code == 404
        assert http.get(f"/agents/{their_agent.id}").status_code == 404
        assert http.get(f"/agents/{uuid.uuid4()}").status_code == 404
        bad_id = http.get("/agents/not-an-id")
        assert bad_id.status_code == 422 and "agent_id" in bad_id.text
        assert http.get("/agents?project=nope").status_code == 422
        bad_cursor = http.get(f"/agents?project={mine.id}&cursor=garbage")
        assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.text.lower()
        assert http.get(f"/agents/{their_agent.id}?sessions_cursor=x").status_code == 404
    with httpx.Client(base_url=live.url) as anonymous:
        assert anonymous.get("/agents").status_code == 303  # to the login page


def test_a_project_without_agents_and_no_projects(live: LiveServer) -> None:
    make_user(live.app, "owner@example.com")
    with logged_in(live.url, "owner@example.com") as (http, _token):
        answer = http.get("/agents")
    assert answer.status_code == 200 and "No projects yet" in answer.text


def test_the_stale_window_comes_from_the_policy_in_force() -> None:
    project_id = uuid.uuid4()

    def window(policy: Policy | None, name: str = "alpha") -> tuple[timedelta, str, bool]:
        found = stale_window(policy, project_id=project_id, project_name=name)
        return found.after, found.rule, found.fallback

    assert window(PRESETS["default"]) == (timedelta(hours=24), "connections-stale", False)
    assert window(PRESETS["development"]) == (timedelta(hours=4), "connections-stale", False)
    assert window(PRESETS["scientific"]) == (timedelta(hours=48), "connections-stale", False)
    assert window(PRESETS["ops"]) == (timedelta(hours=24), "connections-stale", True)
    assert window(None) == (timedelta(hours=24), "connections-stale", True)
    per_project = policy_from_dict(
        {
            "name": "mine",
            "rule": [
                {
                    "name": "all",
                    "table": "agent_connections",
                    "older_than": "12h",
                    "action": "expire",
                    "status": ["active"],
                },
                {
                    "name": "alpha-fast",
                    "table": "agent_connections",
                    "older_than": "2h",
                    "action": "expire",
                    "projects": ["alpha"],
                },
                {
                    "name": "closed",
                    "table": "agent_connections",
                    "older_than": "1h",
                    "action": "delete",
                    "status": ["closed"],
                },
            ],
        },
        default_name="mine",
    )
    assert window(per_project) == (timedelta(hours=2), "alpha-fast", False)
    assert window(per_project, "beta") == (timedelta(hours=12), "all", False)
