"""Safeguards: the spike guard's deletion window, the SQLite single-runner lease, schedule ticks,
an index of runs by status and age (retention rules and stats), and (PostgreSQL only) the
agents_tasks_prune() function.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Deletes unheld runs started before before_ts and records itself in the audit log. It archives
# nothing: it is the documented no-archive path, for operators who choose it.
PRUNE_FUNCTION = """
CREATE OR REPLACE FUNCTION agents_tasks_prune(before_ts timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    deleted integer;
    audit_id bigint;
BEGIN
    IF before_ts IS NULL THEN
        RAISE EXCEPTION 'agents_tasks_prune: before_ts must not be NULL';
    END IF;
    INSERT INTO retention_runs (actor, trigger, mode, policy_name, started_at, outcome)
    VALUES ('sql:' || session_user, 'sql', 'execute', 'agents_tasks_prune', clock_timestamp(),
            'running')
    RETURNING id INTO audit_id;

    DELETE FROM runs r
    WHERE r.started_at < before_ts
      AND NOT EXISTS (
        SELECT 1 FROM retention_holds h
        WHERE h.released_at IS NULL
          AND ((h.scope = 'run' AND h.target_id = r.id::text)
            OR (h.scope = 'project' AND h.target_id = r.project_id::text)
            OR (h.scope = 'agent' AND h.target_id = r.agent_id::text)
            OR (h.scope = 'task' AND h.target_id = r.task_id::text)));
    GET DIAGNOSTICS deleted = ROW_COUNT;

    UPDATE retention_runs
    SET outcome = 'ok',
        finished_at = clock_timestamp(),
        counts = jsonb_build_object(
            'cutoff', before_ts,
            'rules', jsonb_build_array(jsonb_build_object(
                'name', 'agents_tasks_prune', 'table', 'runs', 'action', 'delete',
                'archive', false, 'affected', deleted)))
    WHERE id = audit_id;
    RETURN deleted;
END
$$;
"""


def upgrade() -> None:
    op.create_table(
        "deletion_events",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deletion_events")),
    )
    op.create_index("ix_deletion_events_occurred_at", "deletion_events", ["occurred_at"])
    op.create_table(
        "retention_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=320), nullable=True),
        sa.Column("acquired_at", TIMESTAMP, nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_retention_leases")),
    )
    op.create_table(
        "retention_schedule",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last_tick", TIMESTAMP, nullable=True),
        sa.Column("claimed_by", sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_retention_schedule")),
    )
    op.create_index("ix_runs_status_started_at", "runs", ["status", "started_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PRUNE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS agents_tasks_prune(timestamptz)")
    op.drop_index("ix_runs_status_started_at", table_name="runs")
    op.drop_table("retention_schedule")
    op.drop_table("retention_leases")
    op.drop_table("deletion_events")
