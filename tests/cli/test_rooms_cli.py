"""``taskledger rooms create|list|archive|join|leave`` on a real database, as the API sees it."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskledger.settings import Settings
from tests.cli.test_identity import run
from tests.helpers import build_world, make_agent


def test_rooms_from_the_command_line(app: FastAPI, client: TestClient, settings: Settings) -> None:
    world = build_world(app, client)
    project = world.project.name
    agent = make_agent(app, world.project)

    code, out, err = run(
        settings, "rooms", "create", "general", "--project", project, "--topic", "t", "--json"
    )
    assert code == 0, err
    room = json.loads(out)
    assert (room["name"], room["topic"], room["archived_at"]) == ("general", "t", None)
    code, _, err = run(settings, "rooms", "create", "general", "--project", project)
    assert code == 1 and "already exists" in err
    code, out, _ = run(settings, "rooms", "create", "design", "--project", str(world.project.id))
    assert code == 0 and "created room design" in out

    code, out, err = run(
        settings,
        "rooms",
        "join",
        "general",
        "--project",
        project,
        "--agent",
        str(agent.id),
        "--role",
        "owner",
        "--json",
    )
    assert code == 0, err
    joined = json.loads(out)
    assert (joined["participant_type"], joined["role"]) == ("agent", "owner")
    code, out, err = run(
        settings, "rooms", "join", room["id"], "--project", project, "--user", world.owner.email
    )
    assert code == 0 and "joined room" in out, err
    foreign = make_agent(app, world.other_project)
    code, _, err = run(
        settings, "rooms", "join", "general", "--project", project, "--agent", str(foreign.id)
    )
    assert code == 1 and "not found" in err
    code, _, err = run(settings, "rooms", "join", "general", "--project", project)
    assert code == 2 and "exactly one" in err

    participants = client.get(
        f"/api/v1/rooms/{room['id']}/participants", headers=world.headers["read_key"]
    ).json()["items"]
    assert {p["participant_id"] for p in participants} == {str(agent.id), str(world.owner.id)}

    code, out, err = run(
        settings,
        "rooms",
        "leave",
        "general",
        "--project",
        project,
        "--agent",
        str(agent.id),
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["left_at"] is not None
    code, _, err = run(
        settings, "rooms", "leave", "general", "--project", project, "--agent", str(agent.id)
    )
    assert code == 1

    code, out, err = run(settings, "rooms", "archive", "general", "--project", project, "--json")
    assert code == 0, err
    assert json.loads(out)["archived_at"] is not None
    code, _, err = run(
        settings, "rooms", "join", "general", "--project", project, "--agent", str(agent.id)
    )
    assert code == 1 and "archived" in err

    code, out, _ = run(settings, "rooms", "list", "--project", project, "--json")
    assert [r["name"] for r in json.loads(out)] == ["general", "design"]
    code, out, _ = run(settings, "rooms", "list", "--project", project, "--archived", "--json")
    assert [r["name"] for r in json.loads(out)] == ["general"]
    code, out, _ = run(settings, "rooms", "list", "--project", project, "--open", "--json")
    assert [r["name"] for r in json.loads(out)] == ["design"]
    code, out, _ = run(settings, "rooms", "list", "--project", project)
    assert code == 0 and "design" in out
    code, _, err = run(settings, "rooms", "list", "--project", "nope")
    assert code == 1 and "no project" in err
