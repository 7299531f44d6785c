"""Search efficiency (issues 8 and 23): Optuna TPE, with and without early stopping, against the full grid,
in epochs spent.

The space is a recipe's `space` (`--config RECIPE`; by default 24 configurations: the 4 `tiny`
architectures x 3 freeze strategies x 2 learning rates, everything else as the default recipe, at 32 px),
on the bundled digits or on an image folder (`--data DIR`). It is run three ways:

1. The grid, for real: `sweeps/classify.py --search grid --no-asha`, every configuration for all epochs.
   Its MLflow runs give each configuration's validation accuracy after every epoch, and what each epoch
   took; the best of all of them is the grid's best. The grid's compute = 24 x epochs.
2. TPE + ASHA, for real, once: `sweeps/classify.py` with the same space, TPE, ASHA (the default grace
   period, 2 epochs) and seed 0, the grid's seed, so every trial trains on the same split from the same
   initial weights as the grid's run of that configuration. Epochs are counted in the order the trials reported them
   (MLflow's timestamps) up to the first one within 1 point of the grid's best.
3. Over several search seeds, replayed, three ways: TPE alone, TPE + one ASHA ranking every trial together
   (the sweep's scheduler before issue 23) and TPE + the sweep's own scheduler (`sweeps.space.scheduler`:
   one ASHA per family), both ASHAs at the recipe's grace period; the same Ray Tune search (the sweep's
   own searcher, which never trains a configuration twice; 2 trials at a time) whose trials
   report the grid's measured curves instead of training again (each epoch sleeps its measured time, scaled
   down, so trials interleave as they would). This is how tabular HPO benchmarks compare searches: the seed changes
   only the search, not the data split or the weights, and costs seconds instead of minutes.

Prints, per seed, the epochs spent until a configuration within 1 point of the grid's best validation
accuracy was seen, as a share of the grid's epochs (and of its measured training seconds). Target:
<= 35% of the grid's epochs in at least 4 of 5 search seeds.

    python benchmarks/search_efficiency.py                     # grid, live seed 0, 3 x 5 replayed seeds: ~35 min
    python benchmarks/search_efficiency.py --out /tmp/se --reuse --seeds 10   # replay again from the saved runs
    python benchmarks/search_efficiency.py --data DIR --config RECIPE --out /tmp/se2   # another space and data
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlflow.tracking import MlflowClient  # noqa: E402

from analysis.profile import cpu_model  # noqa: E402
from sweeps.config import config_from_dict  # noqa: E402
from trainables import metrics as M  # noqa: E402

SPACE = {  # 4 x 3 x 2 = 24 configurations; the rest as the default recipe
    "arch": "tiny",
    "weights": "none",
    "img_size": 32,
    "batch_size": 32,
    "warmup_epochs": 0.5,
    "freeze": ["full", "partial", "frozen"],
    "unfreeze_stages": 2,
    "augment": "light",
    "lr": [1.0e-3, 3.0e-3],
}
WITHIN = 0.01  # "within 1 point" of the grid's best validation accuracy (val_acc is a fraction)
CONCURRENCY = 2  # trials at a time: 2 cores, one per trial, as the sweep runs here


def recipe(
    search: str,
    epochs: int,
    num_samples: int | None,
    seed: int,
    grace: int | None,
    space: dict,
    data: str | None,
    starting_points: str | list = "one_per_arch",
) -> dict:
    """The sweep's recipe; ``grace``: ASHA's grace period, None for no ASHA (always none for the grid);
    ``starting_points``: the search's ``points_to_evaluate`` (none for the grid)."""
    grid = search == "grid"
    return {
        "data": data,
        "search": search,
        "num_samples": num_samples,
        "asha": not grid and grace is not None,
        "grace_period": grace or 1,
        "points_to_evaluate": [] if grid else starting_points,
        "max_epochs": epochs,
        "seed": seed,
        "cpus_per_trial": 1,
        "space": space,
    }


def run_sweep(rec: dict, work: Path, experiment: str) -> None:
    path = work / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(rec, sort_keys=False))
    cmd = [
        sys.executable, "-u", str(ROOT / "sweeps" / "classify.py"), "--config", str(path), "--address", "local",
        "--tracking-uri", f"sqlite:///{work}/mlflow.db", "--experiment", experiment,
        "--storage-path", str(work / "ray"), "--output-dir", str(work / "reports"),
    ]  # fmt: skip
    print(f"[bench] {experiment}: {' '.join(cmd[2:])}", flush=True)
    log = work / f"{experiment}.log"
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"the {experiment} sweep failed (rc {rc}); see {log}")


def key_of(params: dict, searched: list[str]) -> str:
    """One configuration's name, the same from MLflow's string params and from Tune's typed config."""

    def norm(v) -> str:  # "0.003" (MLflow) and 0.003 (Tune) alike
        try:
            return str(float(v))
        except (TypeError, ValueError):
            return str(v)

    return " ".join(f"{k}={norm(params[k])}" for k in searched)


