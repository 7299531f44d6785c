"""The contracts between the layers: a trial's saved state and its best-model file load back as they were
written (with ``weights_only``: nothing unpickled), and the run schema's names stay what runs already
logged carry."""

import torch

from trainables import contracts as C
from trainables import metrics as M


def _state() -> C.TrialState:
    weights = {"fc.weight": torch.ones(3, 4), "fc.bias": torch.zeros(3)}
    best = C.BestEpoch(
        epoch=2,
        val_acc=0.75,
        test={M.TEST_ACC: 0.7, M.TEST_F1: 0.6},
        test_report={"confusion": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "true": [0, 1, 2], "pred": [0, 1, 2]},
        classes=["a", "b", "c"],
        model=weights,
    )
    info = C.TrialInfo(
        num_classes=3,
        input_size=32,
        interpolation="bicubic",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        crop_pct=0.95,
        param_count=15,
        trainable_param_count=15,
        device="cpu",
        amp_active=False,
        channels_last=False,
        loader_workers=0,
        weights_source="none",
    )
    return C.TrialState(
        epoch=3,
        num_updates=12,
        model=weights,
        optimizer={"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]},
        best=best,
        train_time_s=1.5,
        info=info,
        preprocessing={"input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 0.95},
    )


def test_a_trial_state_loads_back_as_saved(tmp_path):
    state = _state()
    path = C.save_trial_state(state, tmp_path)
    assert path == tmp_path / "state.pt"
    back = C.load_trial_state(tmp_path)
    assert set(back) == set(C.TrialState.__annotations__)
    assert torch.equal(back["best"]["model"]["fc.weight"], state["best"]["model"]["fc.weight"])
    assert back["info"] == state["info"] and back["best"]["classes"] == ["a", "b", "c"]


def test_the_best_model_file_holds_what_serving_needs(tmp_path):
    best = C.best_model_of(_state(), "resnet18")
    path = C.save_best_model(best, tmp_path)
    assert path.name == "best_model.pt"
    back = C.load_best_model(path)
    assert set(back) == set(C.BestModel.__annotations__)
    assert (back["arch"], back["num_classes"], back["input_size"], back["epoch"]) == ("resnet18", 3, 32, 2)
    assert back[M.BEST_VAL_ACC] == 0.75  # under the metric's own name
    assert back["preprocessing"]["crop_pct"] == 0.95 and torch.equal(back["model"]["fc.bias"], torch.zeros(3))


def test_the_run_schema_keeps_its_names():
    """Changing one of these orphans every run already logged (filters, links, the report's reads)."""
    assert {
        "tags": (C.SWEEP_TAG, C.TASK_TAG, C.TRIAL_ID_TAG, C.CHAMPION_TAG, C.STOPPED_EARLY_TAG, C.MODEL_ID_TAG),
        "parent tags": (C.INTERRUPTED_TAG, C.TRACKING_ERROR_TAG, C.FORGOTTEN_RUNS_TAG, C.FAILED_TRIALS_TAG),
        "params": (C.TRIALS_PLANNED_PARAM, C.SEARCHED_PARAM, C.DATA_SOURCE_PARAM, C.SPLIT_FINGERPRINT_PARAM),
        "artifacts": (C.BEST_MODEL_ARTIFACT, C.EVIDENCE_DIR, C.REPORT_DIR, C.SAMPLES_DIR, C.RECIPE_FILE),
        "detection": (C.WEIGHTS_DIR, C.DETECT_WEIGHTS_FILE, C.DETECT_RECORD_FILE),
    } == {
        "tags": ("sweep", "task", "ray_trial_id", "champion", "stopped_early", "model_id"),
        "parent tags": ("interrupted", "tracking_error", "forgotten_runs", "failed_trials"),
        "params": ("trials_planned", "searched", "data_source", "split_fingerprint"),
        "artifacts": ("checkpoint/best_model.pt", "evidence", "report", "samples", "sweep_config.yaml"),
        "detection": ("weights", "best.pt", "trial.json"),
    }
    assert C.evidence_path("learning_curves.png") == "evidence/learning_curves.png"
