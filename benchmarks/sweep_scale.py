"""Many short trials through the real sweep (issue 26): does the driver keep up, and does it stay small?

Runs ``python sweeps/classify.py`` (Ray local, MLflow in a local SQLite store, every trial through the real
MLflow callback and the real in-trial evidence path) with many short trials: two tiny architectures on the
bundled digits, ``--train-limit`` training images, up to 2 epochs with ASHA (grace 1: about half the
trials are stopped after epoch 1, so both ends of a trial, stopped and finished, make and upload evidence),
TPE over the learning rate, 2 trials at a time (``--cpus-per-trial 1`` on 2 cores). Measured:

- sweep time: from the first trial's start to the moment every MLflow write of every trial is made (the
  callback's own account, printed at the sweep's end), against the trials' ideal: the sum of the trials'
  own times (Tune's ``time_total_s`` of each trial's last result) / 2. Target <= 1.28 (the ratio Ray
  Tune's release tests allow for bookkeeping).
- lag: from the last trial's end to the last MLflow write. Target < 10 s.
- the driver process's peak and median memory (RSS, sampled every 0.5 s until the trials are done; Ray's workers and
  MLflow's store are other processes) and its CPU time per trial, for a small and a large sweep: neither
  should grow with the number of trials.

    python benchmarks/sweep_scale.py                     # 30 and 300 trials
    python benchmarks/sweep_scale.py --trials 20 60 --out /tmp/scale

A benchmark, not a test: it prints "met" or "missed" and exits 0 either way.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATIO_TARGET, LAG_TARGET_S = 1.28, 10.0
CONCURRENCY = 2
ENDED = re.compile(r"\[mlflow\] (\d+) trials ended in ([\d.]+) s; .* made ([\d.]+) s after the last one ended")
RECIPE = """\
search: tpe
num_samples: {trials}
objectives: [val_acc]
asha: true
grace_period: 1
max_epochs: 2
seed: 0
train_limit: {train_limit}
cpus_per_trial: 1
space:
  arch: [resnet18, convnext_atto]
  weights: none
  img_size: 32
  batch_size: 32
  warmup_epochs: 0.5
  freeze: full
  augment: none
  lr: {{loguniform: [5.0e-4, 5.0e-3]}}
"""


def sweep(trials: int, train_limit: int, work: Path) -> dict:
    recipe = work / "recipe.yaml"
    recipe.write_text(RECIPE.format(trials=trials, train_limit=train_limit))
    cmd = [
        sys.executable, "-u", str(ROOT / "sweeps" / "classify.py"), "--config", str(recipe), "--address", "local",
        "--tracking-uri", f"sqlite:///{work}/mlflow.db", "--storage-path", str(work / "ray"),
        "--output-dir", str(work / "reports"),
    ]  # fmt: skip
    t0 = time.perf_counter()
    rss, done, cpu = [], threading.Event(), [0.0]
    out = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        driver = psutil.Process(p.pid)

        def sample() -> None:
            while not done.is_set():
                try:
                    rss.append(driver.memory_info().rss)
                    cpu[0] = sum(driver.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    return
                time.sleep(0.5)

        threading.Thread(target=sample, daemon=True).start()
        log = []
        for line in p.stdout:
            log.append(line)
            if m := ENDED.search(line):
                out.update(ended=int(m[1]), trials_s=float(m[2]), lag_s=float(m[3]))
            if line.startswith("[sweep] trials finished"):
                done.set()  # the report after it is not the sweep's cost per trial
                out["sweep_done_s"] = time.perf_counter() - t0
    done.set()
    if p.returncode != 0 or "lag_s" not in out:
        sys.stdout.write("".join(log[-60:]))
        raise SystemExit(f"the sweep of {trials} trials failed (rc {p.returncode})")
    times = [json.loads(f.read_text().splitlines()[-1])["time_total_s"] for f in (work / "ray").glob("*/*/result.json")]
    out.update(
        command_s=time.perf_counter() - t0,
        results=len(times),
        ideal_s=sum(times) / CONCURRENCY,
        mean_trial_s=sum(times) / max(len(times), 1),
        peak_rss_mb=max(rss) / 2**20,
        median_rss_mb=statistics.median(rss) / 2**20,
        last_quarter_median_rss_mb=statistics.median(rss[-max(len(rss) // 4, 1) :]) / 2**20,
        driver_cpu_per_trial_s=cpu[0] / trials,
    )
    out["ratio"] = (out["trials_s"] + out["lag_s"]) / out["ideal_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, nargs="+", default=[30, 300], help="sweep sizes, run one after the other")
    ap.add_argument("--train-limit", type=int, default=150, help="training images per trial")
    ap.add_argument("--out", type=Path, help="keep each sweep's store and checkpoints here (default: a temp dir)")
    a = ap.parse_args()
    from analysis.profile import cpu_model

    print(
        f"{cpu_model()}, {psutil.cpu_count()} cores | Python {platform.python_version()}, ray {version('ray')}, "
        f"mlflow {version('mlflow')}, torch {version('torch')} | concurrency {CONCURRENCY}",
        flush=True,
    )
    rows = []
    for n in a.trials:
        base = a.out or Path(tempfile.mkdtemp(prefix="sweep-scale-"))
        work = base / f"trials-{n}"
        work.mkdir(parents=True, exist_ok=False)
        print(f"sweep of {n} trials in {work} ...", flush=True)
        r = sweep(n, a.train_limit, work)
        rows.append((n, r))
        print(
            f"{n} trials ({r['results']} with results, mean {r['mean_trial_s']:.2f} s): trials {r['trials_s']:.0f} s + "
            f"lag {r['lag_s']:.1f} s vs ideal {r['ideal_s']:.0f} s -> ratio {r['ratio']:.2f}; driver peak RSS "
            f"{r['peak_rss_mb']:.0f} MB (median {r['median_rss_mb']:.0f}, over the sweep's last quarter "
            f"{r['last_quarter_median_rss_mb']:.0f}), driver CPU {r['driver_cpu_per_trial_s']:.2f} s/trial; command "
            f"{r['command_s']:.0f} s (report included)",
            flush=True,
        )
    for n, r in rows:
        ok = r["ratio"] <= RATIO_TARGET and r["lag_s"] < LAG_TARGET_S
        print(
            f"{n} trials: ratio {r['ratio']:.2f} (target <= {RATIO_TARGET}), lag {r['lag_s']:.1f} s (target < "
            f"{LAG_TARGET_S:g} s): {'met' if ok else 'missed'}"
        )
    if len(rows) > 1:
        (n0, r0), (n1, r1) = rows[0], rows[-1]
        print(
            f"driver peak RSS: {r0['peak_rss_mb']:.0f} MB at {n0} trials, {r1['peak_rss_mb']:.0f} MB at {n1} "
            f"({r1['peak_rss_mb'] / r0['peak_rss_mb']:.2f}x); median over each sweep's last quarter "
            f"{r0['last_quarter_median_rss_mb']:.0f} and {r1['last_quarter_median_rss_mb']:.0f} MB "
            f"({r1['last_quarter_median_rss_mb'] / r0['last_quarter_median_rss_mb']:.2f}x, "
            f"{(r1['last_quarter_median_rss_mb'] - r0['last_quarter_median_rss_mb']) / max(n1 - n0, 1):.2f} MB a "
            "trial more); CPU per trial "
            f"{r0['driver_cpu_per_trial_s']:.2f} s "
            f"and {r1['driver_cpu_per_trial_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
