"""What the collector must not lose: seed 002 (the result backend forgets, taskledger does not),
a collector killed in the middle of a 2,000-task stream on RabbitMQ, workers sending no task
events, two collectors at once, the metrics port, and the events queue expiring."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from taskledger.client import Ledger
from taskledger.store import make_session_factory
from taskledger.store.models import Run
from tests.client.conftest import Live, database_for, seed
from tests.conftest import ADMIN_KEY
from tests.integrations.conftest import REDIS, CeleryKit, make_kit
from tests.serving import DEADLINE, free_port, server_env, serving, wait_until

ADD = "tests.integrations.celery_app.add"


def _completed(kit: CeleryKit, ids: set[str]) -> bool:
    runs = kit.runs()
    return all(t in runs and runs[t].status == "completed" for t in ids)


def test_seed_002_runs_outlive_the_result_backend(amqp_kit: CeleryKit) -> None:
    kit = amqp_kit
    kit.backend = f"{REDIS}/{uuid.uuid4().int % 14 + 1}"
    collector = kit.collector()
    kit.worker(TL_RESULT_EXPIRES="2")
    app = kit.producer()
    results = [app.send_task(ADD, args=[i, i]) for i in range(6)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(6)]
    ids = {r.id for r in results}
    wait_until(lambda: _completed(kit, ids), "the runs", alive=collector.check_alive)

    # The incident: the backend's TTL passes and Celery has forgotten every task.
    wait_until(
        lambda: all(app.AsyncResult(t).state == "PENDING" for t in ids),
        "the result backend to forget the tasks",
    )
    runs = kit.runs()
    assert {t for t in ids if runs[t].status == "completed"} == ids, "taskledger kept them all"

    # Retention then removes them only under the policy, archived first: half are made two
    # days old, and only those go.
    old = sorted(ids)[:3]
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    with make_session_factory(kit.live.engine).begin() as session:
        session.execute(
            update(Run)
            .where(Run.project_id == kit.live.project_id, Run.run_id.in_(old))
            .values(started_at=two_days_ago, finished_at=two_days_ago)
        )
    policy = f"""
