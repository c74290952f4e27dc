"""A retention run as its caller asks for it: who, why, which policy, where to, which safeguards.

Each face builds one :class:`RetentionRequest` and hands it over, and does nothing else with
retention: the CLI (``retention preview``, ``retention run``, ``runs prune``), the API
(``/api/v1/admin/retention``), the scheduler and the seed endpoint (``DELETE
/agents/tasks/before``). :mod:`taskledger.retention.execute.runner` previews and executes a
policy from it, :func:`taskledger.retention.execute.deletes.prune_runs_before` prunes with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from taskledger.enums import RetentionTrigger
from taskledger.metrics import Metrics
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.execute.executor import Progress
from taskledger.retention.plan.plans import ConfirmedPlan, RecordedPreview
from taskledger.retention.policy.rules import Policy
from taskledger.retention.safeguards.guard import SpikeGuard
from taskledger.settings import DEFAULT_PLAN_TTL, Settings


@dataclass(frozen=True, kw_only=True)
class Safeguards:
    """What may refuse or hold back a run, besides the caps its policy sets.

    Attributes:
        plan: The plan an execution consumes: the preview just made (the CLI and the scheduler
            preview, then execute), or a ``plan_id`` to look up in the audit log (the API's
            ``confirm``; a refusal there is audited too). ``None`` for a preview or a prune.
        force: Let a rule take more than ``max_table_fraction`` of its table (a prune: lift
            both caps); needs the request's ``reason``.
        dry_run_only: ``TASKLEDGER_RETENTION_DRY_RUN_ONLY``: an execution becomes an audited
            preview that claims nothing.
        plan_ttl: Seconds a plan stays executable after its preview.
        spike_guard: The shared deletion window a prune is counted in (and alerts through).
    """

    plan: ConfirmedPlan | str | None = None
    force: bool = False
    dry_run_only: bool = False
    plan_ttl: int = DEFAULT_PLAN_TTL
    spike_guard: SpikeGuard | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **chosen: Any) -> Safeguards:
        """The safeguards the settings configure (dry-run-only mode, plan TTL), plus ``chosen``."""
        return cls(
            dry_run_only=settings.retention.dry_run_only,
            plan_ttl=settings.retention.plan_ttl,
            **chosen,
        )


@dataclass(frozen=True, kw_only=True)
class RetentionRequest:
    """One retention run: who asks, why, which policy, where it archives, with which safeguards.

    Attributes:
        actor: Who asks, as the audit log names them (``cli:alice``, a principal, the schedule).
        trigger: What started the run: the CLI, the API, the schedule or the seed endpoint.
        reason: Why, in words; audited, and required with ``safeguards.force``.
        policy: The policy whose rules run (for a prune: whose caps bound it).
        archive: Where rows are archived before they change, and at which gzip level (which a
            preview uses to estimate archive sizes).
        safeguards: The plan to consume, ``force``, dry-run-only mode, the plan TTL, the spike
            window.
        metrics: Counted into, when given.
        progress: Called with (rule name, rows handled) after each batch.
    """

    actor: str
    trigger: RetentionTrigger
    policy: Policy
    archive: ArchiveTarget
    reason: str | None = None
    safeguards: Safeguards = field(default_factory=Safeguards)
    metrics: Metrics | None = None
    progress: Progress | None = None

    def confirming(self, previewed: RecordedPreview) -> RetentionRequest:
        """This request, set to consume the plan of ``previewed``, a preview it just made."""
        plan = ConfirmedPlan.from_preview(previewed)
        return replace(self, safeguards=replace(self.safeguards, plan=plan))
