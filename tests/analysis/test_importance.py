"""What mattered: the importances name the setting the objective depends on, from runs as MLflow lists them."""

import numpy as np
import pandas as pd

from analysis.importance import MIN_TRIALS, importances
from sweeps.config import config_from_dict


def runs_where_only_lr_matters(n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    lr = np.exp(rng.uniform(np.log(1e-4), np.log(1e-2), n))
    return pd.DataFrame(
        {
            "status": "FINISHED",
            "params.arch": rng.choice(["resnet18", "convnext_atto"], n),
            "params.augment": rng.choice(["none", "light"], n),
            "params.lr": [str(v) for v in lr],
            "params.family": "resnet",
            "tags.stage": "search",
            # the objective peaks at lr 1e-3 whatever the architecture and augmentation
            "metrics.best_val_acc": 0.95 - 0.1 * (np.log10(lr) + 3) ** 2 + rng.normal(0, 0.002, n),
        }
    )


def test_the_setting_the_objective_depends_on_comes_first():
    space = {"arch": ["resnet18", "convnext_atto"], "augment": ["none", "light"], "lr": {"loguniform": [1e-4, 1e-2]}}
    cfg = config_from_dict({"space": space})
    found, note = importances(runs_where_only_lr_matters(), cfg.space)
    assert list(found)[0] == "lr" and found["lr"] > 0.8
    assert abs(sum(found.values()) - 1) < 1e-6 and "fANOVA" in note and "24 finished search trials" in note


def test_baselines_confirmations_and_too_few_trials_are_left_out():
    cfg = config_from_dict({"space": {"arch": ["resnet18", "convnext_atto"], "lr": {"loguniform": [1e-4, 1e-2]}}})
    runs = runs_where_only_lr_matters(MIN_TRIALS + 2).drop(columns="params.augment")
    runs.loc[0, "tags.stage"] = "confirm"
    runs.loc[1, "params.family"] = "baseline"
    runs.loc[2, "status"] = "FAILED"
    found, note = importances(runs, cfg.space)
    assert found == {} and f"{MIN_TRIALS - 1} finished network search trials" in note


def test_over_many_trials_a_seeded_sample_says_so_and_finds_the_same_setting():
    from analysis.importance import MAX_TRIALS

    space = {"arch": ["resnet18", "convnext_atto"], "augment": ["none", "light"], "lr": {"loguniform": [1e-4, 1e-2]}}
    cfg = config_from_dict({"space": space})
    runs = runs_where_only_lr_matters(MAX_TRIALS + 200)
    found, note = importances(runs, cfg.space)
    assert list(found)[0] == "lr" and found["lr"] > 0.8
    assert f"a random {MAX_TRIALS} (seed 0) of the {MAX_TRIALS + 200} finished search trials" in note
    assert importances(runs, cfg.space) == (found, note)  # the same sample each time
