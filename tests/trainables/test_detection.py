"""One detection trial without Ray or MLflow (trainables.detection): it trains and reports every epoch,
touches no network, resumes from its checkpoint, and its settings are checked before any work."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Not importorskip: importing Ultralytics here, at collection, would change the whole test session
# (trainables.ultralytics_compat.load_ultralytics says how); tests import it through load_ultralytics.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None,
    reason='detection needs the [detect] extra: pip install -e ".[detect]"',
)

from trainables.detection import AUGMENT, DetectTrialConfig, load_ultralytics, model_source  # noqa: E402
from trainables.shapes import ShapesSpec, generate  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NETGUARD = REPO / "tests" / "netguard"
SPEC = ShapesSpec(train=32, val=8, test=8, size=96, seed=1)

# Runs a trial in a fresh interpreter (not under pytest: Ultralytics turns its integrations off by itself
# when it sees pytest, which would hide what this project must do) and prints each report as JSON.
TRIAL = """
import json, sys
from pathlib import Path
from trainables.detection import DetectTrialConfig, fit_detector
cfg = DetectTrialConfig(**json.loads(sys.argv[1]))
stop_after = int(sys.argv[4])
def on_epoch(r):
    print("REPORT " + json.dumps({"metrics": r.metrics, "info": r.info,
          "files": sorted(p.name for p in r.checkpoint_dir.iterdir()), "dir": str(r.checkpoint_dir)}), flush=True)
    if r.metrics["epoch"] == stop_after:
        raise SystemExit(3)
