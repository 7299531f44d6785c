"""The driver's part of a trial's evidence is files only: it uploads what the trial's last checkpoint carries
and records the model, and never builds a model itself, whatever its size."""

from __future__ import annotations

import shutil

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

import trainables.gradcam
import trainables.models
from sweeps.storage import PARTIAL_SUFFIX
from sweeps.trial_runs import MlflowTrialCallback
from tests.test_layout import reachable
from trainables.contracts import BEST_MODEL_ARTIFACT, EVIDENCE_DIR, GRADCAM_TAG, MODEL_ID_TAG, RUN_ARTIFACTS_DIR
from trainables.evidence import CONFUSION_PNG, CURVES_PNG, GRADCAM_PNG, PER_CLASS_CSV, PREDICTIONS_CSV


@pytest.fixture
def callback(tmp_path, monkeypatch):
    def built_in_the_driver(*args, **kwargs):
        raise AssertionError("the driver built a model")

    for module, name in [(trainables.models, "build_model"), (trainables.models, "load_model")]:
        monkeypatch.setattr(module, name, built_in_the_driver)
    monkeypatch.setattr(trainables.gradcam, "gradcam", built_in_the_driver)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("upload")
    parent = client.create_run(exp, run_name="sweep-1").info.run_id
    mlflow.set_tracking_uri(uri)  # models:/ URIs resolve through it
    yield MlflowTrialCallback(uri, exp, parent, "sweep-1"), client
    mlflow.set_tracking_uri(None)


def test_the_driver_uploads_the_trials_files_and_logs_its_model_once(evidence_trial, callback):
    cb, client = callback
    config, _, checkpoints = evidence_trial
    d, report = checkpoints[2]  # the last epoch's
    state = report.state
    run_id = cb._run_id("trial_1", config)
    cb._log_evidence(run_id, d)
    cb._log_evidence(run_id, d)  # a write replayed after a restore: the same files, no second model
    files = {a.path for a in client.list_artifacts(run_id, "evidence")}
    assert {f"evidence/{f}" for f in (CONFUSION_PNG, CURVES_PNG, GRADCAM_PNG, PER_CLASS_CSV, PREDICTIONS_CSV)} <= files
    assert BEST_MODEL_ARTIFACT in {a.path for a in client.list_artifacts(run_id, "checkpoint")}
    tags = client.get_run(run_id).data.tags
    assert not tags[GRADCAM_TAG].startswith("none")
    models = client.search_logged_models([cb.experiment_id])
    assert [m.model_id for m in models] == [tags[MODEL_ID_TAG]] and models[0].source_run_id == run_id
    assert models[0].status.to_proto() == mlflow.entities.LoggedModelStatus.READY.to_proto()
    model = mlflow.pytorch.load_model(f"models:/{tags[MODEL_ID_TAG]}")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert model(x).shape == (2, 10)
    assert all(torch.equal(v, state["best"]["model"][k]) for k, v in model.state_dict().items())
    meta = mlflow.models.get_model_info(f"models:/{tags[MODEL_ID_TAG]}")
    assert meta.run_id == run_id and meta.metadata["classes"] == state["best"]["classes"]


def test_a_checkpoint_without_evidence_is_said_on_the_run(evidence_trial, callback, capsys):
    cb, client = callback
    config, _, checkpoints = evidence_trial
    d, _ = checkpoints[1]  # epoch 2's: made where the trial could not end
    run_id = cb._run_id("trial_2", config)
    cb._log_evidence(run_id, d)
    tag = client.get_run(run_id).data.tags[GRADCAM_TAG]
    assert tag.startswith("none: the trial ended after epoch 2, where the sweep did not expect it to stop")
    assert "no evidence" in capsys.readouterr().out
    assert not client.list_artifacts(run_id)


def test_files_a_lost_node_left_unfinished_are_left_out_and_said(evidence_trial, callback, tmp_path, capsys):
    """A node lost while it uploaded a checkpoint leaves the storage's partial files in that checkpoint's
    directory; the retried trial writes the same directory again beside them. The run gets the complete files."""
    from ray.tune import Checkpoint

    cb, client = callback
    config, _, checkpoints = evidence_trial
    d = tmp_path / "checkpoint_000002"
    shutil.copytree(checkpoints[2][0], d)
    evidence = d / RUN_ARTIFACTS_DIR / EVIDENCE_DIR
    for name in (GRADCAM_PNG, "gradcam.npz"):  # as sweeps.storage names a file it has not finished
        (evidence / f".{name}.0123abcd{PARTIAL_SUFFIX}").write_bytes(b"half a file")
    run_id = cb._run_id("trial_3", config)
    op = {"epoch": 3, "summary": {"test_acc": 0.5}, "config": config, "checkpoint": Checkpoint.from_directory(d)}
    cb._on_complete(run_id, op)
    files = {a.path.split("/")[-1] for a in client.list_artifacts(run_id, EVIDENCE_DIR)}
    assert GRADCAM_PNG in files and not [f for f in files if f.endswith(PARTIAL_SUFFIX)]
    assert "left out 2 unfinished file(s) of an interrupted write" in capsys.readouterr().out
    assert client.get_run(run_id).info.status == "FINISHED"


def test_the_driver_does_not_import_what_builds_or_explains_a_model():
    """Statically, through every project module the trial callback imports."""
    reached = reachable("sweeps.trial_runs")
    for heavy in ("trainables.trial_evidence", "trainables.gradcam", "trainables.engine", "pytorch_grad_cam"):
        assert heavy not in reached, " -> ".join(reached[heavy])
