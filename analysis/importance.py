"""Which searched setting mattered: Optuna's parameter importances (fANOVA) of a sweep's searched settings
for its objective, computed from the trials' MLflow runs, their bar chart, and Optuna's parallel-coordinates
plot of the same trials (each trial a line through its settings to its objective).

The trials are put into an in-memory Optuna study with the distributions of the recipe's space (so a
finished sweep, or an older one, needs nothing but its runs and its recipe), then
``optuna.importance.get_param_importances`` with its fANOVA evaluator, seeded. Only the search's network
trials count: a baseline has none of the networks' settings, and a confirmation trial repeats a
configuration with another seed. A setting that exists only under another (``unfreeze_stages`` under
``freeze: partial``) is left out, as fANOVA needs every setting in every trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from trainables import metrics as M  # noqa: E402
from trainables.config import BASELINE_FAMILY  # noqa: E402
from trainables.contracts import FAMILY_PARAM, SEARCH_STAGE, STAGE_TAG  # noqa: E402

MIN_TRIALS = 4  # fewer finished search trials than this: no importances (fANOVA on 3 points says nothing)
# More than this many: a seeded random sample of them. fANOVA's cost grows with the trials (Optuna 4: about 12 s
# over 1,000 on one core, 260 s over 10,000), and so does the plot's; a sample of this size estimates the same
# importances, and the report says it is a sample.
MAX_TRIALS = 300


def search_study(runs: pd.DataFrame, space: dict[str, Any], objective: str = M.BEST_VAL_ACC):  # noqa: ANN201
    """An in-memory Optuna study of the sweep's finished network search trials (their searched settings, with
    the distributions of ``space``, and ``objective``; a seeded sample of ``MAX_TRIALS`` of them when there are
    more), the searched axes, and how many such trials there are."""
    import optuna

    done = runs[(runs["status"] == "FINISHED") & runs[f"metrics.{objective}"].notna()]
    if f"tags.{STAGE_TAG}" in done:
        done = done[done[f"tags.{STAGE_TAG}"].fillna(SEARCH_STAGE) == SEARCH_STAGE]
    done = done[done[f"params.{FAMILY_PARAM}"] != BASELINE_FAMILY]
    total = len(done)
    if total > MAX_TRIALS:
        done = done.sample(MAX_TRIALS, random_state=0).sort_index()
    searched = {k: d for k, d in space.items() if d.searched}

    def value(d, text: str):  # noqa: ANN001, ANN202 - a run's parameter, read back as the axis' type
        if d.kind == "choice":
            return next(c for c in d.values if str(c) == text)
        return int(text) if d.kind == "randint" else float(text)

    study = optuna.create_study(study_name="trials", direction="maximize")
    for _, run in done.iterrows():
        present = {k: d for k, d in searched.items() if isinstance(run.get(f"params.{k}"), str)}
        study.add_trial(
            optuna.trial.create_trial(
                params={k: value(d, run[f"params.{k}"]) for k, d in present.items()},
                distributions={k: d.distribution() for k, d in present.items()},
                value=float(run[f"metrics.{objective}"]),
            )
        )
    return study, searched, total


def importances(runs: pd.DataFrame, space: dict[str, Any], objective: str = M.BEST_VAL_ACC) -> tuple[dict, str]:
    """({setting: importance} summing to 1, largest first; the note that says how) for the searched axes of
    ``space`` (a recipe's ``Dim``s); ({}, why not) when it cannot be computed."""
    import optuna

    study, searched, total = search_study(runs, space, objective)
    n = len(study.trials)
    if n < MIN_TRIALS or not searched:
        why = f"{n} finished network search trials and {len(searched)} searched settings"
        return {}, f"What mattered: not computed ({why}; it needs {MIN_TRIALS} trials and a searched setting)."
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as e:  # e.g. no setting every trial has
        return {}, f"What mattered: not computed ({type(e).__name__}: {str(e)[:200]})."
    left_out = sorted(set(searched) - set(found))
    note = (
        f"What mattered: Optuna's fANOVA importance of each searched setting for {objective} (seed 0), over "
        f"{_over(n, total)} finished search trials of the networks (ASHA-stopped ones at the value they stopped "
        "with, as the search saw them; baselines and confirmation trials left out). Importances sum to 1; they say "
        "how much of the variation in the objective each setting explains across this sweep's trials, not which "
        "value is best."
    )
    if left_out:
        note += f" Left out (not in every one of those trials): {', '.join(left_out)}."
    return {k: float(v) for k, v in found.items()}, note


def importance_chart(found: dict[str, float], path: Path) -> Path:
    """A horizontal bar per setting, the most important on top."""
    names, values = list(found)[::-1], list(found.values())[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.4 * len(names)))
    ax.barh(names, values, color="C0")
    ax.set(xlabel="importance (fANOVA, sums to 1)", xlim=(0, 1), title="what mattered")
    for y, v in enumerate(values):
        ax.annotate(f"{v:.2f}", (v, y), textcoords="offset points", xytext=(4, -3), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parallel_coordinates(runs: pd.DataFrame, space: dict[str, Any], path: Path, objective: str = M.BEST_VAL_ACC):  # noqa: ANN201
    """Optuna's parallel-coordinates plot of the same trials as ``importances``: an axis per searched setting
    that every one of them has, and the objective; None when fewer than 2 trials or no such setting."""
    import warnings

    import optuna

    study, searched, total = search_study(runs, space, objective)
    common = [k for k in searched if all(k in t.params for t in study.trials)]
    if len(study.trials) < 2 or not common:
        return None
    with warnings.catch_warnings():  # "experimental": Optuna's matplotlib plots are labelled so since 2.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_parallel_coordinate(study, params=common, target_name=objective)
    fig = ax.figure
    fig.set_size_inches(max(6.4, 1.6 * (len(common) + 1)), 4.2)
    shown = _over(len(study.trials), total).removeprefix("the ")
    ax.set_title(f"settings -> {objective}, {shown} search trials (networks)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _over(n: int, total: int) -> str:
    """'the 16' or 'a random 300 (seed 0) of the 10000'."""
    return f"the {n}" if n == total else f"a random {n} (seed 0) of the {total}"