name = "celery-history"
max_table_fraction = 1.0
[[rule]]
name = "old-celery-runs"
table = "runs"
older_than = "1d"
status = ["completed"]
projects = ["{kit.live.project_id}"]
action = "delete"
archive = true
"""
    with Ledger(kit.live.url, admin_key=ADMIN_KEY) as admin:
        preview = admin.admin.preview(policy=policy)
        assert preview.rules[0].model_dump()["matched"] == 3
        outcome = admin.admin.execute(preview.plan_id, policy=policy)
        assert outcome.rules[0].affected == 3
        assert outcome.archive_uri
    left = kit.runs()
    assert set(left) == ids - set(old)


def test_sigkill_mid_stream_loses_nothing_on_rabbitmq(amqp_kit: CeleryKit) -> None:
    kit = amqp_kit
    collector = kit.collector()
    kit.worker()
    app = kit.producer()
    # A stream of 2,000 tasks, the collector killed in the middle of it.
    first = {app.send_task(ADD, args=[i, 1]).id for i in range(1000)}
    wait_until(lambda: len(kit.runs()) >= 20, "some runs", alive=collector.check_alive)
    collector.stop(signal.SIGKILL)  # mid-stream: events delivered and not yet written
    # While it is down the events wait in its queue.
    second = {app.send_task(ADD, args=[i, 2]).id for i in range(1000)}
    restarted = kit.collector(name="collector, restarted")
    every = first | second
    wait_until(lambda: _completed(kit, every), "every run completed", alive=restarted.check_alive)
    assert set(kit.runs()) == every, "one run per task, none missing, none more"
    assert restarted.stop() == 0


def test_metrics_port_and_the_queue_expiring_after_its_collector(
    amqp_kit: CeleryKit,
) -> None:
    kit = amqp_kit
    port = free_port()
    collector = kit.collector("--metrics-port", str(port), "--queue-expires", "2")
    kit.worker()
    app = kit.producer()
    ids = {app.send_task(ADD, args=[i, 4]).id for i in range(5)}
    wait_until(lambda: _completed(kit, ids), "the runs completed", alive=collector.check_alive)

    def scraped() -> dict[str, float] | None:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
        return values if values["taskledger_collector_runs_created_total"] >= 5 else None

    values = wait_until(scraped, "the counters served", alive=collector.check_alive)
    assert values["taskledger_collector_task_events_total"] >= 15
    assert values["taskledger_collector_pending_states"] == 0
    assert collector.stop() == 0

    # --queue-expires 2: gone 2 s after its last consumer left. Looking (a passive declare)
    # counts as using it, so look less often than that.
    def expired() -> bool:
        with Connection(kit.broker) as conn:
            try:
                conn.default_channel.queue_declare(kit.events_queue, passive=True)
            except conn.channel_errors:
                return True
        return False

    wait_until(expired, "the events queue to expire", interval=5.0)


def test_two_collectors_write_no_duplicates(amqp_kit: CeleryKit) -> None:
    kit = amqp_kit
    one = kit.collector(queue=f"{kit.events_queue}-a", name="collector a")
    two = kit.collector(queue=f"{kit.events_queue}-b", name="collector b")
    kit.worker()
    app = kit.producer()
    ids = {app.send_task(ADD, args=[i, 3]).id for i in range(150)}
    wait_until(lambda: _completed(kit, ids), "every run completed", alive=one.check_alive)
    two.check_alive()
    with kit.ledger() as ledger:
        all_runs = list(ledger.runs.iter(page_size=1000))
    assert len(all_runs) == len(ids) == len({r.run_id for r in all_runs})
    with kit.ledger() as ledger:
        workers = [a for a in ledger.agents.iter(agent_type="celery-worker")]
        assert [a.name for a in workers] == [f"w1-{kit.uid}@tl"], "one agent per worker"
        active = list(ledger.connections.iter(agent_id=workers[0].id, status="active"))
        assert len(active) >= 1
    assert one.stop() == 0 and two.stop() == 0


def test_events_disabled_warns_and_enable_events_makes_them_flow(amqp_kit: CeleryKit) -> None:
    kit = amqp_kit
    collector = kit.collector()
    worker = kit.worker(events=False)
    app = kit.producer()
    app.send_task(ADD, args=[1, 1])
    wait_until(
        lambda: "sent no task events" in collector.output(),
        "the warning",
        alive=collector.check_alive,
    )
    assert "--enable-events" in collector.output()
    assert collector.stop() == 0
    worker.check_alive()

    enabled = kit.collector("--enable-events", name="collector --enable-events")
    wait_until(lambda: "sent enable_events" in enabled.output(), "enable_events sent")
    ids: set[str] = set()

    def flowing() -> bool:
        # The worker turns its events on when the broadcast reaches it: send until they flow.
        ids.add(app.send_task(ADD, args=[2, 2]).id)
        runs = kit.runs()
        return any(t in runs and runs[t].status == "completed" for t in ids)

    wait_until(flowing, "task events after enable_events", interval=1.0, alive=enabled.check_alive)
    assert enabled.stop() == 0


def test_redis_restart_reconciles_from_the_result_backend(live: Live, tmp_path: Path) -> None:
    kit = make_kit("redis", live, tmp_path, backend=f"{REDIS}/{uuid.uuid4().int % 14 + 1}")
    try:
        collector = kit.collector()
        kit.worker()
        app = kit.producer()
        slow = [app.send_task("tests.integrations.celery_app.nap", args=[2.0]) for _ in range(2)]

        def running() -> bool:
            runs = kit.runs()
            return all(r.id in runs and runs[r.id].status == "running" for r in slow)

        wait_until(running, "the runs running", alive=collector.check_alive)
        collector.stop(signal.SIGKILL)
        assert [r.get(timeout=60) for r in slow] == [2.0, 2.0]  # they end while it is down
        assert {kit.runs()[r.id].status for r in slow} == {"running"}
        restarted = kit.collector(
            "--result-backend", kit.backend or "", name="collector, restarted"
        )
        ids = {r.id for r in slow}
        wait_until(lambda: _completed(kit, ids), "the runs completed", alive=restarted.check_alive)
        assert restarted.stop() == 0
        assert restarted.counters()["runs_reconciled"] == 2
    finally:
        kit.close()


def test_help_does_not_import_celery() -> None:
    code = "import sys; from taskledger.cli import cli; print('celery' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_server_away_the_runs_wait_in_the_spool_and_arrive_later(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """With the server down the collector keeps writing, to its spool: it acknowledges the
    events (the broker keeps none), survives a SIGKILL, and the next start sends them."""
    from taskledger.store import make_engine

    url = database_for("sqlite", request, tmp_path)
    engine = make_engine(url)
    env, port = server_env(url, tmp_path, TASKLEDGER_ADMIN_API_KEY=ADMIN_KEY), free_port()
    project_id, _, keys = seed(engine)
    try:
        with serving(env, port=port) as server:
            live = Live(server, engine, env, project_id, keys["write"], keys["admin"], "", "")
            kit = make_kit("amqp", live, tmp_path)
            try:
                metrics = free_port()
                collector = kit.collector("--metrics-port", str(metrics))
                kit.worker()
                app = kit.producer()
                before = {app.send_task(ADD, args=[i, 5]).id for i in range(5)}
                wait_until(lambda: _completed(kit, before), "the first runs")
                server.process.terminate()
                server.process.wait(timeout=DEADLINE)

                after = {app.send_task(ADD, args=[i, 6]).id for i in range(20)}

                def all_spooled() -> bool:
                    text = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=30).text
                    values = {
                        s.name.removeprefix("taskledger_collector_"): s.value
                        for f in text_string_to_metric_families(text)
                        for s in f.samples
                    }
                    # Each task sends sent, received, started and succeeded.
                    return (
                        values["task_events_total"] >= 4 * (len(before) + len(after))
                        and values["pending_states"] == 0
                        and values["spool_batches"] >= 1
                    )

                wait_until(all_spooled, "the states in the spool", alive=collector.check_alive)
                with Connection(kit.broker) as conn:
                    _, waiting, _ = conn.default_channel.queue_declare(
                        kit.events_queue, passive=True
                    )
                assert waiting == 0, "acknowledged: the spool alone holds them now"
                collector.stop(signal.SIGKILL)
                spool = tmp_path / "state" / "taskledger" / "celery" / str(project_id)
                assert list(spool.glob("*.batch.json"))

                with serving(env, port=port) as again:
                    kit.live = Live(
                        again, engine, env, project_id, keys["write"], keys["admin"], "", ""
                    )
                    restarted = kit.collector(name="collector, restarted")
                    every = before | after
                    wait_until(
                        lambda: _completed(kit, every), "every run", alive=restarted.check_alive
                    )
                    assert set(kit.runs()) == every
                    assert restarted.stop() == 0
                    assert list(spool.glob("*.batch.json")) == []
            finally:
                kit.close()
    finally:
        engine.dispose()


def test_redis_sigkill_mid_stream_every_recorded_task_ends_final(
    live: Live, tmp_path: Path
) -> None:
    """A 2,000-task stream on Redis, the collector killed in the middle: what pub/sub sent
    meanwhile is gone, but every task it had recorded ends in its final state once it starts
    again with --result-backend."""
    kit = make_kit("redis", live, tmp_path, backend=f"{REDIS}/{uuid.uuid4().int % 14 + 1}")
    try:
        collector = kit.collector()
        kit.worker()
        app = kit.producer()
        results = [app.send_task(ADD, args=[i, 7]) for i in range(2000)]
        wait_until(lambda: len(kit.runs()) >= 50, "some runs", alive=collector.check_alive)
        collector.stop(signal.SIGKILL)
        wait_until(lambda: all(r.ready() for r in results), "every task done", interval=0.5)
        restarted = kit.collector("--result-backend", kit.backend or "", name="restarted")
        ids = set(kit.runs())
        assert len(ids) >= 50
        wait_until(lambda: _completed(kit, ids), "the runs completed", alive=restarted.check_alive)
        assert restarted.stop() == 0
        assert ids <= {r.id for r in results}
    finally:
        kit.close()