def trial_histories(work: Path, experiment: str, searched: list[str]) -> list[dict]:
    """Every trial of the experiment's latest sweep: its configuration and per-epoch (time, val_acc, seconds)."""
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=5000, order_by=["attributes.start_time DESC"])
    sweep = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    out = []
    for r in runs:
        acc = {m.step: m for m in client.get_metric_history(r.info.run_id, M.VAL_ACC)}
        secs = {m.step: m.value for m in client.get_metric_history(r.info.run_id, M.EPOCH_TIME)}
        steps = sorted(acc)
        if steps != list(range(1, len(steps) + 1)):
            raise SystemExit(f"{experiment}: run {r.info.run_id} has a gap in its epochs: {steps}")
        out.append({
            "key": key_of(r.data.params, searched),
            "epochs": [{"t": acc[s].timestamp, "val_acc": acc[s].value, "secs": secs[s]} for s in steps],
        })  # fmt: skip
    return out


def until_found(reports: list[tuple[str, float]], target: float) -> tuple[int | None, str | None]:
    """Epochs spent, in report order, up to and including the first report at or above ``target``."""
    for n, (key, acc) in enumerate(reports, 1):
        if acc >= target - 1e-9:
            return n, key
    return None, None


def replay_search(curves: dict[str, list[dict]], rec: dict, scale: float, pooled: bool) -> tuple[list, int]:
    """The sweep's own Ray Tune search (its OptunaSearch with TPE, its scheduler; ``pooled``: one ASHA
    for every trial instead), its trials reporting measured curves: (what was reported, in order;
    proposals that repeated a configuration)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from sweeps.space import scheduler, search_algorithm

    cfg = config_from_dict(rec, source="search_efficiency")
    alg = search_algorithm(cfg)
    sched = scheduler(cfg)
    if pooled:
        sched = ASHAScheduler(
            time_attr="training_iteration", metric=cfg.objectives[0], mode=cfg.modes()[0],
            max_t=cfg.max_epochs, grace_period=cfg.grace_period, reduction_factor=2,
        )  # fmt: skip
    searched = [k for k in cfg.ordered_keys() if cfg.space[k].searched]
    seen: list[tuple[str, float]] = []

    def trial(config: dict) -> None:
        for e in curves[key_of(config, searched)]:
            time.sleep(e["secs"] * scale)
            tune.report({M.VAL_ACC: e["val_acc"]})

    class Seen(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:  # noqa: ANN001
            seen.append((key_of(trial.config, searched), result[M.VAL_ACC]))

    with tempfile.TemporaryDirectory() as d:
        tune.Tuner(
            tune.with_resources(trial, {"cpu": 1}),
            tune_config=tune.TuneConfig(search_alg=alg, scheduler=sched, num_samples=rec["num_samples"]),
            run_config=tune.RunConfig(storage_path=d, callbacks=[Seen()], verbose=0),
        ).fit()  # fmt: skip
    return seen, getattr(alg, "repeats", 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--config",
        type=Path,
        metavar="RECIPE",
        help="a recipe whose space (and max_epochs, grace_period) to search; default: the 24 above",
    )
    ap.add_argument("--data", metavar="DIR", help="an image folder (root/<class>/<image>); default: the digits")
    ap.add_argument("--epochs", type=int, help="epochs per trial (ASHA's horizon); default the recipe's, or 8")
    ap.add_argument("--num-samples", type=int, help="trials the search may start; default the grid's size")
    ap.add_argument("--seeds", type=int, default=5, help="replayed search seeds 0..N-1 per variant; default 5")
    ap.add_argument("--scale", type=float, default=0.02, help="replayed epoch = measured seconds x this")
    ap.add_argument(
        "--no-starting-points",
        action="store_true",
        help="start each search with TPE's own random start-up instead of the recipe's points_to_evaluate "
        "(default: the recipe's, or one_per_arch as the shipped recipes)",
    )
    ap.add_argument("--no-live", action="store_true", help="skip the real TPE + ASHA sweep (seed 0)")
    ap.add_argument("--out", type=Path, help="keep the MLflow store, logs and measured curves here")
    ap.add_argument("--reuse", action="store_true", help="use --out's measured runs instead of running again")
    a = ap.parse_args()
    base = yaml.safe_load(a.config.read_text()) if a.config else {"space": SPACE, "max_epochs": 8, "grace_period": 2}
    if not isinstance(base, dict) or not isinstance(base.get("space"), dict):
        raise SystemExit(f"{a.config}: a recipe with a 'space' mapping is needed")
    epochs = a.epochs or base.get("max_epochs", 8)
    grace = base.get("grace_period", 2)
    data = a.data or base.get("data")
    starting_points = [] if a.no_starting_points else base.get("points_to_evaluate", "one_per_arch")

    def rec(search: str, num_samples: int | None, seed: int, grace: int | None) -> dict:
        return recipe(search, epochs, num_samples, seed, grace, base["space"], data, starting_points)

    work = a.out or Path(tempfile.mkdtemp(prefix="search-efficiency-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = config_from_dict(rec("grid", None, 0, None), source=str(a.config or "search_efficiency"))
    num_samples = a.num_samples or cfg.grid_size()
    searched = [k for k in cfg.ordered_keys() if cfg.space[k].searched]
    print(f"{cpu_model()} | data {data or 'the bundled digits'} | grid of {cfg.grid_size()} configurations x "
          f"{epochs} epochs | searched: {searched} | ASHA grace period {grace} | "
          f"starting points: {starting_points or 'none'}")  # fmt: skip

    saved = work / "measured.json"
    if a.reuse and saved.exists():
        measured = json.loads(saved.read_text())
    else:
        t0 = time.perf_counter()
        run_sweep(rec("grid", None, 0, None), work, "grid")
        measured = {"grid": trial_histories(work, "grid", searched), "grid_wall_s": time.perf_counter() - t0}
        saved.write_text(json.dumps(measured))
    if not a.no_live and "live" not in measured:
        t0 = time.perf_counter()
        run_sweep(rec("tpe", num_samples, 0, grace), work, "live")
        measured["live"] = trial_histories(work, "live", searched)
        measured["live_wall_s"] = time.perf_counter() - t0
        saved.write_text(json.dumps(measured))

    grid = {t["key"]: t["epochs"] for t in measured["grid"]}
    if len(grid) != cfg.grid_size() or any(len(c) != epochs for c in grid.values()):
        raise SystemExit(f"the grid's runs are incomplete: {len(grid)} configurations, want {cfg.grid_size()}")
    best_key, best = max(((k, max(e["val_acc"] for e in c)) for k, c in grid.items()), key=lambda kv: kv[1])
    target = best - WITHIN
    grid_epochs = cfg.grid_size() * epochs
    grid_secs = sum(e["secs"] for c in grid.values() for e in c)
    secs_of = {k: [e["secs"] for e in c] for k, c in grid.items()}
    finals = sorted((c[-1]["val_acc"] for c in grid.values()), reverse=True)
    print(f"grid: best val_acc {100 * best:.1f}% ({best_key}); target >= {100 * target:.1f}%; "
          f"{sum(f >= target for f in finals)} of {len(finals)} configurations end at or above it; "
          f"compute {grid_epochs} epochs, {grid_secs:.0f} s of training "
          f"(wall {measured['grid_wall_s']:.0f} s)")  # fmt: skip

    def line(name: str, reports: list[tuple[str, float]]) -> float:
        n, key = until_found(reports, target)
        trials = len({k for k, _ in reports})
        if n is None:
            print(f"  {name:<14} not found: {len(reports)} epochs over {trials} trials, none within 1 point")
            return float("inf")
        counts: dict[str, int] = {}
        for k, _ in reports[:n]:
            counts[k] = counts.get(k, 0) + 1
        secs = sum(sum(secs_of[k][:c]) for k, c in counts.items())
        print(f"  {name:<14} {n:>4} epochs = {100 * n / grid_epochs:5.1f}% of the grid's "
              f"({100 * secs / grid_secs:5.1f}% of its seconds), {len(counts)} trials started; found {key}; "
              f"whole search {len(reports)} epochs over {trials} trials")  # fmt: skip
        return n / grid_epochs

    if "live" in measured:
        print(f"TPE + ASHA per family (grace {grace}, the default), {num_samples} trials, run for real:")
        live = sorted((e["t"], t["key"], e["val_acc"]) for t in measured["live"] for e in t["epochs"])
        line("live seed 0", [(k, v) for _, k, v in live])
        diffs = [abs(t["epochs"][i]["val_acc"] - grid[t["key"]][i]["val_acc"]) for t in measured["live"]
                 for i in range(len(t["epochs"]))]  # fmt: skip
        print(f"  (live vs grid, same configuration and epoch: val_acc differs by at most {100 * max(diffs):.1f} "
              f"points over {len(diffs)} epochs; wall {measured['live_wall_s']:.0f} s)")  # fmt: skip
    import ray

    verdicts = []
    ray.init(num_cpus=CONCURRENCY, include_dashboard=False, log_to_driver=False)
    try:
        variants = (
            ("TPE alone", None, False),
            (f"TPE + ASHA, one pool, grace {grace} (before)", grace, True),
            (f"TPE + ASHA per family, grace {grace} (default)", grace, False),
        )
        for name, g, pooled in variants:
            print(f"{name}, {num_samples} trials, replayed:")
            shares = []
            for s in range(a.seeds):
                seen, repeats = replay_search(grid, rec("tpe", num_samples, s, g), a.scale, pooled)
                shares.append(line(f"seed {s}", seen))
                print(f"{'':<18}({repeats} repeated proposals answered from the study)")
            within = sum(x <= 0.35 for x in shares)
            found = sorted(x for x in shares if x != float("inf"))
            median = statistics.median(shares)
            median = "not found" if median == float("inf") else f"{100 * median:.1f}%"
            met = "met" if within >= 0.8 * len(shares) else "missed"
            verdicts.append(f"  {name:<40} found in {len(found)} of {len(shares)} seeds, within 35% of the grid's "
                            f"epochs in {within}; median {median} (target: 4 of 5 within 35%: {met})")  # fmt: skip
    finally:
        ray.shutdown()
    print("summary:")
    print("\n".join(verdicts))
    print(f"measured runs kept in {work}")


if __name__ == "__main__":
    main()
