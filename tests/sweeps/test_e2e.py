"""End to end: the real entry script runs a real Ray Tune sweep, and MLflow holds what a user expects."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from PIL import Image
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from analysis.export import INPUT, ONNX_FILE, onnx_session
from analysis.profile import NOT_APPLICABLE
from sweeps.config import CONDITIONAL, CONFIG_DIR, DEFAULT_CONFIG, NETWORK_ONLY, load_config
from tests.browser import render_html
from tests.conftest import REPO, Listeners, sweep_cmd, sweep_env
from trainables import metrics as M
from trainables.augment import eval_transform
from trainables.config import BASELINE_FAMILY, TrialConfig
from trainables.contracts import CHAMPION_ALIAS, CONFIRM_STAGE, MODEL_ID_TAG, SEARCH_STAGE, STAGE_TAG, TRIAL_ID_TAG
from trainables.data import ImageSamplesDataset, check_image, load_splits
from trainables.evidence import (
    CONFUSION_CSV,
    CONFUSION_PNG,
    CURVES_PNG,
    GRADCAM_NPZ,
    GRADCAM_PNG,
    PER_CLASS_CSV,
    PREDICTIONS_CSV,
)
from trainables.models import family_of

pytestmark = pytest.mark.e2e
EVIDENCE_FILES = (CONFUSION_CSV, CONFUSION_PNG, PER_CLASS_CSV, PREDICTIONS_CSV, CURVES_PNG, GRADCAM_PNG, GRADCAM_NPZ)
REPORT_FILES = {"report.md", "report.html", "comparison.csv", "figures"}
# The HTML table's key columns (every column is in the section below them).
KEY_HEADERS = (
    "architecture", "freeze", "augment", "lr (head)", "test acc (%)", "test acc 95% CI (%, Wilson)", "vs top (5%)",
    "test macro-F1 (%)", "latency b1 median (ms)", "GFLOPs (1 MAC = 2 FLOPs)", "params (M)",
)  # fmt: skip
FAMILIES = {"resnet", "efficientnet", "vit", "convnext"}
BASELINE_METRICS = (M.TRAIN_F1, M.VAL_ACC, M.VAL_F1, M.EPOCH_TIME, M.LATENCY)  # a baseline has no loss or LR


def run_sweep(tmp_path: Path, ray_tmp: str, *extra: str, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    proc, uri, _ = watch_sweep(tmp_path, ray_tmp, *extra, **env)
    return proc, uri


def watch_sweep(
    tmp_path: Path, ray_tmp: str, *extra: str, **env: str
) -> tuple[subprocess.CompletedProcess, str, Listeners]:
    """The smoke sweep as a user runs it, and what its processes listened on while it ran."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cmd = sweep_cmd(tmp_path, uri, "--smoke-test", *extra)
    with (
        subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=sweep_env(ray_tmp, **env),
            stdin=subprocess.DEVNULL,
        ) as popen,
        Listeners(popen.pid) as listening,
    ):
        try:
            out, err = popen.communicate(timeout=900)
        except BaseException:  # a timeout (ours or pytest's): stop the sweep, or leaving the with-block waits on it
            popen.kill()
            raise
    proc = subprocess.CompletedProcess(cmd, popen.returncode, out, err)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return proc, uri, listening


