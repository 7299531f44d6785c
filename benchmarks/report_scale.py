"""How long does the comparison report take over a big sweep? Times build_report over 1,000 child runs.

    python benchmarks/report_scale.py                          # 1,000 runs, fresh store in a new temp dir
    python benchmarks/report_scale.py --runs 200 --out /tmp/scale
    python benchmarks/report_scale.py --out /tmp/scale --cprofile   # and where (b)'s time goes
    python benchmarks/report_scale.py --runs 10000 --out /tmp/scale10k --no-trial-rows   # issue 26's size
    python benchmarks/report_scale.py --out /tmp/scale10k --reuse   # the same store again, reports rebuilt

The runs are SYNTHETIC: their metrics are random numbers, not trained models. No CPU machine trains
1,000 trials for a benchmark (the default sweep's 16 trials take 5 minutes here), and the report never
trains anything: what it does, and what is timed here, is read the sweep's runs back from MLflow,
choose the rows, profile each row's architecture (or reuse the profile cached on the runs), plot,
fetch each shown row's evidence PNGs, write Markdown, CSV and HTML, and log them to the parent run.
That work depends on how many runs there are and what they hold, not on where their numbers came from,
so the record is written in the exact shape a real sweep writes it (sweeps.run.run_sweep and
sweeps.trial_runs): a parent run with the sweep's tags and parameters (``sweep``, ``trials_planned``,
``searched``, ``space.*``, ``data_source``, ...), and child runs with the trial's tags
(``mlflow.parentRunId``, ``ray_trial_id``, ``sweep``, ``family``, ``stopped_early``, ...), every trial
parameter, a value per epoch of every per-epoch metric, the summary metrics and the ``evidence/`` files
(confusion matrix PNG and CSV, per-class report, test predictions, learning curves PNG), drawn once with
trainables.evidence and logged to every run. Left out: each run's checkpoint and logged model, which
the report never reads. About 2% of the trials fail and a third are stopped early, as under ASHA.

Then, in this one process, side by side:
  (a) build_report, profiling on, no profile cached yet: it profiles the four architectures on CPU
      in a fresh process, as the first report after a sweep does;
  (b) build_report again, the profiles now cached on the runs: the number the target is about
      (issue 5: the report over 1,000 runs in under 10 s);
  (c) build_report with one row per trial (1,000 rows), profiles cached.
A benchmark, not a test: it prints "met" or "missed" and exits 0 either way.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import random
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from analysis.compare import sweep_runs
from analysis.profile import cpu_model
from analysis.report import build_report, find_sweep
from sweeps.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING, local_artifact_root, sweep_tags
from trainables import metrics as M
from trainables.config import run_name
from trainables.contracts import RECIPE_FILE
from trainables.evidence import write_confusion, write_learning_curves, write_per_class, write_predictions
from trainables.models import ARCH_PRESETS, family_of

TARGET_S = 10.0  # issue 5: report over 1,000 runs, profiles cached; issue 26: over 10,000
PROJECT = Path(__file__).resolve().parent.parent
EXPERIMENT = "classify-digits"
SWEEP = "sweep-20261123-120000"
ARCHS = ARCH_PRESETS["tiny"]
FREEZE = ("full", "partial", "frozen", "gradual")
AUGMENT = ("none", "light", "randaugment", "trivialaugment")
MAX_EPOCHS, GRACE = 4, 2  # quickstart.yaml: ASHA stops trials after 2 or 3 of 4 epochs
CLASSES = [str(d) for d in range(10)]
# Rough final validation accuracy of each architecture in the real default sweep (BENCHMARKS.md),
# so the table and the Pareto plots look like a real one's.
BASE_ACC = {"resnet18": 0.95, "efficientnet_b0": 0.3, "vit_tiny_patch16_224": 0.85, "convnext_atto": 0.92}


def recipe(runs: int) -> dict:
    """The recipe a real sweep of this shape logs on its run (quickstart.yaml's space, as parent_params says)."""
    space = {"arch": list(ARCHS), "weights": "none", "img_size": 32, "batch_size": 32, "warmup_epochs": 0.5,
             "freeze": list(FREEZE), "unfreeze_stages": [1, 2], "gradual_epochs": 1, "augment": list(AUGMENT),
             "lr": {"loguniform": [3e-4, 1e-2]}}  # fmt: skip
    return {"search": "tpe", "num_samples": runs, "asha": True, "grace_period": GRACE, "max_epochs": MAX_EPOCHS,
            "seed": 0, "space": space}  # fmt: skip


def parent_params(runs: int) -> dict[str, str]:
    """A real sweep's parent parameters (quickstart.yaml, digits), for ``runs`` trials."""
    space = {
        "arch": f"choice{list(ARCHS)}",
        "weights": "'none'",
        "img_size": "32",
        "batch_size": "32",
        "warmup_epochs": "0.5",
        "freeze": f"choice{list(FREEZE)}",
        "unfreeze_stages": "choice[1, 2]",
        "gradual_epochs": "1",
        "augment": f"choice{list(AUGMENT)}",
        "lr": "loguniform[0.0003, 0.01]",
    }
    return {
        "experiment": "None",
        "data": "None",
        "val_frac": "0.15",
        "test_frac": "0.15",
        "train_limit": "None",
        "search": "tpe",
        "num_samples": str(runs),
        "objectives": "('val_acc',)",
        "points_to_evaluate": "one_per_arch",
        "asha": "True",
        "grace_period": str(GRACE),
        "max_epochs": str(MAX_EPOCHS),
        "seed": "0",
        "cpus_per_trial": "1.0",
        "gpus_per_trial": "0.0",
        "max_failures": "1",
        "tracking_wait_s": "900.0",
        "registered_model": "None",
        "storage_path": "None",
        "output_dir": "reports",
        "source": "benchmarks/report_scale.py (synthetic runs)",
        **{f"space.{k}": v for k, v in space.items()},
        "data_name": "digits",
        "data_source": "sklearn.datasets.load_digits",
        "num_classes": "10",
        "train_size": "1257",
        "val_size": "270",
        "test_size": "270",
        "split_fingerprint": "f0dba1cc9905",
        "trials_planned": str(runs),
        "searched": "arch,freeze,unfreeze_stages,augment,lr",
    }


def trial_params(config: dict) -> dict[str, str]:
    """Every parameter a real trial's run holds: the TrialConfig fields, then what the trial reported."""
    params = {
        "amp": True,
        "backbone_lr_mult": 0.1,
        "batch_size": 32,
        "cutmix": 0.0,
        "grad_clip": 1.0,
        "img_size": 32,
        "label_smoothing": 0.1,
        "max_epochs": MAX_EPOCHS,
        "mixup": 0.0,
        "num_workers": 0,
        "random_erasing": 0.0,
        "seed": 0,
        "warmup_epochs": 0.5,
        "weight_decay": 0.05,
        "weights": "none",
        **config,
        "family": family_of(config["arch"]),
        # reported by the trial with its first epoch
        "amp_active": False,
        "channels_last": False,
        "crop_pct": 0.875,
        "device": "cpu",
        "input_size": 32,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "num_classes": 10,
        "param_count": 3377730,
        "std": (0.229, 0.224, 0.225),
        "trainable_param_count": 3377730,
        "weights_source": "random init",
    }
    return {k: str(v) for k, v in params.items()}


def write_evidence(out: Path, rng: np.random.Generator) -> Path:
    """One trial's evidence/ files, drawn once (as trainables.evidence draws a real trial's) and logged to
    every run: each file's size and the report's work on it are what matter here."""
    out.mkdir(parents=True, exist_ok=True)
    true = np.repeat(np.arange(10), 27)  # 270 test images
    pred = np.where(rng.random(true.size) < 0.9, true, rng.integers(0, 10, true.size))
    cm = np.zeros((10, 10), dtype=int)
    np.add.at(cm, (true, pred), 1)
    report = {"true": true.tolist(), "pred": pred.tolist(), "support": cm.sum(1).tolist()}
    tp = np.diag(cm)
    precision, recall = tp / np.maximum(cm.sum(0), 1), tp / np.maximum(cm.sum(1), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    report |= {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}
    write_confusion(cm.tolist(), CLASSES, out, "resnet18-full-none-lr2e-3: test split, epoch 4 (best on validation)")
    write_per_class(report, CLASSES, out)
    write_predictions(report, CLASSES, out)
    history = {k: [(e, float(v)) for e, v in enumerate(np.linspace(0.3, 0.9, MAX_EPOCHS), 1)] for k in M.EPOCH_METRICS}
    write_learning_curves(history, out, "resnet18-full-none-lr2e-3")
    return out


def fabricate(client: mlflow.MlflowClient, runs: int, evidence: Path, seed: int) -> tuple[str, str]:
    """The parent run and ``runs`` child runs of one synthetic sweep; (experiment id, parent run id)."""
    uri = mlflow.get_tracking_uri()
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=local_artifact_root(uri))
    client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    parent = client.create_run(exp_id, run_name=SWEEP, tags={**sweep_tags(SWEEP, PROJECT), MLFLOW_RUN_NAME: SWEEP})
    parent_id = parent.info.run_id
    client.log_batch(parent_id, params=[Param(k, v) for k, v in parent_params(runs).items()])
    client.log_dict(parent_id, recipe(runs), RECIPE_FILE)  # as a real sweep logs it: "What mattered" reads it
    rng = random.Random(seed)
    failed, t0 = 0, time.perf_counter()
    for i in range(runs):
        config = {
            "arch": ARCHS[i % len(ARCHS)] if i < len(ARCHS) else rng.choice(ARCHS),  # one starting point each
            "freeze": rng.choice(FREEZE),
            "unfreeze_stages": rng.choice((1, 2)),
            "gradual_epochs": 1,
            "augment": rng.choice(AUGMENT),
            "lr": 10 ** rng.uniform(np.log10(3e-4), -2),
        }
        name = run_name(config)
        tags = {
            MLFLOW_PARENT_RUN_ID: parent_id,
            MLFLOW_RUN_NAME: name,
            "ray_trial_id": f"{rng.getrandbits(32):08x}",
            "sweep": SWEEP,
            "family": family_of(config["arch"]),
        }
        run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
        fails = rng.random() < 0.02
        # ASHA (grace 2, reduction 4 here) stops about a third of the trials after epoch 2 or 3.
        epochs = rng.randint(1, 3) if fails else (MAX_EPOCHS if rng.random() < 0.65 else rng.choice((2, 3)))
        final = min(0.99, max(0.05, BASE_ACC[config["arch"]] - 0.25 * (config["freeze"] == "frozen")))
        now, val, metrics = int(time.time() * 1000), [], []
        for e in range(1, epochs + 1):
            acc = min(0.995, max(0.02, final * (0.55 + 0.45 * e / MAX_EPOCHS) + rng.gauss(0, 0.02)))
            val.append(acc)
            epoch = {
                M.TRAIN_LOSS: 2.3 * (1 - acc) + 0.2,
                M.TRAIN_ACC: acc * 0.7,
                M.TRAIN_F1: acc * 0.68,
                M.VAL_LOSS: 2.3 * (1 - acc) + 0.1,
                M.VAL_ACC: acc,
                M.VAL_F1: acc - 0.005,
                M.LR: config["lr"] * 0.5 * (1 + np.cos(np.pi * e / MAX_EPOCHS)),
                M.EPOCH_TIME: rng.uniform(6, 12),
                M.THROUGHPUT: rng.uniform(100, 200),
                M.LATENCY: rng.uniform(4, 10),
            }
            metrics += [Metric(k, float(v), now + e * 10_000, e) for k, v in epoch.items()]
        params = [Param(k, v) for k, v in trial_params(config).items()]
        tags = [RunTag("hostname", "vm"), RunTag("device", "cpu")]
        if fails:
            client.log_batch(run_id, metrics=metrics, params=params, tags=[*tags, RunTag("error", "synthetic")])
            client.set_terminated(run_id, "FAILED")
            failed += 1
            continue
        best = max(range(epochs), key=val.__getitem__)
        test = min(1.0, max(0.0, val[best] + rng.gauss(0, 0.015)))
        summary = {
            M.BEST_VAL_ACC: val[best],
            M.BEST_EPOCH: best + 1,
            M.TEST_ACC: test,
            M.TEST_F1: test - 0.003,
            M.TEST_PRECISION: test + 0.002,
            M.TEST_RECALL: test - 0.001,
            M.TRAIN_TIME: sum(m.value for m in metrics if m.key == M.EPOCH_TIME),
            M.TEST_TOP5: 1 - (1 - test) * 0.2,
            "epochs_run": epochs,
        }
        metrics += [Metric(k, float(v), now + 60_000, epochs) for k, v in summary.items()]
        tags += [RunTag("stopped_early", str(epochs < MAX_EPOCHS).lower()), RunTag("model_id", f"m-{run_id}")]
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        client.log_artifacts(run_id, str(evidence), "evidence")
        client.set_terminated(run_id, "FINISHED")
        if (i + 1) % 100 == 0 or i + 1 == runs:
            rate = (i + 1) / (time.perf_counter() - t0)
            print(f"  {i + 1}/{runs} runs written ({rate:.0f} runs/s)", flush=True)
    client.log_batch(parent_id, metrics=[Metric("trials", runs, 0, 0), Metric("trials_failed", failed, 0, 0)])
    client.set_tag(parent_id, "interrupted", "false")
    client.set_terminated(parent_id, "FINISHED")
    return exp_id, parent_id


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())  # 1, 5 and 15 minute averages


