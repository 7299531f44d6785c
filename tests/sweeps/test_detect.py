"""Detection sweeps (sweeps/detect.py): a real Ray Tune sweep of Ultralytics YOLO trials, offline, one
MLflow run per trial, the detection comparison table; and bad input refused before anything starts."""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

# Not importorskip: importing Ultralytics here, at collection, would change the whole test session
# (trainables.ultralytics_compat.load_ultralytics says how); tests import it through load_ultralytics.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None,
    reason='detection needs the [detect] extra: pip install -e ".[detect]"',
)

from tests.browser import render_html  # noqa: E402
from tests.conftest import REPO, sweep_cmd, sweep_env  # noqa: E402
from trainables.shapes import ShapesSpec, generate  # noqa: E402

NETGUARD = REPO / "tests" / "netguard"
NO_ULTRALYTICS = REPO / "tests" / "no_ultralytics"
EPOCH_KEYS = ("train_box_loss", "val_box_loss", "val_precision", "val_recall", "val_mAP50", "val_mAP50_95")
TABLE_COLUMNS = (
    "model",
    "test mAP50 (%)",
    "test mAP50-95 (%)",
    "test precision (%)",
    "test recall (%)",
    "params (M)",
    "GFLOPs (1 MAC = 2 FLOPs)",
    "latency b1 median (ms)",
)


def detect_cmd(tmp_path: Path, uri: str, *extra: str) -> list[str]:
    """sweeps/detect.py with a local Ray, and everything it writes (the generated data too) under ``tmp_path``."""
    return sweep_cmd(tmp_path, uri, "--set", f"data_cache={tmp_path / 'data'}", *extra, script="detect.py")


def offline_env(ray_tmp: str, tmp_path: Path, uri: str) -> dict[str, str]:
    """Every process of the sweep (driver, Ray workers, profiler) behind tests/netguard, not seen as a
    test by Ultralytics, and with MLflow's URI in the environment, where Ultralytics' own MLflow
    callback would log if it were still on."""
    env = sweep_env(
        ray_tmp,
        PYTHONPATH=f"{NETGUARD}:{REPO}",
        CVSWEEP_NETLOG=str(tmp_path / "net.log"),
        MLFLOW_TRACKING_URI=uri,
        # Ray's and MLflow's own telemetry, off as a careful user turns it off; they are the libraries',
        # in classification sweeps as much as here (README: "Detection sweeps").
        RAY_USAGE_STATS_ENABLED="0",
        DO_NOT_TRACK="true",
        YOLO_CONFIG_DIR=str(tmp_path / "yolo"),
        # and every trial crashes once, as epoch 2 starts: Ray Tune retries it from epoch 1's last.pt
        CVSWEEP_FAIL_IN_EPOCH="2",
    )
    for key in ("PYTEST_CURRENT_TEST", "YOLO_OFFLINE", "CI", "GITHUB_ACTIONS"):
        env.pop(key, None)
    return env


def network_attempts(log: Path) -> list[str]:
    """The attempts tests/netguard recorded, less the one it cannot prevent: Ray's dashboard asks the
    cloud metadata addresses which cloud it runs on at start, whether usage stats are on or off."""
    if not log.exists():
        return []
    attempts = ["--- pid" + a for a in log.read_text().split("--- pid")[1:]]
    return [a for a in attempts if "cloud_metadata_request" not in a]


