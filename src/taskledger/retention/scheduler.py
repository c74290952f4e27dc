"""The in-process schedule of ``taskledger serve``: run the policy in force on a cron expression.

Every replica runs the same schedule; each tick is claimed in the database first (one
conditional UPDATE), so N replicas produce exactly one run per tick, and the single-runner lock
keeps that run alone. A tick's outcome (including a refusal by a safeguard) is in the audit log.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from croniter import croniter
from sqlalchemy import Engine, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionTrigger
from taskledger.errors import ConfigurationError, TaskledgerError
from taskledger.metrics import Metrics
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.execute.runner import execute_policy, preview_policy
from taskledger.retention.policy.load import load_policy
from taskledger.retention.safeguards.lock import holder_identity
from taskledger.settings import Settings
from taskledger.store.engine import for_writing
from taskledger.store.models import ScheduleTick
from taskledger.store.types import utcnow

log = logging.getLogger(__name__)
SCHEDULE_NAME = "retention"


def validate_schedule(expression: str) -> None:
    """Refuse a cron expression croniter cannot read (5 fields, or 6 with seconds last)."""
    if not croniter.is_valid(expression):
        raise ConfigurationError(f"TASKLEDGER_RETENTION_SCHEDULE {expression!r} is not cron")


def claim_tick(engine: Engine, tick: datetime, holder: str) -> bool:
    """Claim ``tick`` for this process; ``False`` when another replica already has it."""
    with for_writing(engine).begin() as conn:
        claimed = conn.execute(
            update(ScheduleTick)
            .where(
                ScheduleTick.name == SCHEDULE_NAME,
                or_(ScheduleTick.last_tick.is_(None), ScheduleTick.last_tick < tick),
            )
            .values(last_tick=tick, claimed_by=holder)
        ).rowcount
    if claimed:
        return True
    try:
        with for_writing(engine).begin() as conn:
            conn.execute(
                insert(ScheduleTick).values(name=SCHEDULE_NAME, last_tick=tick, claimed_by=holder)
            )
        return True
    except IntegrityError:
        return False


class Scheduler:
    """A daemon thread that runs retention on ``settings.scheduler.schedule``."""

    def __init__(
        self,
        engine: Engine,
        sessions: sessionmaker[Session],
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        assert settings.scheduler.schedule
        validate_schedule(settings.scheduler.schedule)
        self.engine = engine
        self.sessions = sessions
        self.settings = settings
        self.metrics = metrics
        self.holder = holder_identity()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="taskledger-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        assert self.settings.scheduler.schedule
        ticks = croniter(self.settings.scheduler.schedule, utcnow())
        while not self._stop.is_set():
            tick: datetime = ticks.get_next(datetime)
            if self._stop.wait(max(0.0, (tick - utcnow()).total_seconds())):
                return
            try:
                if claim_tick(self.engine, tick, self.holder):
                    self.run_tick(tick)
            except Exception:  # a bad tick must not end the schedule
                log.exception("scheduled retention at %s failed", tick.isoformat())

    def run_tick(self, tick: datetime) -> None:
        """Preview and execute the policy in force, as trigger ``schedule``."""
        request = RetentionRequest(
            actor=f"schedule:{self.holder}",
            trigger=RetentionTrigger.SCHEDULE,
            reason=f"scheduled tick {tick.isoformat()}",
            policy=load_policy(self.settings.retention.policy),
            archive=ArchiveTarget.from_settings(self.settings),
            safeguards=Safeguards.from_settings(self.settings),
            metrics=self.metrics,
        )
        previewed = preview_policy(self.sessions, request)
        try:
            report = execute_policy(self.engine, self.sessions, request.confirming(previewed))
        except TaskledgerError as exc:
            log.warning("scheduled retention at %s refused: %s", tick.isoformat(), exc.detail)
            return
        log.info(
            "scheduled retention at %s: %s, %d rows",
            tick.isoformat(),
            report.outcome,
            report.affected,
        )
