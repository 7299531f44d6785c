"""Run one classification sweep: data -> MLflow parent run -> Ray Tune -> comparison table."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import mlflow
import ray
from ray import tune

from analysis.compare import comparison_table, write_table
from sweeps.config import SweepConfig
from sweeps.space import num_trials, scheduler, search_algorithm
from sweeps.tracking import MlflowTrialCallback, start_parent_run, ui_hint
from trainables import metrics as M
from trainables.data import DatasetSplits, limit_train, load_splits, split_fingerprint
from trainables.models import build_model, input_size_of
from trainables.trainable import train_classifier


def log(msg: str) -> None:
    print(f"[sweep] {msg}", flush=True)


def prepare_data(cfg: SweepConfig) -> DatasetSplits:
    splits = load_splits(cfg.data, cfg.val_frac, cfg.test_frac, cfg.seed)
    if cfg.train_limit is not None:
        splits = limit_train(splits, cfg.train_limit, cfg.seed)
    return splits


def check_resources(cfg: SweepConfig, available: dict[str, float]) -> None:
    """A trial that asks for more than the whole cluster has would wait forever: refuse it now. On a
    cluster joined with --address, the autoscaler may still add nodes, so there it is only a warning."""
    need = {"CPU": cfg.cpus_per_trial, "GPU": cfg.gpus_per_trial}
    short = [
        f"{need[k]:g} {k} per trial, cluster has {available.get(k, 0):g}" for k in need if need[k] > available.get(k, 0)
    ]
    if not short:
        return
    message = f"--cpus-per-trial/--gpus-per-trial ask for more than this Ray cluster has: {'; '.join(short)}"
    if cfg.address is None:
        raise ValueError(message + ". Lower the request, or join a cluster that has them with --address.")
    log(f"warning: {message}; trials wait until the autoscaler adds such nodes.")


def check_models(cfg: SweepConfig, num_classes: int) -> None:
    """Every (architecture, input size, weights) the space allows is built in the driver and runs one
    image forward, before Ray starts: a model that cannot take an input size, or weights that cannot be
    had, stop the sweep here with the combination named, not in every trial. For 'imagenet' this also
    fills timm's cache, which the trials on this machine then read."""
    import torch

    for arch in cfg.archs:
        for img_size in cfg.dim("img_size").candidates():
            for weights in cfg.dim("weights").candidates():
                if weights != "none":
                    log(f"checking {arch} with weights={weights}")
                model = build_model(arch, num_classes, img_size, weights)
                size = input_size_of(model, img_size)
                try:
                    with torch.inference_mode():
                        model.eval()(torch.zeros(1, 3, size, size))
                except RuntimeError as e:
                    raise ValueError(f"space: {arch} cannot take img_size={size}: {str(e)[:200]}") from None


def build_tuner(cfg: SweepConfig, splits: DatasetSplits, sweep_name: str, callback: MlflowTrialCallback) -> tune.Tuner:
    trainable = tune.with_resources(
        tune.with_parameters(train_classifier, splits=splits),  # put in Ray's object store once, not per trial
        {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial},
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search_algorithm(cfg),  # the space lives here (define-by-run), not in param_space
            scheduler=scheduler(cfg),
            num_samples=num_trials(cfg),
            trial_dirname_creator=lambda t: f"{t.trial_id}-{t.config['arch']}",  # Ray's default is ~200 chars
        ),
        run_config=tune.RunConfig(
            name=sweep_name,
            storage_path=str(Path(cfg.storage_path).resolve()) if cfg.storage_path else None,
            callbacks=[callback],
            # Two kept: the latest to resume from, and the one before while the latest is being written.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            verbose=1,
        ),
    )


def run_sweep(cfg: SweepConfig, project_root: Path) -> int:
    t0 = time.perf_counter()
    try:
        splits = prepare_data(cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = splits.summary()
    try:
        check_models(cfg, splits.num_classes)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log(
        f"data: {s['data_source']}: {s['num_classes']} classes, train/val/test = "
        f"{s['train_size']}/{s['val_size']}/{s['test_size']} images (stratified, seed {cfg.seed})"
    )

    if cfg.tracking_uri:
        mlflow.set_tracking_uri(cfg.tracking_uri)
    tracking_uri = mlflow.get_tracking_uri()
    experiment = cfg.experiment or f"classify-{splits.name}"
    sweep_name = time.strftime("sweep-%Y%m%d-%H%M%S")
    log(f"MLflow: {tracking_uri}, experiment {experiment!r}")

    ray.init(address=cfg.address)
    try:
        check_resources(cfg, ray.cluster_resources())
    except ValueError as e:
        ray.shutdown()
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = num_trials(cfg)
    log(f"Ray: {ray.cluster_resources()}; {n} trials, up to {cfg.max_epochs} epochs each")
    objectives = " and ".join(f"{M.OBJECTIVES[o]} {o}" for o in cfg.objectives)
    log(f"search: {cfg.search} ({objectives}), ASHA {'on' if cfg.asha else 'off'}, recipe {cfg.source}")
    if cfg.search == "grid" and n < cfg.grid_size():
        log(f"warning: num_samples={n} runs only {n} of the grid's {cfg.grid_size()} configurations")

    with start_parent_run(experiment, sweep_name, project_root) as parent:
        exp_id, parent_id = parent.info.experiment_id, parent.info.run_id
        mlflow.log_params({**cfg.flat(), **s, "split_fingerprint": split_fingerprint(splits)})
        mlflow.log_params({"trials_planned": n})
        mlflow.log_dict(cfg.to_yaml_dict(), "sweep_config.yaml")  # the recipe as run, overrides applied
        mlflow.log_dict({"points_to_evaluate": cfg.starting_points()}, "search_space.json")
        try:
            callback = MlflowTrialCallback(tracking_uri, exp_id, parent_id, sweep_name)
            results = build_tuner(cfg, splits, sweep_name, callback).fit()
        finally:
            ray.shutdown()  # before profiling: latency is measured with the machine to itself

        errors = [r for r in results if r.error]
        mlflow.log_metrics({"trials": len(results), "trials_failed": len(errors)})
        log(f"trials finished: {len(results) - len(errors)} of {len(results)}; profiling the best of each architecture")

        table, prof = comparison_table(exp_id, parent_id)
        out_dir = Path(cfg.output_dir) / experiment / sweep_name
        md, csv = write_table(table, prof, out_dir, f"{experiment} / {sweep_name}")
        mlflow.log_artifact(str(md), "comparison")
        mlflow.log_artifact(str(csv), "comparison")
        if errors:
            mlflow.set_tag("failed_trials", ", ".join(str(r.path) for r in errors))

    print()
    print(md.read_text())
    log(f"done in {time.perf_counter() - t0:.0f} s")
    log(f"comparison table: {md} and {csv}")
    log(f"trial checkpoints: {results.experiment_path}")
    log(f"browse the runs: {ui_hint(tracking_uri, exp_id, parent_id)}")
    return 1 if errors else 0