@pytest.mark.e2e
def test_default_detection_sweep_offline_retried_one_run_per_trial_and_a_table(tmp_path, ray_tmp):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run(
        detect_cmd(tmp_path, uri, "--smoke-test"),
        capture_output=True,
        text=True,
        timeout=900,
        env=offline_env(ray_tmp, tmp_path, uri),
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # nothing left the machine, in any process of the sweep (the guard was loaded by Ray's workers too)
    loaded = (tmp_path / "net.log.loaded").read_text()
    assert "default_worker" in loaded or "ray::" in loaded, loaded[:2000]
    assert not network_attempts(tmp_path / "net.log")

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {client.get_experiment(r.info.experiment_id).name for r in runs} == {"detect-shapes"}  # no Ultralytics run
    parent = next(r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags)
    children = [r for r in runs if MLFLOW_PARENT_RUN_ID in r.data.tags]
    assert len(runs) == 3 and parent.data.tags["task"] == "detect" and parent.info.status == "FINISHED"
    assert sorted(c.data.params["model"] for c in children) == ["yolo11n", "yolov8n"]  # one run per trial
    for c in children:
        assert c.info.status == "FINISHED" and c.data.tags[MLFLOW_PARENT_RUN_ID] == parent.info.run_id
        assert c.data.tags["retries"] == "1" and "failure injected" in open(c.data.tags["last_error"]).read()
        # every epoch's curves, and what it asked of the machine (MLflow's System metrics; Ultralytics runs the
        # loop, so no data-wait share), each once although the trial was retried
        for key in (*EPOCH_KEYS, "system/cpu_utilization_percentage", "system/peak_rss_megabytes"):
            assert [m.step for m in client.get_metric_history(c.info.run_id, key)] == [1, 2], key
        for key in ("best_val_mAP50_95", "best_epoch", "test_mAP50", "test_mAP50_95", "train_time_s"):
            assert key in c.data.metrics, key
        assert [a.path for a in client.list_artifacts(c.info.run_id, "weights")] == ["weights/best.pt"]
        assert c.data.params["weights_file"] == "none (random init)" and c.data.params["mosaic"]
        assert "mlflow" in c.data.params["ultralytics_integrations_off"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {
        "report/report.md",
        "report/report.html",
        "report/comparison.csv",
    }
    (table_csv,) = tmp_path.glob("reports/detect-shapes/*/comparison.csv")
    rows = list(csv.DictReader(open(table_csv)))
    assert sorted(r["model"] for r in rows) == ["yolo11n", "yolov8n"]
    assert set(TABLE_COLUMNS) <= set(rows[0])
    assert all(float(r["GFLOPs (1 MAC = 2 FLOPs)"]) > 0 and float(r["latency b1 median (ms)"]) > 0 for r in rows)
    assert "Detection comparison" in proc.stdout and "weights/best.pt" in proc.stdout

    # the report rebuilds from MLflow alone, with the profiles cached on the runs: no timing again when it
    # asks for timings no longer than the smoke sweep's (the default, 1 s, would time them again)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.report",
            "--experiment",
            "detect-shapes",
            "--tracking-uri",
            uri,
            "--out",
            str(tmp_path / "again"),
            "--no-log",
            "--timing-s",
            "0.2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "profiling" not in out.stdout and "yolo11n" in out.stdout
    seen = render_html(tmp_path / "again" / "report.html")  # a real browser: the page and its table
    assert seen.console_errors == [] and seen.failed_requests == []
    assert seen.tables[0] == (2, len(rows[0])) and "Detection comparison" in seen.title + seen.text


def test_bad_data_is_refused_before_anything_starts(tmp_path, ray_tmp):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = sweep_env(ray_tmp)
    missing = subprocess.run(
        detect_cmd(tmp_path, uri, "--data", str(tmp_path / "nope.yaml"), "--models", "yolov8q"),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert missing.returncode == 2
    assert "nope.yaml: no such file" in missing.stderr and "yolov8q" in missing.stderr  # both, in one go
    root = generate(tmp_path / "d", ShapesSpec(train=8, val=4, test=4), progress=lambda _: None).parent
    shutil.rmtree(root / "images" / "val")
    broken = subprocess.run(
        detect_cmd(tmp_path, uri, "--data", str(root / "data.yaml")),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert broken.returncode == 2, broken.stdout[-2000:]
    assert "not a usable YOLO dataset" in broken.stderr and "val" in broken.stderr
    assert not (tmp_path / "ray").exists() and not (tmp_path / "mlflow.db").exists()  # nothing started


def test_a_users_data_yaml_is_read_with_its_splits(tmp_path):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare_data

    root = generate(tmp_path, ShapesSpec(train=12, val=5, test=0), progress=lambda _: None).parent
    text = (root / "data.yaml").read_text().replace("test: images/test\n", "")
    (root / "mine.yaml").write_text(text)
    cfg = config_from_dict({"data": str(root / "mine.yaml")})
    data, summary, _ = prepare_data(cfg, print)
    assert data == {"yaml": str(root / "mine.yaml")}
    assert (summary["train_size"], summary["val_size"], summary["num_classes"]) == (12, 5, 3)
    assert "test_size" not in summary


def test_without_ultralytics_classification_imports_and_detection_says_how_to_get_it():
    """With Ultralytics unimportable (as without the [detect] extra): the classification modules import
    and start (the default classification e2e sweep runs that way too, tests/sweeps/test_e2e.py), and
    the detection script says how to install it."""
    env = {**os.environ, "PYTHONPATH": f"{NO_ULTRALYTICS}:{REPO}"}
    code = (
        "import sweeps.classify, sweeps.run, sweeps.trial_runs, analysis.report, trainables.trainable\n"
        "import sys; assert not any(m.startswith('ultralytics') for m in sys.modules)\n"
        "sys.exit(sweeps.classify.main(['--help']))"
    )
    ok = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert ok.returncode == 0 and "usage: python sweeps/classify.py" in ok.stdout, ok.stderr[-2000:]
    det = subprocess.run(
        [sys.executable, str(REPO / "sweeps" / "detect.py")], capture_output=True, text=True, env=env, timeout=300
    )
    assert det.returncode == 2 and 'pip install -e ".[detect]"' in det.stderr
