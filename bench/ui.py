"""Web UI (issue 15): the Runs page's first render and a "Load more" fragment each cost at most
1.5x ``GET /api/v1/runs`` for the same page size and filters, at the start and deep in the keyset.

A real ``taskledger serve`` answers both over HTTP, in the same run: the API with an API key of
the project, the page with a logged-in session cookie. Each row of the table is one page size and
filter set at one depth: the page (or the fragment) against the API's page of the same rows,
timed in interleaved rounds (median of each). The deep cursor is built from the keyset of the row
at that depth, as ``paginate.py`` does, and both sides are checked to show the same run ids.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from sqlalchemy import Engine, and_, select

from benchlib import (
    Target,
    arguments,
    backends,
    console,
    fresh_database,
    interleaved_medians,
    ms,
    new_api_key,
    print_table,
    seed_runs,
    serve,
    times,
)
from taskledger.enums import RunStatus, Scope
from taskledger.schemas.runs import RunFilters
from taskledger.services.pagination import DEFAULT_LIMIT, encode_cursor, fingerprint
from taskledger.services.runs import RUNS_KEYSET, filter_conditions, filter_fingerprint_source
from taskledger.store import make_session_factory
from taskledger.store.models import Project, Run, User

TARGET = Target(1.5)  # page (or fragment) / API, same rows
REPEAT = 15
PASSWORD = "bench-password"  # benchlib.new_project's owner
#: (label, the page's query, the API's query, the filters).
FILTER_SETS: list[tuple[str, str, str, RunFilters]] = [
    ("no filter", "", "", RunFilters()),
    (
        "completed+failed",
        "status=completed&status=failed",
        "status=completed&status=failed",
        RunFilters(status=[RunStatus.COMPLETED, RunStatus.FAILED]),
    ),
]
_ROW = re.compile(r'<tr data-run="(\d+)"')


def owner_email(engine: Engine, project_id: uuid.UUID) -> str:
    with make_session_factory(engine).begin() as session:
        project = session.get(Project, project_id)
        assert project is not None
        user = session.get(User, project.owner_id)
        assert user is not None
        return user.email


def cursor_at(engine: Engine, project_id: uuid.UUID, filters: RunFilters, depth: int) -> str:
    """The cursor the list returns after ``depth`` rows of ``filters``."""
    with make_session_factory(engine).begin() as session:
        boundary = session.execute(
            select(Run.started_at, Run.id)
            .where(and_(*filter_conditions(project_id, filters)))
            .order_by(Run.started_at.desc(), Run.id.desc())
            .offset(depth - 1)
            .limit(1)
        ).one()
    fp = fingerprint(
        RUNS_KEYSET, {"project": str(project_id), **filter_fingerprint_source(filters)}
    )
    return encode_cursor(RUNS_KEYSET, list(boundary), fp)


def logged_in(base: str, email: str) -> httpx.Client:
    """A client with the web session of ``email``."""
    client = httpx.Client(base_url=base, timeout=60)
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    done = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    )
    assert done.status_code in (200, 303), done.status_code
    return client


def measure(engine: Engine, project_id: uuid.UUID, rows: int) -> list[list[Any]]:
    key = new_api_key(engine, project_id, Scope.READ)
    email = owner_email(engine, project_id)
    results: list[list[Any]] = []
    with serve(engine) as base:
        api = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60)
        web = logged_in(base, email)
        try:
            for label, page_query, api_query, filters in FILTER_SETS:
                deep = max(DEFAULT_LIMIT, rows * 9 // 10 // (1 if label == "no filter" else 3))
                cases = [
                    ("first render", None, f"/runs?project={project_id}&{page_query}"),
                    ("load more, start", DEFAULT_LIMIT, "/runs/rows"),
                    (f"load more, depth {deep:,}", deep, "/runs/rows"),
                ]
                for name, depth, path in cases:
                    cursor = cursor_at(engine, project_id, filters, depth) if depth else None
                    extra = f"&cursor={cursor}" if cursor else ""
                    if path == "/runs/rows":
                        path = f"/runs/rows?project={project_id}&{page_query}{extra}"
                    api_url = f"/api/v1/runs?project_id={project_id}&{api_query}{extra}"

                    def page_call(url: str = path) -> list[int]:
                        response = web.get(url, headers={"HX-Request": "true"})
                        assert response.status_code == 200, response.text[:500]
                        return [int(i) for i in _ROW.findall(response.text)]

                    def api_call(url: str = api_url) -> list[int]:
                        response = api.get(url)
                        assert response.status_code == 200, response.text[:500]
                        return [item["id"] for item in response.json()["items"]]

                    seen, expected = page_call(), api_call()
                    assert seen == expected and len(seen) == DEFAULT_LIMIT, (name, label)
                    api_time, page_time = interleaved_medians([api_call, page_call], repeat=REPEAT)
                    ratio = page_time / api_time
                    results.append(
                        [
                            label,
                            name,
                            ms(api_time),
                            ms(page_time),
                            times(ratio),
                            TARGET.verdict(ratio),
                        ]
                    )
        finally:
            api.close()
            web.close()
    return results


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rows=1_000_000)
    for backend in backends(args.backend):
        console.print(f"[bold]{backend}[/]: {args.rows:,} runs, pages of {DEFAULT_LIMIT}")
        with fresh_database(backend) as engine:
            project_id = seed_runs(engine, args.rows)
            rows = measure(engine, project_id, args.rows)
        print_table(
            f"Runs page vs GET /api/v1/runs on {backend}, {args.rows:,} runs "
            f"(median of {REPEAT}, interleaved)",
            ["filters", "request", "API", "page", "÷ API", "target"],
            rows,
        )


if __name__ == "__main__":
    main()
