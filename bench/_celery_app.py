"""The Celery app of ``bench/collector.py``, run by a real worker: one task that does nothing, so
that the benchmark measures the events and the collector, not the work. Its broker, queue and
events exchange come from the environment, so each run has its own."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("tl_bench", broker=os.environ.get("TL_BROKER", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_default_queue=os.environ.get("TL_QUEUE", "tl-bench"),
    event_exchange=os.environ.get("TL_EXCHANGE", "celeryev"),
    worker_send_task_events=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=64,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop(i: int) -> int:
    return i
