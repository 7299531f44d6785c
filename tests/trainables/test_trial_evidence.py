"""A classification trial makes its own evidence: every checkpoint carries the best epoch's files, the
driver only uploads them, and a resumed trial continues the curves from its checkpoint."""

from __future__ import annotations

import json
import os

import mlflow
import pytest
import torch

from trainables import metrics as M
from trainables.config import TrialConfig
from trainables.contracts import (
    BEST_MODEL_ARTIFACT,
    EVIDENCE_MANIFEST,
    MLFLOW_MODEL_DIR,
    RUN_ARTIFACTS_DIR,
    load_best_model,
)
from trainables.evidence import CONFUSION_PNG, CURVES_PNG, GRADCAM_NPZ, GRADCAM_PNG, PER_CLASS_CSV, PREDICTIONS_CSV
from trainables.trial_evidence import TrialEvidence

EVIDENCE = {CONFUSION_PNG, "confusion_matrix.csv", CURVES_PNG, GRADCAM_PNG, GRADCAM_NPZ, PER_CLASS_CSV, PREDICTIONS_CSV}


@pytest.fixture
def trained(evidence_trial):
    config, splits, checkpoints = evidence_trial
    return TrialConfig.from_dict(config), splits, checkpoints


def test_where_the_trial_may_end_its_checkpoint_carries_the_best_epochs_evidence_made_in_the_trial(trained):
    _, _, checkpoints = trained
    between, _ = checkpoints[1]  # epoch 2: nothing can stop the trial there, so no files; the curves' numbers
    manifest = json.loads((between / EVIDENCE_MANIFEST).read_text())
    assert manifest["epoch"] is None and manifest["at_epoch"] == 2
    assert sorted(manifest["history"][M.VAL_ACC]) == ["1", "2"]
    assert not (between / RUN_ARTIFACTS_DIR).exists() and not (between / MLFLOW_MODEL_DIR).exists()
    for d, report in (checkpoints[0], checkpoints[2]):
        files = {p.name for p in (d / RUN_ARTIFACTS_DIR / "evidence").iterdir()}
        assert EVIDENCE <= files, d
        manifest = json.loads((d / EVIDENCE_MANIFEST).read_text())
        assert manifest["epoch"] == report.state["best"]["epoch"]
        assert not manifest["gradcam"].startswith("none"), manifest
        assert manifest["made_in"]["pid"] == os.getpid()  # this process: the trial's, never the driver's
        epoch = int(report.metrics[M.EPOCH])
        # the curves hold every epoch so far, whichever epoch is the best
        assert sorted(int(e) for e in manifest["history"][M.VAL_ACC]) == list(range(1, epoch + 1))
        best = load_best_model(d / RUN_ARTIFACTS_DIR / BEST_MODEL_ARTIFACT)
        assert best["epoch"] == report.state["best"]["epoch"] and best["arch"] == "resnet18"
        assert torch.equal(best["model"]["fc.weight"], report.state["best"]["model"]["fc.weight"])
        # the MLflow model directory loads and predicts with the best epoch's weights
        model = mlflow.pytorch.load_model(str(d / MLFLOW_MODEL_DIR))
        assert torch.equal(model.state_dict()["fc.weight"], report.state["best"]["model"]["fc.weight"])
        meta = mlflow.models.Model.load(str(d / MLFLOW_MODEL_DIR))
        assert meta.metadata["classes"] == report.state["best"]["classes"] and meta.signature is not None


@pytest.mark.parametrize("from_epoch", [1, 2])
def test_a_resumed_trial_continues_the_evidence_of_its_checkpoint(trained, tmp_path, from_epoch):
    """From a checkpoint with files (epoch 1) or without (epoch 2): the curves go on from every epoch before."""
    cfg, splits, checkpoints = trained
    start, _ = checkpoints[from_epoch - 1]
    resumed = TrialEvidence(cfg, splits, torch.device("cpu"), tmp_path / "work", resume_dir=start)
    assert resumed.history[M.VAL_ACC].keys() == set(range(1, from_epoch + 1))
    for _, report in checkpoints[from_epoch:]:  # the epochs after it again (the same numbers: a test's replay)
        resumed.update(report.metrics, report.state, due=report.metrics[M.EPOCH] == 3)
    (tmp_path / "ckpt").mkdir()
    resumed.add_to(tmp_path / "ckpt")
    manifest = json.loads((tmp_path / "ckpt" / EVIDENCE_MANIFEST).read_text())
    assert sorted(manifest["history"][M.VAL_ACC]) == ["1", "2", "3"]
    assert manifest["epoch"] == report.state["best"]["epoch"]
    assert (tmp_path / "ckpt" / RUN_ARTIFACTS_DIR / "evidence" / GRADCAM_PNG).is_file()
