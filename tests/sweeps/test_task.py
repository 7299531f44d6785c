"""A third task, declared here and nowhere else, runs through the one sweep lifecycle: its recipe, its
data prepared before Ray, its trials as MLflow runs under the sweep's run, and its report section."""

import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import mlflow
import numpy as np
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from pydantic import StrictInt

from sweeps.recipe import ConfigError, Dim, Recipe
from sweeps.run import SWEEP_FILE, resume_sweep, run_sweep
from sweeps.task import Prepared, Task
from sweeps.trial_runs import MlflowTrialCallback
from tests.conftest import REPO


@dataclass(frozen=True)
class TabularTrial:
    model: str = "softmax"
    """'softmax' (linear) or 'mlp' (one hidden layer of 16)."""
    lr: float = 0.5
    max_epochs: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in ("softmax", "mlp"):
            raise ValueError(f"model: 'softmax' or 'mlp', got {self.model!r}")


@dataclass(frozen=True)
class TabularRecipe(Recipe):
    trial_type: ClassVar[type] = TabularTrial
    row_key: ClassVar[str] = "model"
    points_one_per: ClassVar[str] = "one_per_model"
    objectives: ClassVar[tuple[str, ...]] = ("val_acc",)

    num_samples: StrictInt | None = 2  # strict: a plain int would take '2' (sweeps.recipe refuses it)
    max_epochs: StrictInt = 3
    grace_period: StrictInt = 1
    space: dict[str, Dim] = field(default_factory=lambda: {"model": Dim("choice", ("softmax", "mlp"))})


def prepare(cfg: TabularRecipe, log) -> Prepared:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=0.3, stratify=y, random_state=cfg.seed)
    summary = {"data_source": "sklearn.datasets.load_iris", "train_size": len(y_tr), "val_size": len(y_val)}
    line = f"data: iris, train/val = {len(y_tr)}/{len(y_val)}"
    return Prepared((x_tr, y_tr, x_val, y_val), "iris", summary, line, fingerprint=str(len(y_tr)))