resume = Path(sys.argv[5]) if len(sys.argv) > 5 else None
fit_detector(cfg, sys.argv[2], Path(sys.argv[3]), "cpu", on_epoch, resume_dir=resume)
"""


def run_trial(tmp_path: Path, config: dict, workdir: Path, stop_after: int = 0, resume: Path | None = None):
    data = generate(tmp_path / "data", SPEC, progress=lambda _: None)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "YOLO_OFFLINE")}
    netlog = tmp_path / "net.log"
    env.update(PYTHONPATH=f"{NETGUARD}:{REPO}", CVSWEEP_NETLOG=str(netlog), YOLO_CONFIG_DIR=str(tmp_path / "yolo"))
    args = [sys.executable, "-c", TRIAL, json.dumps(config), str(data), str(workdir), str(stop_after)]
    proc = subprocess.run(
        [*args, *([str(resume)] if resume else [])], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    reports = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    return proc, reports, netlog


def test_a_trial_reports_every_epoch_offline_and_without_ultralytics_integrations(tmp_path):
    config = {"model": "yolov8n", "imgsz": 64, "max_epochs": 2, "batch": 8, "augment": "strong"}
    proc, reports, netlog = run_trial(tmp_path, config, tmp_path / "w")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["metrics"]["epoch"] for r in reports] == [1, 2]
    for r in reports:
        for key in ("train_box_loss", "val_box_loss", "val_precision", "val_recall", "val_mAP50", "val_mAP50_95"):
            assert 0 <= r["metrics"][key] < 100, key
        assert {"last.pt", "best.pt", "trial.json"} <= set(r["files"])
        assert "test_mAP50_95" in r["metrics"]  # the best epoch, on the test split
    assert reports[-1]["metrics"]["train_time_s"] > reports[0]["metrics"]["train_time_s"] > 0
    # nothing left this machine: no DNS, no download of weights, fonts or AMP check files, no analytics
    assert (tmp_path / "net.log.loaded").is_file()
    assert not netlog.exists(), netlog.read_text()[:3000]
    # Ultralytics' own MLflow (and other) callbacks were taken off: no run of theirs anywhere
    assert "mlflow" in reports[0]["info"]["ultralytics_integrations_off"].split(",")
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    assert reports[0]["info"]["weights_file"] == "none (random init)" and reports[0]["info"]["num_classes"] == 3


def test_a_stopped_trial_resumes_from_its_checkpoint(tmp_path):
    config = {"model": "yolo11n", "imgsz": 64, "max_epochs": 3, "batch": 8}
    proc, first, _ = run_trial(tmp_path, config, tmp_path / "a", stop_after=1)
    assert proc.returncode == 3 and [r["metrics"]["epoch"] for r in first] == [1]
    saved = tmp_path / "checkpoint"
    saved.mkdir()
    for name in first[0]["files"]:
        (saved / name).write_bytes((Path(first[0]["dir"]) / name).read_bytes())
    proc, rest, netlog = run_trial(tmp_path, config, tmp_path / "b", resume=saved)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["metrics"]["epoch"] for r in rest] == [2, 3]  # continued, not started over
    assert rest[0]["metrics"]["train_time_s"] > first[0]["metrics"]["train_time_s"]  # carried across the resume
    assert not netlog.exists()


def test_local_weights_are_transferred(tmp_path):
    import torch

    load_ultralytics()
    from ultralytics import YOLO

    torch.manual_seed(123)
    source = YOLO("yolov8n.yaml")
    source.save(tmp_path / "yolov8n.pt")
    cfg = DetectTrialConfig(model="yolov8n", weights=str(tmp_path))
    yaml_name, path = model_source(cfg)
    assert (yaml_name, path) == ("yolov8n.yaml", str(tmp_path / "yolov8n.pt"))
    torch.manual_seed(0)
    target = YOLO(yaml_name).load(path)
    a, b = source.model.state_dict(), target.model.state_dict()
    fresh = YOLO(yaml_name).model.state_dict()
    floats = [k for k in a if a[k].is_floating_point() and a[k].numel() > 100]
    # .pt files hold float16: equal to that precision, and unlike a fresh init
    assert all(torch.allclose(a[k], b[k].float(), rtol=1e-2, atol=1e-3) for k in floats)
    assert not all(torch.allclose(a[k], fresh[k].float(), rtol=1e-2, atol=1e-3) for k in floats)
    with pytest.raises(FileNotFoundError, match="yolo11n.pt does not exist"):
        model_source(DetectTrialConfig(model="yolo11n", weights=str(tmp_path)))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"model": "yolov9n"}, "not a YOLO model name"),
        ({"model": "yolo11q"}, "not a YOLO model name"),
        ({"imgsz": 100}, "multiple of 32"),
        ({"optimizer": "adamw"}, "AdamW"),
        ({"augment": "heavy"}, "augmentation strength"),
        ({"mosaic": 1.5}, r"mosaic: .*\[0, 1\]"),
        ({"weights": "coco"}, "neither none nor pretrained"),
        ({"warmup_epochs": 12}, "shorter than max_epochs"),
    ],
)
def test_bad_trial_settings_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        DetectTrialConfig(**bad)


def test_augmentation_levels_and_single_overrides():
    assert DetectTrialConfig(augment="none").augmentation() == AUGMENT["none"]
    strong = DetectTrialConfig(augment="strong", mixup=0.0).augmentation()
    assert strong["mosaic"] == 1.0 and strong["mixup"] == 0.0
    args = DetectTrialConfig(augment="light").train_args("d.yaml", Path("/tmp/x"), "cpu", 0)
    assert args["hsv_s"] == AUGMENT["light"]["hsv_s"] and args["plots"] is False and args["amp"] is False
    assert args["nbs"] == args["batch"]  # a step every batch


def test_flops_match_ultralytics_own_count():
    """The report's FLOPs (torch's counter) agree with Ultralytics' figure for the same network."""
    load_ultralytics()
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import get_flops

    from analysis.profile import count_flops

    model = DetectionModel("yolov8n.yaml", nc=80, verbose=False).fuse(verbose=False).eval()
    ours = count_flops(model, 640) / 1e9
    theirs = get_flops(model, 640)
    assert ours == pytest.approx(theirs, rel=0.02), (ours, theirs)
    assert 8.0 < ours < 9.5  # YOLOv8n's published 8.7 GFLOPs at 640 px
