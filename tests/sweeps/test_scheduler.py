"""Early stopping compares like with like: driven with synthetic learning curves where one family starts
slow and ends best, ASHA within families keeps that family's best trial to the end where plain ASHA
stops it, and still stops the worse trials of every family. No Ray instance is started: Tune's
controller calls the scheduler, and here the test does, in the order Tune would."""

from __future__ import annotations

import pickle
import types

import pytest
from ray import cloudpickle
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from sweeps import config as classify_config
from sweeps import detect_config
from sweeps.schedulers import GroupedASHA, RowFamily
from sweeps.space import scheduler
from trainables import metrics as M

MAX_T = 8  # epochs; with grace 1 and reduction factor 2 the rungs are at epochs 1, 2 and 4
SETTINGS = dict(metric=M.VAL_ACC, mode="max", max_t=MAX_T, grace_period=1, reduction_factor=2)


def linear(first: float, last: float):
    """Validation accuracy from ``first`` at epoch 1 to ``last`` at MAX_T."""
    return lambda t: first + (last - first) * (t - 1) / (MAX_T - 1)


# ResNets from random weights start slow and end best; ViTs start fast and plateau. Every ViT is ahead of
# every ResNet up to epoch 4; at epoch 8 the best ResNet is ahead of every ViT.
CURVES = {
    "resnet-best": ("resnet18", linear(0.21, 0.98)),
    "resnet-mid": ("resnet34", linear(0.17, 0.80)),
    "resnet-worst": ("resnet50", linear(0.10, 0.45)),
    "vit-best": ("vit_tiny_patch16_224", linear(0.71, 0.78)),
    "vit-mid": ("vit_small_patch16_224", linear(0.61, 0.68)),
    "vit-worst": ("deit_tiny_patch16_224", linear(0.56, 0.63)),
}
# Results of an epoch arrive interleaved across the families, as from trials running side by side.
ORDER = ("vit-best", "resnet-mid", "vit-mid", "resnet-best", "vit-worst", "resnet-worst")


def make_trials() -> dict[str, Trial]:
    return {
        name: Trial("synthetic", config={"arch": CURVES[name][0], "lr": 1e-3}, trial_id=name, stub=True)
        for name in ORDER
    }


def controller(trials: dict[str, Trial]):
    """What the schedulers are handed for Tune's controller; ASHA reads nothing of it, FIFO its trials."""
    return types.SimpleNamespace(get_trials=lambda: list(trials.values()))


def drive(sched: TrialScheduler, trials: dict[str, Trial], epochs=range(1, MAX_T + 1), decisions=None):
    """Feed each live trial's result epoch by epoch, as Tune's controller does: a trial told STOP is
    completed with that result and reports no more. Returns trial -> its decision at each epoch."""
    tc = controller(trials)
    decisions = {name: [] for name in trials} if decisions is None else decisions
    for epoch in epochs:
        for name in ORDER:
            if decisions[name] and decisions[name][-1] == TrialScheduler.STOP:
                continue
            result = {"training_iteration": epoch, M.VAL_ACC: CURVES[name][1](epoch)}
            decision = sched.on_trial_result(tc, trials[name], result)
            decisions[name].append(decision)
            if decision == TrialScheduler.STOP:
                sched.on_trial_complete(tc, trials[name], result)
    return decisions


def start(sched: TrialScheduler, trials: dict[str, Trial]) -> TrialScheduler:
    for trial in trials.values():
        sched.on_trial_add(controller(trials), trial)
    return sched


def grouped() -> GroupedASHA:
    return GroupedASHA(RowFamily("arch"), **SETTINGS)


def epochs_run(decisions: list[str]) -> int:
    return len(decisions)


def test_the_fixture_family_starts_slow_and_ends_best():
    at = {name: [curve(t) for t in range(1, MAX_T + 1)] for name, (_, curve) in CURVES.items()}
    vits, resnets = [at[n] for n in at if n.startswith("vit")], [at[n] for n in at if n.startswith("resnet")]
    assert min(v[3] for v in vits) > max(r[3] for r in resnets)  # epoch 4: every ViT ahead
    assert max(at, key=lambda n: at[n][-1]) == "resnet-best"  # epoch 8: the best ResNet ahead of all


def test_plain_asha_stops_the_slow_family_best_trial_early():
    trials = make_trials()
    decisions = drive(start(AsyncHyperBandScheduler(**SETTINGS), trials), trials)
    assert decisions["resnet-best"][-1] == TrialScheduler.STOP
    assert epochs_run(decisions["resnet-best"]) <= 4  # at a rung, long before the curves cross
    assert all(epochs_run(decisions[n]) < MAX_T for n in decisions if n.startswith("resnet"))


def test_asha_within_families_keeps_every_family_best_to_the_end_and_still_stops_the_worse():
    trials = make_trials()
    sched = start(grouped(), trials)
    decisions = drive(sched, trials)

    assert decisions["resnet-best"][: MAX_T - 1] == [TrialScheduler.CONTINUE] * (MAX_T - 1)
    assert epochs_run(decisions["resnet-best"]) == MAX_T  # the STOP at max_t is the horizon, as for ASHA
    assert epochs_run(decisions["vit-best"]) == MAX_T
    for worse in ("resnet-worst", "vit-mid", "vit-worst"):  # each behind its own family at the first rung
        assert decisions[worse] == [TrialScheduler.STOP], worse
    assert set(sched.groups) == {"resnet", "vit"}
    assert "resnet" in sched.debug_string() and "vit" in sched.debug_string()