def train_tabular(config: dict, data) -> None:
    import torch
    from ray import tune

    cfg = TabularTrial(**config)
    torch.manual_seed(cfg.seed)
    x_tr, y_tr, x_val, y_val = (torch.as_tensor(a) for a in data)
    x_tr, x_val = x_tr.float(), x_val.float()
    hidden = [torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)]
    model = torch.nn.Sequential(*hidden) if cfg.model == "mlp" else torch.nn.Linear(4, 3)
    if cfg.lr >= 100:
        raise FloatingPointError(f"lr {cfg.lr:g}: the loss would diverge")  # a trial that fails, every time
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    for epoch in range(1, cfg.max_epochs + 1):
        loss = torch.nn.functional.cross_entropy(model(x_tr), y_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc = (model(x_val).argmax(1) == y_val).float().mean().item()
        tune.report({"epoch": epoch, "val_acc": acc, "train_loss": loss.item()})


class TabularCallback(MlflowTrialCallback):
    epoch_metrics = ("val_acc", "train_loss")
    summary_metrics = ("val_acc",)
    history_metric = "val_acc"

    def _describe(self, config: dict) -> tuple[str, dict[str, Any]]:
        cfg = TabularTrial(**config)
        return f"{cfg.model}-lr{cfg.lr:g}", {**vars(cfg), "family": cfg.model}

    def _log_final(self, run_id: str, op: dict, checkpoint_dir: Path) -> None:
        pass


def report(cfg: TabularRecipe, sweep: dict, out_dir: Path, log):
    """The task's report section: one row per model, from the sweep's runs in MLflow."""
    runs = mlflow.search_runs(
        [sweep["experiment_id"]], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{sweep['parent_run_id']}'"
    )
    table = runs[["params.model", "metrics.val_acc", "run_id"]].sort_values("metrics.val_acc", ascending=False)
    table = table.rename(columns={"params.model": "model", "metrics.val_acc": "val acc"})
    out_dir.mkdir(parents=True, exist_ok=True)
    md, html, csv = out_dir / "report.md", out_dir / "report.html", out_dir / "comparison.csv"
    md.write_text("# Tabular models\n\n" + table.to_markdown(index=False) + "\n\n## Data\n\niris\n")
    html.write_text(table.to_html(index=False))
    table.to_csv(csv, index=False)
    return types.SimpleNamespace(table=table, markdown=md, html=html, csv=csv)


TABULAR = Task(
    name="tabular",
    script="tabular.py",
    sweep_prefix="tabular",
    recipe=TabularRecipe,
    default_recipe=REPO / "sweeps" / "configs" / "quickstart.yaml",  # only its folder is read, for messages
    trainable=lambda: train_tabular,
    data_arg="data",
    prepare=prepare,
    callback=TabularCallback,
    report=report,
    conclude=lambda cfg, sweep, rep: [f"best: {rep.table.iloc[0]['model']}"],
)


@pytest.mark.e2e
def test_a_third_task_runs_through_the_same_lifecycle(tmp_path, ray_tmp, monkeypatch, capsys):
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = {"search": "grid", "num_samples": None, "tracking_uri": uri, "address": "local"}
    settings |= {"storage_path": str(tmp_path / "ray"), "output_dir": str(tmp_path / "reports")}
    cfg = TabularRecipe.from_dict({**settings, "space": {"model": ["softmax", "mlp"], "lr": [0.5, 1.0]}})
    assert run_sweep(TABULAR, cfg, REPO) == 0

    out = capsys.readouterr().out
    assert "data: iris, train/val = 105/45" in out and "best: " in out
    client = mlflow.MlflowClient(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "tabular-iris"]
    (parent,) = client.search_runs([exp.experiment_id], "tags.task = 'tabular'")
    assert parent.data.tags["task"] == "tabular" and parent.data.params["trials_planned"] == "4"
    assert parent.info.status == "FINISHED"
    children = client.search_runs([exp.experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent.info.run_id}'")
    assert sorted(c.info.run_name for c in children) == ["mlp-lr0.5", "mlp-lr1", "softmax-lr0.5", "softmax-lr1"]
    assert all(c.info.status == "FINISHED" and c.data.metrics["val_acc"] > 0.5 for c in children)
    (report_md,) = (tmp_path / "reports" / "tabular-iris").glob("*/report.md")
    assert report_md.read_text().startswith("# Tabular models")

    # the sweep directory records its task: another task's script refuses it and names the right one
    (sweep_dir,) = (tmp_path / "ray").glob("tabular-*")
    assert json.loads((sweep_dir / SWEEP_FILE).read_text())["task"] == "tabular"
    from sweeps.classification import TASK as CLASSIFY

    assert resume_sweep(CLASSIFY, sweep_dir, None) == 2
    assert f"a 'tabular' sweep, not a 'classify' one; resume it with python sweeps/tabular.py --resume {sweep_dir}" in (
        capsys.readouterr().err
    )


@pytest.mark.e2e
def test_a_sweep_whose_every_trial_failed_says_so_and_ends_failed_without_report(
    tmp_path, ray_tmp, monkeypatch, capsys
):
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = {"search": "grid", "num_samples": None, "tracking_uri": uri, "address": "local", "max_failures": 0}
    settings |= {"storage_path": str(tmp_path / "ray"), "output_dir": str(tmp_path / "reports")}
    cfg = TabularRecipe.from_dict({**settings, "space": {"model": ["softmax", "mlp"], "lr": [100.0]}})
    assert run_sweep(TABULAR, cfg, REPO) == 2

    err = capsys.readouterr().err
    (sweep_dir,) = (tmp_path / "ray").glob("tabular-*")
    assert "no trial finished: all 2 failed, so there is no report or champion" in err
    assert "FloatingPointError: lr 100: the loss would diverge" in err and f"under {sweep_dir}" in err
    (parent,) = mlflow.MlflowClient(uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(uri).search_experiments() if e.name == "tabular-iris"],
        "tags.task = 'tabular'",
    )
    assert parent.info.status == "FAILED" and parent.data.metrics["trials_failed"] == 2
    assert not (tmp_path / "reports").exists()
    assert json.loads((sweep_dir / SWEEP_FILE).read_text())["finished"]  # not offered for --resume


def test_a_recipe_of_the_third_task_is_checked_like_any_other():
    with pytest.raises(ConfigError) as e:
        TabularRecipe.from_dict({"num_sample": 2, "space": {"model": ["softmax", "tree"]}, "max_failures": -1})
    problems = e.value.problems
    assert any("unknown setting 'num_sample'" in p for p in problems)
    with pytest.raises(ConfigError, match=r"space\.model: model: 'softmax' or 'mlp', got 'tree'"):
        TabularRecipe.from_dict({"space": {"model": ["softmax", "tree"]}})
    assert np.isclose(TabularRecipe().dim("lr").values[0], 0.5)  # left out: the trial config's default


def test_a_recipe_whose_settings_would_take_any_text_is_refused_naming_them():
    @dataclass(frozen=True)
    class Loose(TabularRecipe):
        max_epochs: int = 3  # pydantic would read max_epochs: '3' (and true) as an integer
        note: str | None = None

    with pytest.raises(TypeError, match=r"Loose: type max_epochs, note with StrictInt, StrictStr, StrictBool or"):
        Loose.from_dict({"max_epochs": "3"})
    with pytest.raises(ConfigError, match=r"max_epochs: expected an integer, got '3'"):
        TabularRecipe.from_dict({"max_epochs": "3"})
