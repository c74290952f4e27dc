"""Tasks that succeed, fail, retry then succeed, and are revoked, through a real worker and
``taskledger collect celery``: each ends as one run, with its status, duration and error text,
on RabbitMQ and on Redis."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integrations.conftest import CeleryKit
from tests.serving import wait_until

LONG = "tests.integrations.celery_app." + "a_task_name_much_longer_than_the_column" * 2


def _final(kit: CeleryKit, task_ids: list[str], proc: Any) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        runs = kit.runs()
        if all(
            t in runs and runs[t].status in ("completed", "failed", "cancelled") for t in task_ids
        ):
            return runs
        return None

    return wait_until(done, "every run final", alive=proc.check_alive)


def test_outcomes_become_one_run_each(kit: CeleryKit) -> None:
    collector = kit.collector("--redact", "token")
    kit.worker()
    app = kit.producer()
    key = f"flaky-{uuid.uuid4().hex}"
    ok = app.send_task("tests.integrations.celery_app.nap", args=[0.2])
    bad = app.send_task("tests.integrations.celery_app.fail", args=["it broke"])
    flaky = app.send_task("tests.integrations.celery_app.flaky", args=[key, 2])
    long = app.send_task(LONG)
    secret = app.send_task(
        "tests.integrations.celery_app.secret", kwargs={"token": "s3cr3t", "user": "ada"}
    )
    # Revoked before it is sent: the worker drops it on receipt (a task-revoked event).
    revoked_id = str(uuid.uuid4())
    replies = app.control.revoke(revoked_id, reply=True, timeout=30)
    assert replies, "the worker did not answer the revoke"
    app.send_task("tests.integrations.celery_app.add", args=[1, 2], task_id=revoked_id)

    ids = [ok.id, bad.id, flaky.id, long.id, secret.id, revoked_id]
    runs = _final(kit, ids, collector)

    assert len([r for r in runs.values() if r.run_id in ids]) == len(ids)
    assert len(runs) == len(ids), "one run per task, no more"

    done = runs[ok.id]
    assert done.status == "completed"
    assert done.task == "tests.integrations.celery_app.nap"
    assert done.inputs["args"] == [0.2]
    assert done.duration_ms is not None and done.duration_ms >= 200
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert done.idempotency_key == f"celery:{ok.id}"

    failed = runs[bad.id]
    assert failed.status == "failed"
    assert "ValueError" in failed.log_excerpt and "it broke" in failed.log_excerpt
    assert "Traceback" in failed.log_excerpt

    retried = runs[flaky.id]
    assert retried.status == "completed"
    assert "2 retries" in retried.log_excerpt

    assert runs[revoked_id].status == "cancelled"
    assert runs[revoked_id].task == "tests.integrations.celery_app.add"

    named = runs[long.id]
    assert named.status == "completed"
    assert len(named.task) <= 64 and named.task.endswith("column")
    assert named.inputs["celery"]["task"] == LONG

    hidden = runs[secret.id]
    assert hidden.inputs["kwargs"] == {"user": "ada"}, "--redact token drops the field"

    assert collector.stop() == 0
    out = collector.output()
    counters = collector.counters()
    assert counters["runs_created"] == len(runs) and counters["runs_rejected"] == 0
    assert counters["events_seen"] >= 2 * len(runs) and counters["pending_states"] == 0
    assert "Traceback" not in out.split("collector ready")[-1]
