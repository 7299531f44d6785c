"""Tracking overhead (issue 8, item 5): how much time MLflow logging takes, against the trials' own time.

Trials never call MLflow: they report to Ray Tune, and one writer thread in the sweep's driver makes every
MLflow write (sweeps/trial_runs.py). So a trial never waits on tracking; what tracking costs is the
writer's own time, spent on the same machine as the trials. This runs a sweep in this process, times
every write the writer makes (by kind: the run's creation, each epoch's metrics, the end of a trial: the
upload of the evidence, checkpoint and model its trial made), and divides the total by the trials' summed time
(`train_time_s`, training and validation). Target: <= 2%.

    python benchmarks/tracking_overhead.py                 # as the smoke sweep: 4 trials, 2 epochs, 300 images
    python benchmarks/tracking_overhead.py --epochs 8      # longer trials: more epoch writes, one end each
    python benchmarks/tracking_overhead.py --archs resnet50  # a bigger model: the driver's end-of-trial cost
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlflow.tracking import MlflowClient  # noqa: E402

from analysis.profile import cpu_model  # noqa: E402
from sweeps import trial_runs  # noqa: E402
from sweeps.classify import main as sweep_main  # noqa: E402
from trainables import metrics as M  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per trial (the smoke sweep's is 2)")
    ap.add_argument("--archs", nargs="+", help="architectures (default: the default recipe's); e.g. resnet50 to "
                    "see that the driver's cost per trial does not grow with the model")  # fmt: skip
    a = ap.parse_args()
    spent: dict[str, list[float]] = collections.defaultdict(list)
    apply = trial_runs.MlflowTrialCallback._apply

    def timed(self, op: dict) -> None:
        t0 = time.perf_counter()
        try:
            apply(self, op)
        finally:
            spent[op["op"]].append(time.perf_counter() - t0)

    trial_runs.MlflowTrialCallback._apply = timed
    with tempfile.TemporaryDirectory() as d:
        uri = f"sqlite:///{d}/mlflow.db"
        argv = ["--num-samples", "4", "--max-epochs", str(a.epochs), "--no-asha", "--set", "train_limit=300",
                "--address", "local", "--tracking-uri", uri, "--experiment", "tracking",
                "--storage-path", f"{d}/ray", "--output-dir", f"{d}/reports"]  # fmt: skip
        if a.archs:
            argv += ["--archs", *a.archs]
        t0 = time.perf_counter()
        rc = sweep_main(argv)
        wall = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"the sweep failed (rc {rc})")
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("tracking")
        children = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
        trial_s = sum(r.data.metrics[M.TRAIN_TIME] for r in children)
    writes = sum(sum(v) for v in spent.values())
    print()
    archs = sorted({r.data.params["arch"] for r in children})
    print(f"{cpu_model()} | sqlite store | {len(children)} trials of {', '.join(archs)} | sweep command {wall:.0f} s")
    for kind, times in sorted(spent.items(), key=lambda kv: -sum(kv[1])):
        print(
            f"  {kind:<12} {len(times):>4} writes  {sum(times):7.2f} s  (mean {1000 * sum(times) / len(times):.0f} ms)"
        )
    share = writes / trial_s
    verdict = "met" if share <= 0.02 else "missed"
    print(
        f"writer busy {writes:.2f} s / trials' own time {trial_s:.1f} s = {100 * share:.1f}% (target <= 2%: {verdict})"
    )


if __name__ == "__main__":
    main()