def test_rung_state_survives_pickling_mid_sweep():
    trials = make_trials()
    sched = start(grouped(), trials)
    decisions = drive(sched, trials, epochs=range(1, 3))  # two epochs: rungs 1 and 2 hold values

    copies = [pickle.loads(pickle.dumps(sched)), cloudpickle.loads(cloudpickle.dumps(sched))]
    rest = range(3, MAX_T + 1)
    expected = drive(sched, trials, rest, {n: list(d) for n, d in decisions.items()})
    for copy in copies:
        assert drive(copy, trials, rest, {n: list(d) for n, d in decisions.items()}) == expected

    # The rungs came along: a newcomer to the ResNet family, behind it at the first rung, is stopped there
    # (a fresh state would let the first trial of a group through).
    late = Trial("synthetic", config={"arch": "resnet101"}, trial_id="resnet-late", stub=True)
    result = {"training_iteration": 1, M.VAL_ACC: 0.12}
    fresh = grouped()
    for sched_ in (copies[0], fresh):
        sched_.on_trial_add(controller(trials), late)
    assert copies[0].on_trial_result(controller(trials), late, result) == TrialScheduler.STOP
    assert fresh.on_trial_result(controller(trials), late, result) == TrialScheduler.CONTINUE


def test_save_and_restore_carry_every_group(tmp_path):
    trials = make_trials()
    sched = start(grouped(), trials)
    decisions = drive(sched, trials, epochs=range(1, 3))
    sched.save(str(tmp_path / "scheduler.pkl"))
    restored = GroupedASHA(RowFamily("arch"), **SETTINGS)
    restored.restore(str(tmp_path / "scheduler.pkl"))

    assert set(restored.groups) == {"resnet", "vit"}
    rest = range(3, MAX_T + 1)
    assert drive(restored, trials, rest, {n: list(d) for n, d in decisions.items()}) == drive(
        sched, trials, rest, {n: list(d) for n, d in decisions.items()}
    )


def test_trials_start_in_submission_order():
    trials = make_trials()
    sched = start(grouped(), trials)
    assert sched.choose_trial_to_run(controller(trials)) is trials[ORDER[0]]


@pytest.mark.parametrize(
    "make, row, family",
    [
        (
            lambda: classify_config.config_from_dict({"space": {"arch": ["resnet18", "vit_tiny_patch16_224"]}}),
            "vit_tiny_patch16_224",
            "vit",
        ),
        (lambda: detect_config.config_from_dict({}), "yolo11n", "yolo11"),
    ],
    ids=["classification", "detection"],
)
def test_both_tasks_stop_trials_within_families_by_default(make, row, family):
    cfg = make()
    sched = scheduler(cfg)
    assert isinstance(sched, GroupedASHA)
    assert sched.metric == cfg.objectives[0]
    assert sched.set_search_properties(None, None)  # what Tune passes when TuneConfig names no metric
    trial = Trial("synthetic", config={cfg.row_key: row}, trial_id="t", stub=True)
    sched.on_trial_add(None, trial)
    assert sched.group(trial) == family
    assert sched.groups[family].metric == cfg.objectives[0]
    cloudpickle.loads(cloudpickle.dumps(sched))  # Tune pickles it with the Tuner (tuner.pkl)


def test_no_asha_is_fifo():
    cfg = detect_config.config_from_dict({"asha": False})
    assert type(scheduler(cfg)) is FIFOScheduler


def test_a_row_of_unknown_family_is_its_own_group():
    assert RowFamily("model")({"model": "mlp"}) == "mlp"  # e.g. a task this project has no families for
    assert RowFamily("other")({"other": 3}) == "3"
    assert RowFamily("arch")({"arch": "mobilenetv3_small_100"}) == "other"  # trainables.models' own answer


def test_confirmation_trials_are_never_stopped_nor_ranked_with_the_search():
    """A trial with another seed than the sweep's is a confirmation: the scheduler lets it run every epoch,
    however far behind, and its results enter no family's rungs."""
    cfg = classify_config.config_from_dict({"space": {"arch": ["resnet18", "vit_tiny_patch16_224"]}})
    sched = scheduler(cfg)
    trials = {
        name: Trial("synthetic", config={"arch": "resnet18", "seed": seed}, trial_id=name, stub=True)
        for name, seed in (("search", cfg.seed), ("confirm", cfg.seed + 1))
    }
    start(sched, trials)
    tc = controller(trials)
    result = {M.VAL_ACC: 0.9, "training_iteration": 2}
    assert sched.on_trial_result(tc, trials["search"], result) == TrialScheduler.CONTINUE
    for epoch in range(1, cfg.max_epochs + 1):
        result = {M.VAL_ACC: 0.01, "training_iteration": epoch}
        assert sched.on_trial_result(tc, trials["confirm"], result) == TrialScheduler.CONTINUE
    assert list(sched.groups) == ["resnet"]  # the confirmation trial joined no group


@pytest.mark.parametrize(("grace", "max_epochs"), [(1, 8), (2, 4), (1, 2), (3, 20), (2, 9), (5, 5)])
def test_trials_make_their_evidence_at_every_epoch_the_scheduler_can_stop_them(grace, max_epochs):
    """A trial makes its evidence only after the epochs it may end at (``stop_epochs`` and its last): they
    must be every rung where the sweep's ASHA decides, or a stopped trial would end without it."""
    from sweeps.space import stop_epochs

    cfg = classify_config.config_from_dict(
        {"asha": True, "grace_period": grace, "max_epochs": max_epochs, "space": {"arch": "resnet18"}}
    )
    sched = scheduler(cfg)._template  # the settings every group's Ray ASHA is copied from
    rungs = sorted(int(m) for m, _ in sched._brackets[0]._rungs)  # Ray 2.60's rungs: (milestone, recorded)
    assert set(stop_epochs(cfg)) | {max_epochs} == set(rungs) | {max_epochs}
    assert stop_epochs(classify_config.config_from_dict({"asha": False, "space": {"arch": "resnet18"}})) == ()
