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
import yaml
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
    data, summary, _, left_out = prepare_data(cfg, print)
    assert data == {"yaml": str(root / "mine.yaml"), "path": str(root)} and left_out == []
    assert (summary["train_size"], summary["val_size"], summary["num_classes"]) == (12, 5, 3)
    assert summary["train_boxes"] >= 12 and summary["val_boxes"] >= 5  # the generator puts 1 to 4 shapes in each
    assert "test_size" not in summary


def users_dataset(tmp_path: Path, **changes: str) -> Path:
    """A generated shapes dataset's data.yaml, with ``changes`` (key: YAML text) written over its keys."""
    root = generate(tmp_path / "gen", ShapesSpec(train=8, val=4, test=4), progress=lambda _: None).parent
    lines = [line for line in (root / "data.yaml").read_text().splitlines() if line.split(":")[0] not in changes]
    (root / "mine.yaml").write_text("\n".join([*lines, *(f"{k}: {v}" for k, v in changes.items())]) + "\n")
    return root / "mine.yaml"


def test_a_users_split_that_does_not_exist_is_named_before_ray_starts_not_taken_for_no_test_split(tmp_path):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare_data
    from sweeps.recipe import ConfigError

    with pytest.raises(ConfigError, match=rf"data: {tmp_path}: a folder \(expected a YOLO dataset's data.yaml\)"):
        config_from_dict({"data": str(tmp_path)})
    for changes in ({"test": "images/tset"}, {"train": "[images/train, images/more]"}):
        data = users_dataset(tmp_path, **changes)
        with pytest.raises(
            FileNotFoundError, match=r"--data .*mine.yaml: its (test|train) split, .*(tset|more), does not"
        ):
            prepare_data(config_from_dict({"data": str(data)}), print)


def test_splits_that_share_images_are_warned_of_and_a_data_yaml_is_named_by_its_folder(tmp_path):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare_data

    data = users_dataset(tmp_path, test="images/val")
    data = data.rename(data.parent / "data.yaml")  # as Roboflow's exports, and most others, name it
    said = []
    _, summary, _, _ = prepare_data(config_from_dict({"data": str(data)}), said.append)
    assert [s for s in said if "share" in s] == [
        f"warning: {data}: the val and test splits share 4 image(s) (e.g. {data.parent / 'images/val/000000.png'}): "
        "scores on them are optimistic; give each split its own images"
    ]
    assert summary["data_name"] == data.parent.name  # not 'data', whichever dataset it is


def test_a_users_image_list_reads_dot_slash_paths_from_the_lists_folder_as_ultralytics_does(tmp_path, monkeypatch):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare_data

    data = users_dataset(tmp_path, val="val.txt")
    (data.parent / "val.txt").write_text(
        "".join(f"./images/val/{f.name}\n" for f in (data.parent / "images/val").iterdir())
    )
    monkeypatch.chdir(tmp_path)  # not the dataset's folder: './' is the list's, not the shell's
    _, summary, _, _ = prepare_data(config_from_dict({"data": str(data)}), print)
    assert summary["val_size"] == 4


def test_image_label_pairs_ultralytics_would_drop_stop_the_sweep_naming_them_or_are_left_out_and_listed(tmp_path):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare_data

    data = users_dataset(tmp_path)
    labels = sorted((data.parent / "labels/train").iterdir())
    labels[0].write_text("7 0.5 0.5 0.2 0.2\n")  # a class beyond the 3 names
    labels[1].write_text("0 50 60 20 20\n")  # pixels, not fractions of the image
    (data.parent / "images/train" / "000002.png").write_bytes(b"not an image")
    with pytest.raises(ValueError) as e:
        prepare_data(config_from_dict({"data": str(data)}), print)
    message = str(e.value)
    assert "3 image/label pair(s) that Ultralytics would leave out" in message and "skip_bad_images: true" in message
    assert "000000" in message and "exceeds dataset class count 3" in message
    assert "000001" in message and "000002.png" in message
    said = []
    _, summary, _, left_out = prepare_data(config_from_dict({"data": str(data), "skip_bad_images": True}), said.append)
    assert (summary["train_size"], summary["skipped_images"], len(left_out)) == (5, 3, 3)
    assert all(m.startswith("train: ") for m in left_out) and any("3 image/label pair(s) left out" in s for s in said)


def test_files_ultralytics_never_reads_are_not_checked_and_bare_list_lines_reach_the_trials_resolved(
    tmp_path, monkeypatch
):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare_data
    from trainables.detection import trial_dataset

    data = users_dataset(tmp_path, val="val.txt")
    train = data.parent / "images/train"
    (train / "._000000.png").write_bytes(b"AppleDouble")  # as a copy from a Mac leaves; glob skips it
    (train / ".ipynb_checkpoints").mkdir()
    (train / ".ipynb_checkpoints" / "000000.png").write_bytes(b"a notebook's copy")
    monkeypatch.chdir(data.parent)  # lines relative to where the command runs (not './'): Ultralytics' reading
    (data.parent / "val.txt").write_text(
        "".join(f"images/val/{f.name}\n" for f in (data.parent / "images/val").iterdir())
    )
    given, summary, _, _ = prepare_data(config_from_dict({"data": str(data)}), print)
    assert (summary["train_size"], summary["val_size"]) == (8, 4)
    assert sorted(given["val"]) == sorted(str(f) for f in (data.parent / "images/val").iterdir())
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    copy = yaml.safe_load(Path(trial_dataset(given, trial_dir)).read_text())
    assert Path(copy["val"]).read_text().split() == given["val"] and "train" not in given


