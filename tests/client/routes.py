"""Which client method calls each route of the HTTP API, and which routes the client leaves to
other tools on purpose. ``test_routes.py`` checks this against the app's route table (so a new
API route without a client method fails), and ``test_resources.py`` checks, from the server's
access log, that the scenario really requested every route listed here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

#: (method, path) -> the client method that calls it (on ``Ledger`` and ``AsyncLedger``).
CLIENT_METHODS: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/auth/token"): "login",
    ("GET", "/api/v1/auth/me"): "me",
    ("POST", "/api/v1/users"): "users.create",
    ("GET", "/api/v1/users"): "users.list",
    ("GET", "/api/v1/users/{user_id}"): "users.get",
    ("PATCH", "/api/v1/users/{user_id}"): "users.update",
    ("POST", "/api/v1/projects"): "projects.create",
    ("GET", "/api/v1/projects"): "projects.list",
    ("GET", "/api/v1/projects/{project_id}"): "projects.get",
    ("PATCH", "/api/v1/projects/{project_id}"): "projects.update",
    ("DELETE", "/api/v1/projects/{project_id}"): "projects.delete",
    ("POST", "/api/v1/projects/{project_id}/api-keys"): "api_keys.create",
    ("GET", "/api/v1/projects/{project_id}/api-keys"): "api_keys.list",
    ("DELETE", "/api/v1/projects/{project_id}/api-keys/{key_id}"): "api_keys.revoke",
    ("POST", "/api/v1/agents"): "agents.create",
    ("GET", "/api/v1/agents"): "agents.list",
    ("GET", "/api/v1/agents/{agent_id}"): "agents.get",
    ("PATCH", "/api/v1/agents/{agent_id}"): "agents.update",
    ("DELETE", "/api/v1/agents/{agent_id}"): "agents.delete",
    ("POST", "/api/v1/rooms"): "rooms.create",
    ("GET", "/api/v1/rooms"): "rooms.list",
    ("GET", "/api/v1/rooms/{room_id}"): "rooms.get",
    ("PATCH", "/api/v1/rooms/{room_id}"): "rooms.update",
    ("DELETE", "/api/v1/rooms/{room_id}"): "rooms.delete",
    ("POST", "/api/v1/rooms/{room_id}/participants"): "rooms.join",
    ("POST", "/api/v1/rooms/{room_id}/participants/{participant_id}/leave"): "rooms.leave",
    ("GET", "/api/v1/rooms/{room_id}/participants"): "rooms.participants",
    ("GET", "/api/v1/rooms/{room_id}/tasks"): "rooms.tasks",
    ("POST", "/api/v1/tasks"): "tasks.create",
    ("GET", "/api/v1/tasks"): "tasks.list",
    ("GET", "/api/v1/tasks/{task_id}"): "tasks.get",
    ("PATCH", "/api/v1/tasks/{task_id}"): "tasks.update",
    ("DELETE", "/api/v1/tasks/{task_id}"): "tasks.delete",
    ("POST", "/api/v1/tasks/{task_id}/assign"): "tasks.assign",
    ("POST", "/api/v1/tasks/{task_id}/status"): "tasks.set_status",
    ("POST", "/api/v1/runs"): "runs.create",
    ("POST", "/api/v1/runs:batch"): "runs.batch",
    ("GET", "/api/v1/runs"): "runs.list",
    ("GET", "/api/v1/runs.csv"): "runs.export",
    ("GET", "/api/v1/runs.ndjson"): "runs.export",
    ("GET", "/api/v1/runs/{run_pk}"): "runs.get",
    ("PATCH", "/api/v1/runs/{run_pk}"): "runs.update",
    ("DELETE", "/api/v1/runs/{run_pk}"): "runs.delete",
    ("POST", "/api/v1/sessions"): "sessions.create",
    ("GET", "/api/v1/sessions"): "sessions.list",
    ("GET", "/api/v1/sessions/{session_id}"): "sessions.get",
    ("POST", "/api/v1/sessions/{session_id}/end"): "sessions.end",
    ("POST", "/api/v1/connections"): "connections.open",
    ("GET", "/api/v1/connections"): "connections.list",
    ("GET", "/api/v1/connections/{connection_id}"): "connections.get",
    ("POST", "/api/v1/connections/{connection_id}/heartbeat"): "connections.heartbeat",
    ("POST", "/api/v1/connections/{connection_id}/close"): "connections.close",
    ("POST", "/api/v1/instructions"): "instructions.create",
    ("GET", "/api/v1/instructions"): "instructions.list",
    ("GET", "/api/v1/instructions/{instruction_id}"): "instructions.get",
    ("PATCH", "/api/v1/instructions/{instruction_id}"): "instructions.update",
    ("POST", "/api/v1/instructions/{instruction_id}/acknowledgements"): "instructions.acknowledge",
    (
        "GET",
        "/api/v1/instructions/{instruction_id}/acknowledgements",
    ): "instructions.acknowledgements",
    ("POST", "/api/v1/admin/retention/preview"): "admin.preview",
    ("POST", "/api/v1/admin/retention/execute"): "admin.execute",
    ("GET", "/api/v1/admin/retention/runs"): "admin.retention_runs",
    ("GET", "/api/v1/admin/stats"): "admin.stats",
    ("GET", "/api/v1/admin/archives"): "admin.archives",
    ("POST", "/api/v1/admin/restore"): "admin.restore",
    ("POST", "/api/v1/admin/holds"): "admin.add_hold",
    ("GET", "/api/v1/admin/holds"): "admin.holds",
    ("POST", "/api/v1/admin/holds/{hold_id}/release"): "admin.release_hold",
}

_SEED = "a seed-compatible path (SPEC section 4); the client speaks /api/v1: "

#: Routes of the app the client does not wrap, and why.
NOT_WRAPPED: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "a probe for load balancers, not an API resource",
    ("GET", "/readyz"): "a probe for load balancers, not an API resource",
    ("GET", "/metrics"): "Prometheus text for a scraper",
    ("GET", "/openapi.json"): "the API's description",
    ("GET", "/docs"): "a documentation page",
    ("GET", "/docs/oauth2-redirect"): "a documentation page",
    ("GET", "/redoc"): "a documentation page",
    ("POST", "/agents/tasks/"): _SEED + "runs.create",
    ("PATCH", "/agents/tasks/{run_pk}"): _SEED + "runs.update",
    ("GET", "/agents/tasks/"): _SEED + "runs.list",
    ("GET", "/agents/tasks/paged"): _SEED + "runs.list and runs.iter",
    ("GET", "/agents/tasks/paged.csv"): _SEED + "runs.export",
    ("DELETE", "/agents/tasks/before"): _SEED + "admin.preview and admin.execute",
}

_REQUEST = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


def _pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


_PATTERNS = [(route, _pattern(route[1])) for route in [*CLIENT_METHODS, *NOT_WRAPPED]]


def requested_routes(access_log: Iterable[str]) -> set[tuple[str, str]]:
    """The routes (method, path template) that the lines of a server's access log requested
    and that were answered without a server error."""
    found = set()
    for line in access_log:
        match = _REQUEST.search(line)
        if match is None or match.group(3).startswith("5"):
            continue
        method, target = match.group(1), unquote(match.group(2).split("?", 1)[0])
        for route, pattern in _PATTERNS:
            if route[0] == method and pattern.fullmatch(target):
                found.add(route)
    return found