def timed_report(label: str, parent_id: str, out: Path, rows: str) -> tuple[str, float, float, int]:
    """(label, seconds to find the sweep, seconds of build_report, table rows), as python -m analysis.report
    does it: find the sweep's parent run, then build the report (and log it to that run)."""
    print(f"\n{label}: load average before {load()}", flush=True)
    t0 = time.perf_counter()
    exp_id, parent = find_sweep(EXPERIMENT)
    t1 = time.perf_counter()
    assert parent.info.run_id == parent_id
    report = build_report(exp_id, parent, out, rows=rows, device="cpu", progress=lambda s: print(f"  {s}"))
    return label, t1 - t0, time.perf_counter() - t1, len(report.table)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000, help="child runs to fabricate (default %(default)s)")
    p.add_argument("--out", type=Path, help="new directory for the store and the reports (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0, help="of the random numbers (default %(default)s)")
    p.add_argument("--no-trial-rows", action="store_true", help="skip (c), the report with one row per trial")
    p.add_argument("--reuse", action="store_true", help="--out holds a store this script wrote: time its reports again")
    p.add_argument("--cprofile", action="store_true", help="then run (b) once more under cProfile; top functions")
    a = p.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="report-scale-"))
    out.mkdir(parents=True, exist_ok=True)
    if (out / "mlflow.db").exists() and not a.reuse:
        raise SystemExit(f"--out {out}: holds a store already; give a new directory, or --reuse it")
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = mlflow.MlflowClient()

    if a.reuse and (out / "mlflow.db").exists():
        exp_id, parent = find_sweep(EXPERIMENT)
        parent_id = parent.info.run_id
        if RECIPE_FILE not in {f.path for f in client.list_artifacts(parent_id)}:  # written by an earlier version
            client.log_dict(parent_id, recipe(int(parent.data.params["trials_planned"])), RECIPE_FILE)
        print(f"reusing the sweep in {out / 'mlflow.db'} (its reports are rebuilt)", flush=True)
    else:
        print(f"writing 1 parent run and {a.runs} synthetic child runs to {out / 'mlflow.db'}", flush=True)
        t0 = time.perf_counter()
        evidence = write_evidence(out / "evidence", np.random.default_rng(a.seed))
        exp_id, parent_id = fabricate(client, a.runs, evidence, a.seed)
        print(f"written in {time.perf_counter() - t0:.0f} s")

    load_before = load()
    plan = [("(a) rows per architecture, profiling 4 models", "arch"), ("(b) the same, profiles cached", "arch")]
    if not a.no_trial_rows:
        plan.append(("(c) one row per trial, profiles cached", "trial"))
    timings = [timed_report(label, parent_id, out / f"report-{i}", rows) for i, (label, rows) in enumerate(plan)]
    load_after = load()

    t0 = time.perf_counter()
    read = sweep_runs(exp_id, parent_id)  # what every report reads first; timed alone as a breakdown
    read_s = time.perf_counter() - t0
    status = read["status"].value_counts().to_dict()

    versions = ", ".join(f"{n} {version(n)}" for n in ("torch", "mlflow", "pandas", "matplotlib", "numpy"))
    print(f"\nmachine: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    print(f"python {platform.python_version()}, {versions}")
    print(f"load average (1, 5, 15 min): before (a) {load_before}; after the last {load_after}")
    print(f"runs read by each report: {len(read)} child runs ({status}); reading them alone: {read_s:.1f} s")
    print(f"\n| report over {len(read)} runs | find the sweep (s) | build_report (s) | table rows |")
    print("|:--|--:|--:|--:|")
    for label, find_s, build_s, n in timings:
        print(f"| {label} | {find_s:.2f} | {build_s:.1f} | {n} |")
    b = timings[1][1] + timings[1][2]
    verdict = "met" if b < TARGET_S else "missed"
    print(f"\ntarget {TARGET_S:g} s for (b), finding the sweep included: {verdict} ({b:.1f} s)")

    if a.cprofile:
        print("\n(b) once more under cProfile (slower than above; read the shares, not the seconds):")
        prof = cProfile.Profile()
        prof.enable()
        exp_id, parent = find_sweep(EXPERIMENT)
        build_report(exp_id, parent, out / "report-cprofile", device="cpu", progress=lambda s: None)
        prof.disable()
        prof.dump_stats(out / "report_b.prof")
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(40)
        print(text.getvalue())
        print(f"full profile: {out / 'report_b.prof'} (python -m pstats, or snakeviz)")


if __name__ == "__main__":
    main()
