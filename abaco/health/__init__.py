"""The health supervisor: dead workers and hosts, replacements, autoscaling, repairs.

Layering: :mod:`~abaco.health.heartbeats` and :mod:`~abaco.health.autoscale` are pure
policy (records and a clock in, decisions out); :mod:`~abaco.health.locks` and
:mod:`~abaco.health.context` are the supervisor's small plumbing;
:mod:`~abaco.health.recovery`, :mod:`~abaco.health.scaling` and
:mod:`~abaco.health.reconcile` act on the stores; :mod:`~abaco.health.supervisor` runs
them as passes. This module re-exports the public names.
"""

from __future__ import annotations

from abaco.health.autoscale import Census as Census
from abaco.health.autoscale import ScalePlan as ScalePlan
from abaco.health.autoscale import ScalePolicy as ScalePolicy
from abaco.health.autoscale import plan_scaling as plan_scaling
from abaco.health.context import Health as Health
from abaco.health.context import PassReport as PassReport
from abaco.health.context import open_health as open_health
from abaco.health.heartbeats import Deadlines as Deadlines
from abaco.health.heartbeats import HostState as HostState
from abaco.health.heartbeats import WorkerVerdict as WorkerVerdict
from abaco.health.heartbeats import judge_worker as judge_worker
from abaco.health.supervisor import check_once as check_once
from abaco.health.supervisor import main as main
from abaco.health.supervisor import run_health as run_health

__all__ = [
    "Census",
    "Deadlines",
    "Health",
    "HostState",
    "PassReport",
    "ScalePlan",
    "ScalePolicy",
    "WorkerVerdict",
    "check_once",
    "judge_worker",
    "main",
    "open_health",
    "plan_scaling",
    "run_health",
]
