"""PostgreSQL: ``runs`` becomes a table range-partitioned on ``started_at``; SQLite: nothing.

The existing table is copied into the partitioned one (a partition per period that holds rows,
``TASKLEDGER_RUNS_PARTITION`` = day|week|month, the current period and the next ones, and a
default partition), then dropped. The primary key becomes ``(id, started_at)``: a partitioned
table's unique indexes must hold its partition key. The uniqueness of an idempotency key per
project moves to the side table ``run_idempotency_keys``, kept by statement triggers on ``runs``
(see :mod:`taskledger.store.partitions`). The copy runs in the migration's transaction; its cost
per million rows is in docs/migrating.md. Downgrade copies the rows back into a plain table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from alembic import op

from taskledger.store.partitions import KEYS_TABLE, partition_history

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The indexes of ``runs`` at revision 0005 (their names and definitions), and the lookup index
#: the idempotency keys keep on the partitioned table.
INDEXES = {
    "ix_runs_agent_id": "(agent_id)",
    "ix_runs_task_id": "(task_id)",
    "ix_runs_run_id": "(run_id)",
    "ix_runs_started_at": "(started_at)",
    "ix_runs_started_at_desc_id_desc": "(started_at DESC, id DESC)",
    "ix_runs_project_id_started_at_desc_id_desc": "(project_id, started_at DESC, id DESC)",
    "ix_runs_status_started_at": "(status, started_at)",
}
LOOKUP_INDEX = ("ix_runs_project_id_idempotency_key", "(project_id, idempotency_key)")
FOREIGN_KEYS = {
    "fk_runs_project_id_projects": "(project_id) REFERENCES projects (id) ON DELETE CASCADE",
    "fk_runs_agent_id_agents": "(agent_id) REFERENCES agents (id) ON DELETE SET NULL",
    "fk_runs_task_id_tasks": "(task_id) REFERENCES tasks (id) ON DELETE SET NULL",
}

# One statement trigger per event, each with the rows it changed as a transition table: a row
# trigger would cost a function call per row of every batch insert and every retention delete.
TRIGGERS = """
CREATE FUNCTION runs_keys_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_idempotency_keys (project_id, idempotency_key)
    SELECT project_id, idempotency_key FROM new_rows WHERE idempotency_key IS NOT NULL;
    RETURN NULL;
END $$;
CREATE FUNCTION runs_keys_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM run_idempotency_keys k USING old_rows o
    WHERE o.idempotency_key IS NOT NULL
      AND k.project_id = o.project_id AND k.idempotency_key = o.idempotency_key;
    RETURN NULL;
END $$;
CREATE FUNCTION runs_keys_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.id = o.id
               WHERE (n.project_id, n.idempotency_key)
                     IS DISTINCT FROM (o.project_id, o.idempotency_key)) THEN
        DELETE FROM run_idempotency_keys k USING old_rows o JOIN new_rows n ON n.id = o.id
        WHERE o.idempotency_key IS NOT NULL
          AND (n.project_id, n.idempotency_key) IS DISTINCT FROM (o.project_id, o.idempotency_key)
          AND k.project_id = o.project_id AND k.idempotency_key = o.idempotency_key;
        INSERT INTO run_idempotency_keys (project_id, idempotency_key)
        SELECT n.project_id, n.idempotency_key FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE n.idempotency_key IS NOT NULL
          AND (n.project_id, n.idempotency_key) IS DISTINCT FROM (o.project_id, o.idempotency_key);
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION runs_keys_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE run_idempotency_keys;
    RETURN NULL;
END $$;
CREATE TRIGGER runs_keys_insert AFTER INSERT ON runs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION runs_keys_insert();
CREATE TRIGGER runs_keys_delete AFTER DELETE ON runs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION runs_keys_delete();
CREATE TRIGGER runs_keys_update AFTER UPDATE ON runs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION runs_keys_update();
CREATE TRIGGER runs_keys_truncate AFTER TRUNCATE ON runs
    FOR EACH STATEMENT EXECUTE FUNCTION runs_keys_truncate();
"""
DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS runs_keys_insert ON runs;
DROP TRIGGER IF EXISTS runs_keys_delete ON runs;
DROP TRIGGER IF EXISTS runs_keys_update ON runs;
DROP TRIGGER IF EXISTS runs_keys_truncate ON runs;
DROP FUNCTION IF EXISTS runs_keys_insert();
DROP FUNCTION IF EXISTS runs_keys_delete();
DROP FUNCTION IF EXISTS runs_keys_update();
DROP FUNCTION IF EXISTS runs_keys_truncate();
"""


def _period() -> str:
    from taskledger.settings import Settings

    return Settings().runs_partition


def _finish_table(*, partitioned: bool) -> None:
    """Keys, indexes and the sequence of a freshly copied ``runs``."""
    key = "(id, started_at)" if partitioned else "(id)"
    op.execute(f"ALTER TABLE runs ADD CONSTRAINT pk_runs PRIMARY KEY {key}")
    if not partitioned:
        op.execute(
            "ALTER TABLE runs ADD CONSTRAINT uq_runs_project_id_idempotency_key "
            "UNIQUE (project_id, idempotency_key)"
        )
    for name, definition in FOREIGN_KEYS.items():
        op.execute(f"ALTER TABLE runs ADD CONSTRAINT {name} FOREIGN KEY {definition}")
    indexes = dict(INDEXES)
    if partitioned:
        indexes[LOOKUP_INDEX[0]] = LOOKUP_INDEX[1]
    for name, columns in indexes.items():
        op.execute(f"CREATE INDEX {name} ON runs {columns}")
    op.execute("ALTER SEQUENCE runs_id_seq OWNED BY runs.id")


def _replace(*, partitioned: bool) -> None:
    op.execute("ALTER TABLE runs RENAME TO runs_old")
    op.execute("ALTER SEQUENCE runs_id_seq OWNED BY NONE")
    tail = " PARTITION BY RANGE (started_at)" if partitioned else ""
    op.execute(f"CREATE TABLE runs (LIKE runs_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS){tail}")
    if partitioned:
        # Every period holding rows gets its partition before the rows are copied.
        partition_history(op.get_bind(), _period(), datetime.now(UTC), source="runs_old")  # type: ignore[arg-type]
    op.execute("INSERT INTO runs SELECT * FROM runs_old")
    op.execute("DROP TABLE runs_old")
    _finish_table(partitioned=partitioned)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"CREATE TABLE {KEYS_TABLE} (project_id uuid NOT NULL, idempotency_key varchar(255) "
        f"NOT NULL, CONSTRAINT pk_{KEYS_TABLE} PRIMARY KEY (project_id, idempotency_key))"
    )
    op.execute(
        f"INSERT INTO {KEYS_TABLE} SELECT project_id, idempotency_key FROM runs "  # noqa: S608
        "WHERE idempotency_key IS NOT NULL"
    )
    _replace(partitioned=True)
    op.execute(TRIGGERS)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(DROP_TRIGGERS)
    _replace(partitioned=False)
    op.execute(f"DROP TABLE {KEYS_TABLE}")
