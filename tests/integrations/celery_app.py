"""The Celery app the collector's tests run in a real worker: its broker, backend, queue and
events exchange come from the environment, so that each test has its own."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

app = Celery(
    "tl_tests",
    broker=os.environ.get("TL_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("TL_BACKEND") or None,
)
app.conf.update(
    task_default_queue=os.environ.get("TL_QUEUE", "tl-tests"),
    event_exchange=os.environ.get("TL_EXCHANGE", "celeryev"),
    worker_send_task_events=os.environ.get("TL_EVENTS", "1") == "1",
    task_send_sent_event=True,
    result_expires=int(os.environ.get("TL_RESULT_EXPIRES", "86400")),
    worker_prefetch_multiplier=int(os.environ.get("TL_PREFETCH", "4")),
    broker_connection_retry_on_startup=True,
    task_acks_late=False,
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(bind=True, max_retries=5)
def flaky(self, key: str, times: int) -> str:  # type: ignore[no-untyped-def]
    """Fails ``times`` times (counted in Redis under ``key``), retrying, then succeeds."""
    client = redis.Redis.from_url(os.environ.get("TL_COUNTER", "redis://127.0.0.1:6379/15"))
    if client.incr(key) <= times:
        raise self.retry(exc=RuntimeError(f"flaky {key}"), countdown=0.05)
    return "ok"


@app.task(name="tests.integrations.celery_app." + "a_task_name_much_longer_than_the_column" * 2)
def long_name() -> str:
    return "long"


@app.task
def secret(token: str, user: str) -> str:
    return user
