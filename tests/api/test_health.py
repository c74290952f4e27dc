"""/healthz, /readyz and /metrics, and the body-size limit every route shares."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from taskledger.api import create_app
from taskledger.settings import Settings
from taskledger.store import make_engine, migrate


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_at_head(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["revision"] == migrate.head_revision()


def test_readyz_on_an_unmigrated_database(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'blank.db'}", _env_file=None
    )  # type: ignore[call-arg]
    engine = make_engine(settings.resolved_database_url)
    try:
        app = create_app(settings, engine=engine)
        # No lifespan here: start-up would need the tables. Liveness does not.
        client = TestClient(app)
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "upgrade" in response.json()["detail"]
    finally:
        engine.dispose()


def test_readyz_when_the_database_is_unreachable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"  # the directory does not exist
    settings = Settings(data_dir=tmp_path, database_url=url, _env_file=None)  # type: ignore[call-arg]
    engine = make_engine(url)
    try:
        client = TestClient(create_app(settings, engine=engine))
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
    finally:
        engine.dispose()


def test_metrics_parse_and_count_requests(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/healthz")
    client.get("/no-such-page")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in (
        "taskledger_http_requests",
        "taskledger_http_request_duration_seconds",
        "taskledger_runs_recorded",
        "taskledger_retention_rows",
        "taskledger_retention_duration_seconds",
        "taskledger_retention_last_success_timestamp_seconds",
        "taskledger_spike_alerts",
    ):
        assert name in families, name
    samples = {
        (s.labels.get("route"), s.labels.get("status")): s.value
        for s in families["taskledger_http_requests"].samples
        if s.name == "taskledger_http_requests_total"
    }
    assert samples[("/healthz", "200")] == 2
    assert samples[("<unmatched>", "404")] == 1


def test_oversized_body_is_413(client: TestClient) -> None:
    big = b"x" * (1024 * 1024 + 1)
    response = client.post("/healthz", content=big)
    assert response.status_code == 413
    assert "detail" in response.json()


def test_oversized_chunked_body_is_413(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"y" * 65536

    response = client.post("/healthz", content=chunks())
    assert response.status_code in (405, 413)  # the route reads no body: 405 is also honest
