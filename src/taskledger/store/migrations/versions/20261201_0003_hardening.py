"""Hardening: integer keys that are never reused on SQLite, the login throttle's window, and the
audit log's lock holder and single-use plans.

On SQLite, a table's integer key is ``max(id) + 1`` unless the table says ``AUTOINCREMENT``: once
the row holding the highest id is deleted, its id goes to the next new row, and the archived row
can no longer be restored under its own key. This revision rebuilds every table with an integer
key (runs, agent_connections, acknowledgements, retention_runs, retention_holds,
deletion_events) with ``AUTOINCREMENT``, keeping every row. PostgreSQL sequences never hand out a
value twice, so there the revision only adds what is new.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

INTEGER_KEYED = (
    "retention_holds",
    "retention_runs",
    "deletion_events",
    "runs",
    "agent_connections",
    "acknowledgements",
)

# Reflection on SQLite drops the direction of index columns; these are put back as they were.
DESCENDING_INDEXES = {
    "ix_runs_started_at_desc_id_desc": ("runs", ["started_at DESC", "id DESC"]),
    "ix_runs_project_id_started_at_desc_id_desc": (
        "runs",
        ["project_id", "started_at DESC", "id DESC"],
    ),
}


def _rebuild(table: str, *, autoincrement: bool) -> None:
    """SQLite: copy ``table`` into a new table with (or without) AUTOINCREMENT, rows and all."""
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
    for name, (owner, columns) in DESCENDING_INDEXES.items():
        if owner == table:
            op.drop_index(name, table_name=table)
            op.create_index(name, table, [sa.text(c) for c in columns])


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for table in INTEGER_KEYED:
            _rebuild(table, autoincrement=True)
    with op.batch_alter_table("retention_runs") as batch:
        batch.add_column(sa.Column("holder", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("consumed_by", sa.BigInteger(), nullable=True))
    op.create_table(
        "login_failures",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("account", sa.String(length=320), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_login_failures_account_occurred_at", "login_failures", ["account", "occurred_at"]
    )
    op.create_index(
        "ix_login_failures_address_occurred_at", "login_failures", ["address", "occurred_at"]
    )
    op.create_index("ix_login_failures_occurred_at", "login_failures", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_occurred_at", table_name="login_failures")
    op.drop_index("ix_login_failures_address_occurred_at", table_name="login_failures")
    op.drop_index("ix_login_failures_account_occurred_at", table_name="login_failures")
    op.drop_table("login_failures")
    with op.batch_alter_table("retention_runs") as batch:
        batch.drop_column("consumed_by")
        batch.drop_column("holder")
    if op.get_bind().dialect.name == "sqlite":
        for table in INTEGER_KEYED:
            _rebuild(table, autoincrement=False)
