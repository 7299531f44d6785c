"""The confirmation stage's searcher, driven as Tune's search generator drives it: the search's trials
first, nothing more until every one of them has ended, then the best that trained every epoch again with
each further seed; a trial the scheduler stopped at max_epochs hands its last result to on_trial_complete
only. No Ray instance is started."""

from __future__ import annotations

import pickle

from ray.tune.search import Searcher

from sweeps.config import config_from_dict
from sweeps.space import Confirmation, search_algorithm
from trainables import metrics as M

SPACE = {"arch": ["resnet18", "convnext_atto"], "freeze": ["full", "frozen"], "lr": [1e-3, 3e-3]}


def recipe(**settings):
    return config_from_dict({"num_samples": 5, "max_epochs": 3, "seed": 7, "space": SPACE, **settings})


def test_no_confirm_key_is_the_search_alone():
    assert not isinstance(search_algorithm(recipe()), Confirmation)
    assert not isinstance(search_algorithm(recipe(confirm=None)), Confirmation)
    assert not isinstance(search_algorithm(recipe(confirm={"top": 2, "seeds": 0})), Confirmation)


def test_the_best_full_length_configurations_again_with_each_further_seed():
    alg = search_algorithm(recipe(confirm={"top": 2, "seeds": 2}))
    assert isinstance(alg, Confirmation)
    ids = [f"t{i}" for i in range(5)]
    configs = {t: alg.suggest(t) for t in ids}
    assert len({tuple(sorted(c.items())) for c in configs.values()}) == 5  # five search configurations
    assert all(c["seed"] == 7 for c in configs.values())
    # final accuracies 0.5, 0.9 (stopped at epoch 1: not confirmable), 0.7, 0.8, failed
    finals = {"t0": 0.5, "t2": 0.7, "t3": 0.8}
    for t, acc in finals.items():
        for epoch in (1, 2):
            alg.on_trial_result(t, {M.VAL_ACC: acc - 0.1 * (3 - epoch), "training_iteration": epoch})
    alg.on_trial_result("t1", {M.VAL_ACC: 0.9, "training_iteration": 1})
    alg.on_trial_complete("t1", {M.VAL_ACC: 0.9, "training_iteration": 1})  # stopped early
    alg.on_trial_complete("t4", error=True)
    for t in ("t0", "t2"):  # the scheduler stopped them at max_epochs: the last result comes only here
        alg.on_trial_complete(t, {M.VAL_ACC: finals[t], "training_iteration": 3})
    assert alg.suggest("c0") is None  # t3 is still running: the confirmation waits
    saved = pickle.loads(pickle.dumps(alg))  # the state Tune saves with the sweep, mid-way
    for a in (alg, saved):
        a.on_trial_complete("t3", {M.VAL_ACC: finals["t3"], "training_iteration": 3})
        proposed = [a.suggest(f"c{i}") for i in range(4)]
        best, second = configs["t3"], configs["t2"]  # 0.8 and 0.7; t1's 0.9 came from one epoch
        assert proposed == [{**best, "seed": 8}, {**best, "seed": 9}, {**second, "seed": 8}, {**second, "seed": 9}]
        assert a.suggest("c4") == Searcher.FINISHED
        told = [(t.number, t.state) for t in a.search._ot_study.trials]
        a.on_trial_result("c0", {M.VAL_ACC: 0.0, "training_iteration": 1})  # a confirmation's results stay here
        a.on_trial_complete("c0", {M.VAL_ACC: 0.0, "training_iteration": 3})
        assert [(t.number, t.state) for t in a.search._ot_study.trials] == told  # the sampler is not told


def test_fewer_confirmable_than_top_confirms_those_there_are():
    alg = search_algorithm(recipe(num_samples=2, confirm={"top": 3, "seeds": 1}))
    for t in ("a", "b"):
        alg.suggest(t)
    alg.on_trial_complete("a", {M.VAL_ACC: 0.6, "training_iteration": 3})
    alg.on_trial_complete("b", {M.VAL_ACC: 0.9, "training_iteration": 2})  # stopped early
    assert alg.suggest("c")["seed"] == 8 and alg.suggest("d") == Searcher.FINISHED
