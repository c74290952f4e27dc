"""The fold of a task's events into one run's state (pure: no broker, no server)."""

from __future__ import annotations

import itertools
from typing import Any

from taskledger.integrations.celery.mapping import MappingOptions, TaskState

T0 = 1_700_000_000.0
OPTIONS = MappingOptions(redact=frozenset({"password"}), max_input_chars=100)


def ev(kind: str, at: float, **fields: Any) -> dict[str, Any]:
    return {"type": f"task-{kind}", "uuid": "t-1", "timestamp": T0 + at, **fields}


def fold(events: list[dict[str, Any]]) -> TaskState:
    state = TaskState("t-1")
    for event in events:
        state.apply(event, OPTIONS)
    return state


LIFE = [
    ev("received", 0, name="app.add", args="(1, 2)", kwargs="{'password': 'x', 'n': 1}"),
    ev("started", 1),
    ev("succeeded", 3, runtime=2.0),
]


def test_every_order_of_the_events_ends_the_same() -> None:
    for order in itertools.permutations(LIFE):
        state = fold(list(order))
        assert state.status == "completed", order
        item = state.create_item()
        assert item["task"] == "app.add"
        assert item["duration_ms"] == 2000
        assert item["inputs"] == {"args": [1, 2], "kwargs": {"n": 1}}
        assert item["idempotency_key"] == "celery:t-1"


def test_a_late_event_never_moves_it_back_and_a_replay_changes_nothing() -> None:
    state = fold(LIFE)
    written = state.rank
    assert not state.apply(ev("started", 1), OPTIONS)
    assert not state.apply(LIFE[-1], OPTIONS)
    assert state.rank == written and state.status == "completed"


def test_retry_then_success_even_when_the_next_attempt_is_received_first() -> None:
    state = fold(
        [
            ev("received", 0, name="app.flaky", retries=0),
            ev("started", 1),
            ev("received", 2, name="app.flaky", retries=1),  # before the retried event
            ev("retried", 2, exception="RuntimeError('x')", traceback="Traceback ...\n"),
        ]
    )
    assert state.status == "queued" and state.retries == 1
    assert state.apply(ev("started", 3), OPTIONS)
    assert state.status == "running"
    state.apply(ev("succeeded", 4, runtime=1.0), OPTIONS)
    assert state.status == "completed" and "1 retries" in (state.log or "")


def test_a_missed_start_still_makes_a_run_and_skew_never_ends_before_it_starts() -> None:
    state = fold([ev("failed", -5, exception="ValueError('no')", traceback="Traceback\n")])
    item = state.create_item()
    assert item["task"] == "celery.unknown" and item["status"] == "failed"
    assert "ValueError('no')" in item["log_excerpt"]
    skewed = fold([ev("received", 10, name="a"), ev("revoked", 0)])
    fields = skewed.create_item()
    assert fields["status"] == "cancelled"
    assert fields["finished_at"] >= fields["started_at"]


def test_long_names_and_large_inputs() -> None:
    name = "pkg." + "x" * 100 + ".task"
    state = fold([ev("received", 0, name=name, args=repr(["y" * 500]))])
    item = state.create_item()
    assert len(item["task"]) == 64 and item["task"].endswith(".task")
    assert item["inputs"]["celery"]["task"] == name
    assert item["inputs"]["args"]["truncated"] is True
