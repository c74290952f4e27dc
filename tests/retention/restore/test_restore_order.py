"""The order restore writes tables in: parents first (the models' foreign keys), for a subset
too, and a table restore cannot write is refused by name. The registry of retained tables lists
parents first as well."""

from __future__ import annotations

import pytest

from taskledger.retention.policy.tables import TABLES
from taskledger.retention.restore.judge import RESTORABLE, UnknownTable, check_tables, table_info


def test_restore_order_puts_parents_first() -> None:
    order = check_tables(TABLES)
    assert sorted(order) == sorted(TABLES)
    for listing in (order, list(TABLES)):  # restore's order, and the registry's own
        for name in listing:
            for parent in TABLES[name].parents:
                if parent.table in TABLES:
                    assert listing.index(parent.table) < listing.index(name)
    for name in RESTORABLE:  # the tables archives hold besides the retained ones too
        for fk in table_info(name).foreign_keys:
            if fk.parent_table in RESTORABLE and fk.parent_table != name:
                assert RESTORABLE.index(fk.parent_table) < RESTORABLE.index(name)
    assert order.index("instructions") < order.index("acknowledgements")
    assert order.index("tasks") < order.index("runs")
    assert order.index("agent_sessions") < order.index("agent_connections")


def test_restore_order_of_a_subset_and_of_unknown_tables() -> None:
    # A subset whose order the foreign keys fix entirely: an acknowledgement needs its
    # instruction, an instruction its session. (Tables no key orders, such as runs and
    # instructions, may come in either order.)
    assert check_tables(["acknowledgements", "agent_sessions", "instructions"]) == [
        "agent_sessions",
        "instructions",
        "acknowledgements",
    ]
    assert check_tables([]) == []
    with pytest.raises(UnknownTable, match="users"):
        check_tables(["runs", "users"])