def test_train_limit_draws_from_the_generated_dataset_too_and_counts_only_their_boxes(tmp_path):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare_data

    said = []
    cfg = {"data_cache": str(tmp_path / "cache"), "shapes_train": 16, "train_limit": 5}
    given, summary, _, _ = prepare_data(config_from_dict(cfg), said.append)
    assert summary["train_size"] == 5 and len(given["train"]) == 5 and "shapes" in given
    assert any("train_limit: training on 5 of the 16 training images" in s for s in said)
    data = users_dataset(tmp_path)
    whole = prepare_data(config_from_dict({"data": str(data)}), print)[1]["train_boxes"]
    some = prepare_data(config_from_dict({"data": str(data), "train_limit": 2}), print)[1]["train_boxes"]
    assert 0 < some < whole


def test_a_val_split_without_a_single_box_is_refused_before_every_trial_scores_zero(tmp_path):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare_data

    data = users_dataset(tmp_path)
    for label in (data.parent / "labels/val").iterdir():
        label.write_text("")  # background images only
    with pytest.raises(
        ValueError, match=r"no labelled box in its val split \(4 images\): every trial's mAP would be 0"
    ):
        prepare_data(config_from_dict({"data": str(data)}), print)


def test_a_trial_trains_on_the_drivers_dataset_root_and_on_train_limit_images_only(tmp_path, monkeypatch):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare_data
    from trainables.detection import load_ultralytics, trial_dataset

    data = users_dataset(tmp_path, path="gen/" + users_dataset(tmp_path).parent.name)
    monkeypatch.chdir(tmp_path)  # the user runs from here: 'path' is relative to it
    said = []
    given, summary, _, _ = prepare_data(config_from_dict({"data": str(data), "train_limit": 3}), said.append)
    assert summary["train_size"] == 3 and any(
        "data: train_limit: training on 3 of the 8 training images" in s for s in said
    )
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    monkeypatch.chdir(trial_dir)  # a trial runs in a directory of its own
    load_ultralytics()
    from ultralytics.data.utils import check_det_dataset

    seen = check_det_dataset(trial_dataset(given, trial_dir), autodownload=False)
    assert Path(seen["val"]) == data.parent / "images/val"
    trained = Path(seen["train"]).read_text().split()
    assert len(trained) == 3 and {Path(f).parent for f in trained} == {data.parent / "images/train"}
    whole, _, _, _ = prepare_data(config_from_dict({"data": str(data.parent / "data.yaml")}), print)
    assert trial_dataset(whole, trial_dir) == str(data.parent / "data.yaml")  # absolute root, every image: as given
    rootless = data.parent / "rootless.yaml"  # no 'path:': Ultralytics takes the file's folder as the root
    rootless.write_text("".join(line + "\n" for line in data.read_text().splitlines() if not line.startswith("path:")))
    given, _, _, _ = prepare_data(config_from_dict({"data": str(rootless), "train_limit": 3}), print)
    seen = check_det_dataset(trial_dataset(given, trial_dir), autodownload=False)
    assert Path(seen["val"]) == data.parent / "images/val"


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


def test_a_missing_weights_file_is_named_before_any_data_is_made(tmp_path):
    from sweeps.detect_config import config_from_dict
    from sweeps.detection import prepare

    cfg = config_from_dict({"space": {"weights": str(tmp_path / "nosuch.pt")}, "data_cache": str(tmp_path / "cache")})
    with pytest.raises(FileNotFoundError, match=rf"weights: {tmp_path}/nosuch.pt does not exist"):
        prepare(cfg, print)
    assert not (tmp_path / "cache").exists()


def test_a_table_whose_models_all_scored_zero_names_no_winner_without_saying_so():
    import types

    import pandas as pd

    from sweeps.detection import best_weights

    def said(scores):
        table = pd.DataFrame({"model": ["yolov8n", "yolo11n"], "best_val_mAP50_95": scores, "run_id": ["a", "b"]})
        return best_weights(None, {}, types.SimpleNamespace(table=table))

    assert said([0.4, 0.3]) == ["best: yolov8n (run a); its weights: runs:/a/weights/best.pt"]
    assert "no model reached a validation mAP50-95 above 0 (2 rows)" in said([0.0, 0.0])[1]
    assert said([0.3, 0.3])[1] == "warning: 2 rows tie at the best validation mAP50-95 (0.3000): the first is shown"
    table = pd.DataFrame({"model": ["yolov8n"], "best_val_mAP50_95": [0.0], "run_id": ["a"]})
    alone = best_weights(None, {}, types.SimpleNamespace(table=table))
    assert alone[1].startswith("warning: its validation mAP50-95 is 0: it found no object. Train longer")
