"""PostgreSQL's planner statistics of one table, for :mod:`taskledger.retention.stats`.

A table is read as the list of its leaves: a plain table is its own one leaf; a partitioned
table (``runs``, range-partitioned on ``started_at``) has its partitions as leaves, found with
``pg_partition_tree``, and the partitioned parent stores nothing itself. Per leaf, ``pg_class``
gives the planner's row estimate (``reltuples``), ``pg_total_relation_size`` the bytes, and
``pg_stats`` the distribution of the age column (``null_frac``, the most common values and the
equal-depth ``histogram_bounds``), from which the rows per age bucket are estimated without
reading the table. A partition's statistics only cover its own range, so summing the leaves'
estimates follows the partition bounds as closely as the planner itself does.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from taskledger.store.types import as_utc

# The table itself when it stores rows, and every leaf partition beneath it when it is
# partitioned (pg_partition_tree lists nothing for a plain table).
_LEAVES = text(
    """
    WITH target AS (SELECT to_regclass(:table) AS oid),
    leaves AS (
        SELECT c.oid FROM pg_class c, target WHERE c.oid = target.oid AND c.relkind <> 'p'
        UNION
        SELECT tree.relid FROM target, pg_partition_tree(target.oid) AS tree WHERE tree.isleaf
    )
    SELECT n.nspname, c.relname, c.reltuples, pg_total_relation_size(c.oid),
           s.null_frac, CAST(s.most_common_vals::text AS timestamptz[]), s.most_common_freqs,
           CAST(s.histogram_bounds::text AS timestamptz[])
    FROM leaves
    JOIN pg_class c ON c.oid = leaves.oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stats s
        ON s.schemaname = n.nspname AND s.tablename = c.relname
        AND s.attname = :column AND NOT s.inherited
    ORDER BY n.nspname, c.relname
    """
)


@dataclass(frozen=True)
class Distribution:
    """What ``pg_stats`` says of one leaf's age column: the share of NULLs, the most common
    values with their shares, and the bounds of equally filled ranges of the other values."""

    null_frac: float
    common: Sequence[tuple[datetime, float]]
    bounds: Sequence[datetime]

    def share_at_or_before(self, moment: datetime) -> float:
        """The estimated share of the leaf's rows whose age column is ``<= moment``."""
        common = sum(freq for value, freq in self.common if value <= moment)
        rest = max(0.0, 1.0 - self.null_frac - sum(freq for _, freq in self.common))
        return common + rest * _position(self.bounds, moment)


@dataclass(frozen=True)
class Leaf:
    """One table that stores rows: a plain table, or one partition of a partitioned one."""

    schema: str
    name: str
    #: ``pg_class.reltuples``; negative when the leaf was never analysed.
    reltuples: float
    bytes: int
    #: ``None`` when the age column has no statistics (the leaf was never analysed).
    distribution: Distribution | None

    @property
    def analysed(self) -> bool:
        return self.reltuples >= 0


def leaves(session: Session, table: str, age_column: str) -> list[Leaf]:
    """Every leaf of ``table``, with its statistics of ``age_column``; empty if no such table."""
    out = []
    for schema, name, reltuples, size, null_frac, mcv, freqs, bounds in session.execute(
        _LEAVES, {"table": table, "column": age_column}
    ):
        distribution = None
        if null_frac is not None:
            # The age columns are all timestamptz, so the server casts pg_stats' anyarray.
            common = zip(mcv or [], freqs or [], strict=True)
            distribution = Distribution(
                null_frac=float(null_frac),
                common=[(as_utc(value), float(freq)) for value, freq in common],
                bounds=[as_utc(value) for value in bounds or []],
            )
        out.append(Leaf(schema, name, float(reltuples), int(size or 0), distribution))
    return out


def _position(bounds: Sequence[datetime], moment: datetime) -> float:
    """Where ``moment`` falls among equal-depth histogram ``bounds``, as a share of the rows the
    histogram describes (linear within a range, as the planner interpolates)."""
    if len(bounds) < 2:
        return 1.0 if bounds and moment >= bounds[0] else 0.0
    if moment < bounds[0]:
        return 0.0
    if moment >= bounds[-1]:
        return 1.0
    index = bisect.bisect_right(bounds, moment) - 1
    low, high = bounds[index], bounds[index + 1]
    within = (moment - low) / (high - low) if high > low else 1.0
    return (index + within) / (len(bounds) - 1)