def check_sweep_in_mlflow(
    uri: str, experiment: str, trials: int = 5, families: set[str] = FAMILIES
) -> tuple[MlflowClient, list, list]:
    """Defaults: a smoke sweep of a shipped recipe, one trial per family and one confirmation trial."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags]
    children = [r for r in runs if MLFLOW_PARENT_RUN_ID in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert {c.data.tags[MLFLOW_PARENT_RUN_ID] for c in children} == {parent.info.run_id}
    assert len(children) == trials and {c.data.tags["family"] for c in children} == families
    assert len({c.data.tags[TRIAL_ID_TAG] for c in children}) == trials  # one run per trial, none twice
    # the data each run trained, chose and was tested on, as MLflow datasets: one per split, with its context
    for run in (parent, *children):
        inputs = run.inputs.dataset_inputs
        assert sorted(i.tags[0].value for i in inputs) == ["test", "train", "validation"], run.info.run_name
        assert {i.dataset.digest for i in inputs} == {i.dataset.digest for i in parent.inputs.dataset_inputs}
    for c in children:
        assert c.info.status == "FINISHED", c.info.run_name
        if c.data.tags["family"] == BASELINE_FAMILY:
            check_baseline_run(client, c)
            continue
        # every trial parameter, defaults included; a conditional one only under its freeze strategy
        expected = set(TrialConfig.field_names()) - set(CONDITIONAL) | set(NETWORK_ONLY) | {"img_size"}
        assert expected <= set(c.data.params) and not {"svm_c", "hog_cell"} & set(c.data.params)
        assert ("unfreeze_stages" in c.data.params) == (c.data.params["freeze"] == "partial")
        assert ("gradual_epochs" in c.data.params) == (c.data.params["freeze"] == "gradual")
        assert c.data.tags["device"] == "cpu" and c.data.tags["hostname"]
        assert c.data.params["weights"] == "none" and c.data.params["weights_source"] == "random init"
        assert c.info.run_name.startswith(c.data.params["arch"] + "-" + c.data.params["freeze"])
        epochs = int(c.data.metrics["epochs_run"])
        for key in (M.TRAIN_LOSS, M.TRAIN_F1, M.VAL_ACC, M.VAL_F1, M.LR, M.EPOCH_TIME, M.LATENCY):
            steps = [m.step for m in client.get_metric_history(c.info.run_id, key)]
            assert sorted(steps) == list(range(1, epochs + 1)), (key, steps)  # gap-free, no duplicates
        for key in M.SUMMARY_METRICS:
            assert key in c.data.metrics, key
        evidence = {a.path for a in client.list_artifacts(c.info.run_id, "evidence")}
        assert evidence == {f"evidence/{f}" for f in EVIDENCE_FILES}, c.info.run_name
        assert [a.path for a in client.list_artifacts(c.info.run_id, "checkpoint")] == ["checkpoint/best_model.pt"]
        assert c.data.tags[MODEL_ID_TAG].startswith("m-")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert artifacts == {f"report/{f}" for f in REPORT_FILES}
    return client, parent, children


def check_baseline_run(client: MlflowClient, c) -> None:
    """A baseline's run: its own settings and none of a network's, one report, the same evidence and
    model files without Grad-CAM (which its tag says does not apply)."""
    arch = c.data.params["arch"]
    own = {k for k, when in CONDITIONAL.items() if when.parent == "arch" and when.holds(arch)}
    others = {k for k, when in CONDITIONAL.items() if when.parent == "arch" and not when.holds(arch)}
    assert own and own <= set(c.data.params) and not (others | set(NETWORK_ONLY)) & set(c.data.params)
    assert c.info.run_name.startswith(c.data.params["arch"] + "-")
    assert c.data.tags["stopped_early"] == "false" and int(c.data.metrics["epochs_run"]) == 1
    for key in BASELINE_METRICS:
        assert [m.step for m in client.get_metric_history(c.info.run_id, key)] == [1], key
    for key in M.SUMMARY_METRICS:
        assert key in c.data.metrics, key
    source = c.data.params["weights_source"]
    assert ("support vectors" in source) if arch == "hog_svm" else source.startswith("random init; ")
    evidence = {a.path for a in client.list_artifacts(c.info.run_id, "evidence")}
    assert evidence == {f"evidence/{f}" for f in EVIDENCE_FILES if f not in (GRADCAM_PNG, GRADCAM_NPZ)}
    assert c.data.tags["gradcam"].startswith("none: ValueError: Grad-CAM")
    assert [a.path for a in client.list_artifacts(c.info.run_id, "checkpoint")] == ["checkpoint/best_model.pt"]
    assert c.data.tags[MODEL_ID_TAG].startswith("m-")


def check_rows_are_their_runs(rows: list[dict], children: list) -> None:
    """Each row of the comparison table is the numbers of the MLflow run it names."""
    by_run = {c.info.run_id: c for c in children}
    for r in rows:
        run = by_run[r["MLflow run"]]
        assert r["family"] == run.data.params["family"] and r["architecture"].startswith(run.data.params["arch"])
        for column, metric in (("val acc", M.BEST_VAL_ACC), ("test acc", M.TEST_ACC), ("test macro-F1", M.TEST_F1)):
            assert float(r[f"{column} (%)"]) == pytest.approx(100 * run.data.metrics[metric]), column
        assert float(r["train time (s)"]) == pytest.approx(run.data.metrics[M.TRAIN_TIME], rel=1e-3)


def read_table(tmp_path: Path) -> list[dict]:
    (csv_path,) = tmp_path.glob("reports/*/*/comparison.csv")
    with open(csv_path) as f:
        return list(csv.DictReader(f))


def test_smoke_sweep_on_the_default_digits(tmp_path, ray_tmp):
    # with Ultralytics unimportable in every process: classification must not need the [detect] extra
    proc, uri, listening = watch_sweep(tmp_path, ray_tmp, PYTHONPATH=f"{REPO / 'tests' / 'no_ultralytics'}:{REPO}")
    # Ray of the sweep's own serves this machine only: GCS, raylet, agents, the driver and every trial worker
    assert "Ray: a local instance of its own, on 127.0.0.1 only" in proc.stdout
    assert {"gcs_server", "raylet"} <= {name for _, name in listening.seen}, listening.seen
    assert any(name.startswith("ray::") for _, name in listening.seen), listening.seen
    assert listening.not_loopback() == []
    # one trial per architecture (the four families and the HOG + SVM baseline), one confirmation trial
    client, parent, children = check_sweep_in_mlflow(uri, "classify-digits", 6, FAMILIES | {BASELINE_FAMILY})
    assert parent.data.params["data_source"] == "sklearn.datasets.load_digits"
    assert parent.data.tags["version.ray"].startswith("2.60")
    rows = read_table(tmp_path)
    assert {r["family"] for r in rows} == FAMILIES | {BASELINE_FAMILY} and len(rows) == 5
    check_rows_are_their_runs(rows, children)
    by_run = {c.info.run_id: c for c in children}
    for r in rows:  # each row is the numbers of the MLflow run it names
        run = by_run[r["MLflow run"]]
        assert float(r["test acc (%)"]) == pytest.approx(100 * run.data.metrics[M.TEST_ACC])
        assert float(r["test top-5 acc (%)"]) == pytest.approx(100 * run.data.metrics[M.TEST_TOP5])
        assert float(r["params (M)"]) * 1e6 == pytest.approx(float(run.data.params["param_count"]), rel=1e-3)
        if r["family"] == BASELINE_FAMILY:  # FLOPs and ONNX do not apply to scikit-image's features: said so
            assert r["GFLOPs (1 MAC = 2 FLOPs)"] == r["GMACs"] == NOT_APPLICABLE
            assert r["ONNX Runtime CPU latency b1 median (ms)"] == NOT_APPLICABLE
            assert r["freeze"] == r["augment"] == "-" and r["lr (head)"] == ""
        else:
            assert float(r["GFLOPs (1 MAC = 2 FLOPs)"]) == pytest.approx(2 * float(r["GMACs"]))
        assert 0 < float(r["latency b1 median (ms)"]) <= float(r["latency b1 p90 (ms)"])
        assert float(r["throughput (img/s)"]) > 0 and float(r["size on disk (MB)"]) > 0
        assert float(r["train time (s)"]) > 0 and int(r["epochs run"]) >= 1
    assert "mlflow ui --backend-store-uri" in proc.stdout and "comparison report:" in proc.stdout
    (report,) = tmp_path.glob("reports/*/*/report.md")  # --smoke-test times for 0.2 s, and the report says so
    assert "at least 30 runs and 0.2 s" in report.read_text()
    # the recipe every network row trained with, the defaults the weights and the policy resolved included;
    # the baseline's own settings; and what it means that the HOG + SVM beat (or tied) the networks
    text = report.read_text()
    assert "every network row trained with weights none" in text
    assert "head_init_std 0.02" in text.split("Differing between rows")[0]
    assert "Baseline hog_svm: img_size 32, seed 0, hog_orientations 9, hog_cell 8, hog_block 2, svm_c 10" in text
    assert ("A baseline is the top row: hog_svm" in text) == (rows[0]["family"] == BASELINE_FAMILY)
    above = text.split("| architecture")[0]  # the verdict on the baselines, above the table
    assert "A baseline is the top row" in above or "Baselines against the top row" in above
    # which searched setting explained the results: the 4 network search trials of the smoke sweep
    importance = text.split("## What mattered")[1].split("## Search space")[0]
    assert "fANOVA" in importance and "| setting" in importance and "figures/importance.png" in importance
    assert "figures/parallel_coordinates.png" in importance and "parallel-coordinates" in importance
    assert {f"importance_{k}" for k in ("arch", "freeze", "augment", "lr")} <= set(parent.data.metrics)
    # Tune's console: its status table, each trial named as its MLflow run, with the searched settings, the
    # objective and the epoch; no configuration box per trial, no snapshot warnings
    final = proc.stdout.split("== Status ==")[-1]
    header = next(line for line in final.splitlines() if "Trial name" in line)
    assert [c.strip() for c in header.strip("|").split("|")][3:] == [
        "arch", "freeze", "augment", "lr", "unfreeze_stages", "seed", "val_acc", "epoch"
    ]  # fmt: skip
    assert all(f"| {c.info.run_name} " in final for c in children), final
    assert "started with configuration" not in proc.stdout and "╭" not in proc.stdout
    assert "Experiment state snapshotting" not in proc.stdout + proc.stderr
    # MLflow's note on pickled models, said once for the sweep (not at every trial's save)
    assert (proc.stdout + proc.stderr).count("logged pickled") == 1
    assert "Saving pytorch model by Pickle" not in proc.stdout + proc.stderr
    # the search's Optuna study, kept beside the sweep for Optuna's own tools: every search trial, with its value
    study = optuna.load_study(study_name=parent.data.tags["sweep"], storage=parent.data.tags["optuna_study"])
    search = [c for c in children if c.data.tags[STAGE_TAG] == SEARCH_STAGE]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {t.params["arch"] for t in complete} == {c.data.params["arch"] for c in search}
    assert max(t.value for t in complete) == pytest.approx(max(c.data.metrics[M.VAL_ACC] for c in search))
    # what each epoch asked of the machine, in MLflow's System metrics (a baseline has no loader to wait on)
    for c in children:
        system = [M.SYSTEM_CPU, M.SYSTEM_PEAK_RSS] + [M.SYSTEM_DATA_WAIT] * (c.data.tags["family"] != BASELINE_FAMILY)
        for key in system:
            steps = [m.step for m in client.get_metric_history(c.info.run_id, key)]
            assert steps == list(range(1, int(c.data.metrics["epochs_run"]) + 1)), (c.info.run_name, key)
    # the answer where the MLflow UI shows the sweep run first: its description
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(f"**Answer**: {rows[0]['architecture']}: ") and "| architecture" in note
    check_confirmed_top_row(rows, children)
    check_trial_evidence(client, uri, children[0])
    check_metrics_against_sklearn(client, uri, parent, rows[0], by_run[rows[0]["MLflow run"]])
    check_champion(client, uri, "classify-digits", rows[0]["MLflow run"])
    check_report_in_a_browser(tmp_path, n_rows=5, gradcams=4)
    network = next(r["MLflow run"] for r in rows if r["family"] != BASELINE_FAMILY)
    check_predict_and_export(tmp_path, client, parent, rows[0]["MLflow run"], network)
    check_across_sweeps(tmp_path, ray_tmp, uri, parent, rows)


def check_across_sweeps(tmp_path: Path, ray_tmp: str, uri: str, first, first_rows: list[dict]) -> None:
    """A second, one-trial sweep of the same experiment at another input size, then `--all-sweeps`: one table
    with each sweep's best row per architecture, naming its sweep and the input size each ran at."""
    second = ["--smoke-test", "--archs", "resnet18", "--img-size", "24", "--set", "confirm=null"]
    done = subprocess.run(
        sweep_cmd(tmp_path, uri, *second), capture_output=True, text=True, timeout=600, env=sweep_env(ray_tmp)
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "across"
    cmd = ["-m", "analysis.report", "--experiment", "classify-digits", "--all-sweeps", "--out", str(out)]
    across = subprocess.run(
        [sys.executable, *cmd, "--tracking-uri", uri], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert across.returncode == 0, across.stdout[-3000:] + across.stderr[-3000:]
    with open(out / "across.csv") as f:
        rows = list(csv.DictReader(f))
    sweeps = {r["sweep"] for r in rows}
    assert len(sweeps) == 2 and first.data.tags["sweep"] in sweeps and len(rows) == len(first_rows) + 1
    assert {r["img_size"] for r in rows if r["sweep"] == first.data.tags["sweep"]} == {"32"}
    assert [r["img_size"] for r in rows if r["sweep"] != first.data.tags["sweep"]] == ["24"]


def check_confirmed_top_row(rows: list[dict], children: list) -> None:
    """--smoke-test confirms the search's best configuration with one more seed: its row is the table's top
    (the champion), with the mean ± std of its two runs; the other rows are one seed each."""
    (confirm,) = [c for c in children if c.data.tags[STAGE_TAG] == CONFIRM_STAGE]
    search = [c for c in children if c.data.tags[STAGE_TAG] == SEARCH_STAGE]
    original = max(search, key=lambda c: c.data.metrics[M.BEST_VAL_ACC])
    assert confirm.info.run_name == original.info.run_name + "-seed1" and confirm.data.params["seed"] == "1"
    pair = (original, confirm)
    assert rows[0]["MLflow run"] in {c.info.run_id for c in pair} and rows[0]["seeds"] == "2"
    assert [r["seeds"] for r in rows[1:]] == ["1"] * (len(rows) - 1)
    for column, metric in (("val acc", M.BEST_VAL_ACC), ("test acc", M.TEST_ACC), ("test macro-F1", M.TEST_F1)):
        values = [100 * c.data.metrics[metric] for c in pair]
        mean, std = rows[0][f"{column} over seeds, mean ± std (%)"].split(" ± ")
        assert float(mean) == pytest.approx(np.mean(values), abs=0.051)
        assert float(std) == pytest.approx(np.std(values, ddof=1), abs=0.051)
        assert all(r[f"{column} over seeds, mean ± std (%)"] == "" for r in rows[1:])


def check_predict_and_export(
    tmp_path: Path, client: MlflowClient, parent, champion_run: str, network_run: str | None = None
) -> None:
    """The README's two commands after a sweep, as a user types them (no --model, MLflow's default store in
    the working directory): predictions on a directory of images, then the ONNX export. A baseline champion
    is served by predict and refused by export, with why; then ``network_run`` is exported instead."""
    samples = Path(client.download_artifacts(parent.info.run_id, "samples", str(tmp_path)))
    index = json.loads((samples / "index.json").read_text())
    assert len(index) == 16 and {e["class"] for e in index} == {str(d) for d in range(10)}  # every class shown
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}

    def command(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    text = command("-m", "analysis.predict", str(samples)).stdout.splitlines()
    assert [line.split()[0] for line in text] == sorted(e["file"] for e in index)  # one line per image
    doc = json.loads(command("-m", "analysis.predict", str(samples), "--json", "--top-k", "3").stdout)
    assert doc["model"]["run_id"] == champion_run and "champion of sweep-" in doc["model"]["found_as"]
    got = {p["file"]: p for p in doc["predictions"]}
    for line in text:
        name, label, confidence = line.split()
        assert got[name]["label"] == label and float(confidence) == pytest.approx(got[name]["confidence"], abs=1e-4)
        top = [p for _, p in got[name]["top_k"]]
        assert len(top) == 3 and 1 >= top[0] >= top[1] >= top[2] > 0
    # the logged MLflow model, fed through the eval transform stored in its metadata, agrees
    uri_of_model = f"models:/{client.get_run(champion_run).data.tags[MODEL_ID_TAG]}"
    model = mlflow.pytorch.load_model(uri_of_model).eval()
    transform = eval_transform(mlflow.models.get_model_info(uri_of_model).metadata["preprocessing"])
    x = torch.stack([transform(Image.open(samples / e["file"]).convert("RGB")) for e in index])
    with torch.inference_mode():
        probs = model(x).softmax(1)
    for e, p in zip(index, probs, strict=True):
        assert got[e["file"]]["label"] == str(int(p.argmax()))
        assert got[e["file"]]["confidence"] == pytest.approx(float(p.max()), abs=1e-5)

    champion = client.get_run(champion_run)
    if champion.data.params["family"] == BASELINE_FAMILY:
        refused = subprocess.run(
            [sys.executable, "-m", "analysis.export"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert refused.returncode == 2 and "cannot be exported to ONNX or TorchScript" in refused.stderr
        assert not (tmp_path / "exports").exists()
        champion_run = network_run
        out = command("-m", "analysis.export", "--out", "exported", "--model", network_run).stdout
        model = mlflow.pytorch.load_model(f"models:/{client.get_run(network_run).data.tags[MODEL_ID_TAG]}").eval()
        preprocessing = mlflow.models.get_model_info(
            f"models:/{client.get_run(network_run).data.tags[MODEL_ID_TAG]}"
        ).metadata["preprocessing"]
        x = torch.stack([eval_transform(preprocessing)(Image.open(samples / e["file"]).convert("RGB")) for e in index])
        with torch.inference_mode():
            got = {e["file"]: {"label": str(int(p.argmax()))} for e, p in zip(index, model(x), strict=True)}
    else:
        out = command("-m", "analysis.export", "--out", "exported").stdout
    assert "onnx: " in out and "top-1 agrees on 16 of 16 images: ok" in out
    assert out.count(": ok") == 2  # ONNX and TorchScript both within tolerance
    session = onnx_session(tmp_path / "exported" / ONNX_FILE, threads=1)
    logits = session.run(None, {INPUT: x.numpy()})[0]
    assert [str(i) for i in logits.argmax(1)] == [got[e["file"]]["label"] for e in index]
    logged = {a.path for a in client.list_artifacts(champion_run, "export")}
    assert {"export/model.onnx", "export/parity.json", "export/preprocessing.json"} <= logged


def check_metrics_against_sklearn(client: MlflowClient, uri: str, parent, row: dict, run) -> None:
    """The table's test numbers are scikit-learn's on the test predictions the run logged, and those
    predictions are what the run's logged model predicts on the sweep's own test split."""
    d = Path(client.download_artifacts(run.info.run_id, "evidence"))
    with open(d / PREDICTIONS_CSV) as f:
        logged = list(csv.DictReader(f))
    true, pred = np.array([int(r["true"]) for r in logged]), np.array([int(r["pred"]) for r in logged])
    p, r, f1, _ = precision_recall_fscore_support(true, pred, labels=range(10), average="macro", zero_division=0)
    for column, value in (("acc", accuracy_score(true, pred)), ("macro-F1", f1), ("macro-precision", p)):
        assert float(row[f"test {column} (%)"]) == pytest.approx(100 * value, abs=1e-9), column
    assert float(row["test macro-recall (%)"]) == pytest.approx(100 * r, abs=1e-9)
    # the same test split, rebuilt from the sweep's recorded settings, through the eval transform stored with the
    # model: the model's timm preprocessing, cropped at the scale its training policy saw (the run's crop_pct)
    params = parent.data.params
    splits = load_splits(None, float(params["val_frac"]), float(params["test_frac"]), int(params["seed"]))
    assert list(splits.test.labels) == list(true)
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(f"models:/{run.data.tags[MODEL_ID_TAG]}").eval()
    preprocessing = mlflow.models.get_model_info(f"models:/{run.data.tags[MODEL_ID_TAG]}").metadata["preprocessing"]
    assert preprocessing["crop_pct"] == float(run.data.params["crop_pct"])
    assert preprocessing["input_size"][-1] == int(run.data.params["input_size"])
    dataset = ImageSamplesDataset(splits.test, eval_transform(preprocessing))
    with torch.inference_mode():
        again = torch.cat([model(x).argmax(1) for x, _ in torch.utils.data.DataLoader(dataset, batch_size=64)])
    assert (again.numpy() != pred).sum() <= 1  # float summation order may flip a near-tie, no more


def check_report_in_a_browser(tmp_path: Path, n_rows: int, gradcams: int | None = None) -> None:
    """The HTML report opens in headless Chromium with no errors; every figure decodes; the table is there.
    ``gradcams``: rows with Grad-CAM heatmaps (default every row; a baseline has none)."""
    (page,) = tmp_path.glob("reports/*/*/report.html")
    seen = render_html(page, screenshot=tmp_path / "report.png", click=("test acc (%)",))
    assert seen.console_errors == [] and seen.failed_requests == []
    # two Pareto plots, then a confusion matrix, learning curves and Grad-CAM heatmaps per row
    gradcams = n_rows if gradcams is None else gradcams
    # the charts of what mattered (importances, parallel coordinates), when they could be computed
    importance = "Importances sum to 1" in seen.text
    parallel = "parallel-coordinates plot" in seen.text
    assert "What mattered" in seen.text
    n_images = 2 + 2 * n_rows + gradcams + importance + parallel
    assert len(seen.images) == n_images and all(w > 100 and h > 100 for _, w, h in seen.images)
    # the key columns first, every column (the CSV's) in the section that opens below them; no horizontal
    # scrolling at 1280 px; a click on a header sorts by it, a second reverses
    assert seen.tables[0] == (n_rows, len(KEY_HEADERS)) and seen.tables[1] == (n_rows, len(read_table(tmp_path)[0]))
    assert seen.page_width <= 1280
    before, up, down = seen.sorted_columns["test acc (%)"]
    assert up == sorted(before, key=float) and down == up[::-1]
    assert len(set(before)) > 1 and up != down  # the order did change
    assert "stopped early by ASHA" in seen.text and "Search space" in seen.text


def check_trial_evidence(client: MlflowClient, uri: str, run) -> None:
    """A trial's files say the same as its metrics, and its logged model predicts as its signature says."""
    mlflow.set_tracking_uri(uri)  # models:/ URIs resolve against the global tracking URI
    d = Path(client.download_artifacts(run.info.run_id, "evidence"))
    cm = np.loadtxt(d / CONFUSION_CSV, delimiter=",", skiprows=1, usecols=range(1, 11))
    assert cm.sum() == 270  # every test image once (digits smoke split: 270 test images)
    assert np.trace(cm) / cm.sum() == pytest.approx(run.data.metrics[M.TEST_ACC])
    with open(d / PER_CLASS_CSV) as f:
        report = {r["class"]: r for r in csv.DictReader(f)}
    assert float(report["macro avg"]["f1"]) == pytest.approx(run.data.metrics[M.TEST_F1], abs=1e-4)
    for png in (CONFUSION_PNG, CURVES_PNG):
        assert (d / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = mlflow.pytorch.load_model(f"models:/{run.data.tags[MODEL_ID_TAG]}")
    size = int(run.data.params["input_size"])
    (spec,) = mlflow.models.get_model_info(f"models:/{run.data.tags[MODEL_ID_TAG]}").signature.inputs.inputs
    assert spec.shape == (-1, 3, size, size)
    with torch.inference_mode():
        assert model(torch.zeros(3, 3, size, size)).shape == (3, 10)


def check_champion(client: MlflowClient, uri: str, name: str, best_run_id: str) -> None:
    """The table's top row is the registered model's champion."""
    version = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    assert version.tags["run_id"] == best_run_id
    mlflow.set_tracking_uri(uri)
    assert mlflow.pytorch.load_model(f"models:/{name}@{CHAMPION_ALIAS}") is not None


PHOTO_RECIPE = CONFIG_DIR / "finetune-imagenet.yaml"
# What PHOTO_RECIPE needs to run here (no GPU, no network): what it changes is the machine-bound part; the
# search space, search mode and objectives stay the recipe's own.
OFFLINE_CPU = ["--weights", "none", "--img-size", "32", "--gpus-per-trial", "0"]
# Every shipped recipe runs as a smoke sweep: the default and PHOTO_RECIPE above, the others below.
OTHER_RECIPES = [p for p in sorted(CONFIG_DIR.glob("*.yaml")) if p not in (DEFAULT_CONFIG, PHOTO_RECIPE)]


def test_the_photo_recipe_on_an_image_folder_with_a_broken_file(tmp_path, ray_tmp, image_folder):
    """finetune-imagenet.yaml, the recipe for a user's own photos, as a smoke sweep on a folder of real PNG
    and JPEG files, one of them cut off, with the offline CPU flags and two cores per trial."""
    broken = image_folder / "middle" / "half.jpg"
    broken.write_bytes(next((image_folder / "middle").glob("*.jpg")).read_bytes()[:200])  # a cut-off download
    proc, uri = run_sweep(
        tmp_path, ray_tmp, "--config", str(PHOTO_RECIPE), *OFFLINE_CPU, "--cpus-per-trial", "2",
        "--data", str(image_folder), "--skip-bad-images", "--batch-size", "16",  # 42 training images: under 64
    )  # fmt: skip
    client, parent, children = check_sweep_in_mlflow(uri, "classify-shapes")
    check_recipe_kept(proc, parent, children, load_config(PHOTO_RECIPE))
    assert parent.data.params["skipped_images"] == "1"
    skipped = client.download_artifacts(parent.info.run_id, "data/skipped_images.txt", str(tmp_path))
    (line,) = Path(skipped).read_text().splitlines()
    assert line == f"{broken}\t{check_image(str(broken))[0]}"
    assert "left out 1 unreadable file(s)" in proc.stdout
    assert parent.data.params["data_source"] == str(image_folder)
    assert parent.data.params["images_in_memory"] == "True"  # decoded once by the check, not per trial
    assert "MB of decoded pixels held in memory: trials do not decode the files again" in proc.stdout
    assert parent.data.params["num_classes"] == "3"
    assert {c.data.params["num_classes"] for c in children} == {"3"}
    assert {c.data.params["loader_workers"] for c in children} == {"1"}  # 2 CPUs: the loop + 1 loader worker
    rows = read_table(tmp_path)
    assert len(rows) == 4 and "test top-5 acc (%)" not in rows[0]  # top-5 of 3 classes would always be 100%


def check_recipe_kept(proc: subprocess.CompletedProcess, parent, children, cfg) -> None:
    """The smoke sweep ran the recipe's own search, objectives and architectures."""
    assert parent.data.params["search"] == cfg.search
    assert parent.data.params["objectives"] == str(cfg.objectives)
    assert {c.data.params["arch"] for c in children} == set(cfg.archs)
    assert f"search: {cfg.search}" in proc.stdout


# What the other recipes need offline: the baselines' CLIP as the test-sized model open_clip builds from this
# project's config, with random weights (the table labels them so), and the networks from random weights.
OFFLINE = {"baselines": [*OFFLINE_CPU, "--set", "clip_model=cvsweep-tiny", "--set", "clip_pretrained=none"]}


@pytest.mark.parametrize("recipe", OTHER_RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_runs_as_a_smoke_sweep(tmp_path, ray_tmp, recipe):
    cfg = load_config(recipe)
    offline = OFFLINE.get(recipe.stem, [])
    proc, uri = run_sweep(tmp_path, ray_tmp, "--config", str(recipe), "--experiment", recipe.stem, *offline)
    trials = len(cfg.archs) + cfg.smoke().confirm.trials
    families = {family_of(a) for a in cfg.archs}
    client, parent, children = check_sweep_in_mlflow(uri, recipe.stem, trials=trials, families=families)
    check_recipe_kept(proc, parent, children, cfg)
    rows = read_table(tmp_path)
    assert len(rows) == len(cfg.archs)  # one row per baseline and per network
    check_rows_are_their_runs(rows, children)
    if BASELINE_FAMILY in families:  # CLIP with random weights, and the table says so
        assert {r["architecture"] for r in rows} >= {
            "hog_svm", "clip_zeroshot (cvsweep-tiny, random weights)", "clip_probe (cvsweep-tiny, random weights)"
        }  # fmt: skip
