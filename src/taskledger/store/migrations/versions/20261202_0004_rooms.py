"""Rooms and their participants (seed 004), the room a task belongs to, and the hold scope
``room``.

On SQLite, adding (and dropping) ``tasks.room_id`` with its named foreign key rebuilds
``tasks``; dropping the old table under ``foreign_keys=ON`` deletes the task dependencies and
unlinks the runs that reference it, so the rebuild puts those rows back afterwards. The scope
CHECK of ``retention_holds`` is replaced the same way (rebuilt on SQLite, keeping AUTOINCREMENT).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
HOLD_SCOPES = ("project", "agent", "task", "run", "session")


def _hold_scopes(scopes: Sequence[str]) -> None:
    """Let ``retention_holds.scope`` take exactly ``scopes``."""
    allowed = ", ".join(f"'{s}'" for s in scopes)
    with op.batch_alter_table(
        "retention_holds", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint(op.f("ck_retention_holds_scope"), type_="check")
        batch.create_check_constraint(
            op.f("ck_retention_holds_scope"), sa.text(f"scope IN ({allowed})")
        )


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("topic", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("archived_at", TIMESTAMP, nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_rooms_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_rooms_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rooms")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_rooms_project_id_name")),
    )
    op.create_index("ix_rooms_project_id", "rooms", ["project_id"])
    op.create_table(
        "room_participants",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("room_id", sa.Uuid(), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("participant_type", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("joined_at", TIMESTAMP, nullable=False),
        sa.Column("left_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "participant_type IN ('agent', 'user')",
            name=op.f("ck_room_participants_participant_type"),
        ),
        sa.CheckConstraint(
            "role IN ('owner', 'member', 'observer')", name=op.f("ck_room_participants_role")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_room_participants_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
            name=op.f("fk_room_participants_room_id_rooms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_room_participants")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_room_participants_project_id", "room_participants", ["project_id"])
    op.create_index("ix_room_participants_participant_id", "room_participants", ["participant_id"])
    op.create_index(
        "ix_room_participants_room_id_joined_at", "room_participants", ["room_id", "joined_at"]
    )
    op.create_index(
        "uq_room_participants_active",
        "room_participants",
        ["room_id", "participant_type", "participant_id"],
        unique=True,
        sqlite_where=sa.text("left_at IS NULL"),
        postgresql_where=sa.text("left_at IS NULL"),
    )
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_tasks(add_room_id=True)
    else:
        op.add_column("tasks", sa.Column("room_id", sa.Uuid(), nullable=True))
        op.create_foreign_key(
            op.f("fk_tasks_room_id_rooms"),
            "tasks",
            "rooms",
            ["room_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index("ix_tasks_room_id", "tasks", ["room_id"])
    _hold_scopes((*HOLD_SCOPES, "room"))


def downgrade() -> None:
    op.execute("DELETE FROM retention_holds WHERE scope = 'room'")
    _hold_scopes(HOLD_SCOPES)
    op.drop_index("ix_tasks_room_id", table_name="tasks")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_tasks(add_room_id=False)
    else:
        op.drop_constraint(op.f("fk_tasks_room_id_rooms"), "tasks", type_="foreignkey")
        op.drop_column("tasks", "room_id")
    op.drop_index("uq_room_participants_active", table_name="room_participants")
    op.drop_index("ix_room_participants_room_id_joined_at", table_name="room_participants")
    op.drop_index("ix_room_participants_participant_id", table_name="room_participants")
    op.drop_index("ix_room_participants_project_id", table_name="room_participants")
    op.drop_table("room_participants")
    op.drop_index("ix_rooms_project_id", table_name="rooms")
    op.drop_table("rooms")


def _rebuild_tasks(*, add_room_id: bool) -> None:
    """SQLite: rebuild ``tasks`` with (or without) ``room_id``, keeping the rows that dropping
    the old table deletes (its dependencies) or unlinks (its runs) under ``foreign_keys=ON``."""
    bind = op.get_bind()
    edges = bind.execute(sa.text("SELECT task_id, depends_on_id FROM task_dependencies")).all()
    links = bind.execute(sa.text("SELECT id, task_id FROM runs WHERE task_id IS NOT NULL")).all()
    with op.batch_alter_table("tasks", recreate="always") as batch:
        if add_room_id:
            batch.add_column(sa.Column("room_id", sa.Uuid(), nullable=True))
            batch.create_foreign_key(
                op.f("fk_tasks_room_id_rooms"), "rooms", ["room_id"], ["id"], ondelete="SET NULL"
            )
        else:
            batch.drop_constraint(op.f("fk_tasks_room_id_rooms"), type_="foreignkey")
            batch.drop_column("room_id")
    bind.execute(sa.text("DELETE FROM task_dependencies"))
    for task_id, depends_on_id in edges:
        bind.execute(
            sa.text("INSERT INTO task_dependencies (task_id, depends_on_id) VALUES (:t, :d)"),
            {"t": task_id, "d": depends_on_id},
        )
    for run_id, task_id in links:
        bind.execute(
            sa.text("UPDATE runs SET task_id = :t WHERE id = :r"), {"t": task_id, "r": run_id}
        )
