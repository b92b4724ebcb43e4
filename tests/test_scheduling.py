"""Trials of a stage are handed to Ray Tune longest first (LPT), by the compute estimate."""
from __future__ import annotations

from harness.estimate import longest_first, model_macs, trial_epochs
from harness.experiments import load_experiment, make_plan
from harness.scales import LOCAL


def test_table6_stages_start_with_the_longest_trials():
    """Local Table 6: each stage keeps its trials; 5-epoch (mixup) Inception trials come
    before 3-epoch ones, and every 3-epoch MobileNet trial comes last."""
    plan = make_plan(load_experiment("paper_table6"), LOCAL)
    macs = model_macs(plan)
    for stage in plan.stages():
        order = longest_first(plan, stage, macs)
        assert sorted(t.hash for t in order) == sorted(t.hash for t in stage)
        students = [t for t in order if t.model != LOCAL.teacher_model]
        first = students[0]
        assert (first.model, trial_epochs(plan, first)) == ("inception_v3", 5)
        tail = {(t.model, trial_epochs(plan, t)) for t in students[-2:]}
        assert tail == {("mobilenet", 3)}
        epochs_inception = [trial_epochs(plan, t) for t in order if t.model == "inception_v3"]
        assert epochs_inception == sorted(epochs_inception, reverse=True)


def test_equal_estimates_keep_the_plan_order():
    """Seeds of one cell tie on the estimate and stay in the plan's order (stable sort)."""
    plan = make_plan(load_experiment("paper_table6"), LOCAL)
    stage = plan.stages()[-1]
    order = longest_first(plan, stage, model_macs(plan))
    for a, b in zip(order, order[1:]):
        if (a.model, a.row, a.recipe) == (b.model, b.row, b.recipe):
            assert a.seed < b.seed


def test_trial_slots_follow_the_cluster_and_the_cap():
    """Concurrency in the run summary: CPUs (and GPUs) over one trial's share, capped."""
    from harness.orchestrator import trial_slots

    assert trial_slots({"CPU": 2.0}, 1, 0) == 2  # the local scale on this 2-core machine
    assert trial_slots({"CPU": 16.0, "GPU": 4.0}, 1, 1) == 4  # paper scale: GPUs bind
    assert trial_slots({"CPU": 16.0, "GPU": 1.0}, 1, 0.25) == 4  # miniatures share a GPU
    assert trial_slots({"CPU": 8.0}, 1, 0, workers=2) == 4  # DDP trials take N workers
    assert trial_slots({"CPU": 8.0}, 1, 0, max_concurrent=3) == 3
    assert trial_slots({"CPU": 0.5}, 1, 0) == 1  # never 0
