"""The Celery collector: Celery task events become taskledger runs, Celery workers agents.

Used by ``taskledger collect celery`` (:mod:`taskledger.cli.collect`). The pieces, each usable on
its own: :mod:`.mapping` (an event to a run's state, pure), :mod:`.writer` (those states to
client calls), :mod:`.workers` (workers to agents and connections), :mod:`.collector` (the
broker side: queue, consume, acknowledge, reconnect) and :mod:`.metrics` (counters).
"""

from taskledger.integrations.celery.mapping import MappingOptions, TaskState, task_run_key

__all__ = ["MappingOptions", "TaskState", "task_run_key"]
