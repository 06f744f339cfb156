"""The health package's public surface, pinned."""

from __future__ import annotations

import abaco.health


def test_health_exports_its_entry_points_and_policies():
    public = {name for name in dir(abaco.health) if not name.startswith("_")}
    assert set(abaco.health.__all__) <= public
    assert set(abaco.health.__all__) == {
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
    }


def test_every_module_declares_what_it_exports():
    from abaco.health import (
        autoscale,
        context,
        heartbeats,
        locks,
        reconcile,
        recovery,
        scaling,
        supervisor,
    )

    for module in (autoscale, context, heartbeats, locks, reconcile, recovery, scaling, supervisor):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
