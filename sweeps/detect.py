"""Object-detection sweep: which YOLO model, at which image size, trained how, finds the objects in
these images best, and what does each cost to run?

    python sweeps/detect.py                           # the default recipe on a generated shapes dataset, offline
    python sweeps/detect.py --data ~/data/my.yaml     # your YOLO dataset (Ultralytics' data.yaml)
    python sweeps/detect.py --models yolo11n yolo11s --img-size 320 640
    python sweeps/detect.py --smoke-test              # one short trial per model, about 2 minutes
    python sweeps/detect.py --resume ~/ray_results/detect-20261123-101500   # continue an interrupted sweep

Needs the detection extra: pip install -e ".[detect]" (Ultralytics, AGPL-3.0). A sweep is a YAML recipe
(--config, default sweeps/configs/detect/default.yaml); the flags below override it. Every trial is an ordinary
Ray Tune trial (Optuna proposes, ASHA stops laggards on validation mAP50-95, a crashed trial is retried
from its last epoch) training Ultralytics YOLO, and one MLflow run under the sweep's run, with per-epoch
losses, precision, recall, mAP50 and mAP50-95, its best weights, and the best epoch's test metrics. The
detection comparison report (mAP, params, FLOPs, latency per model) is written and logged at the end;
also `python -m analysis.report --experiment NAME`.

Ctrl-C stops a sweep cleanly (press it once and wait); --resume continues it in the same MLflow runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

OVERRIDES = {  # flag -> (settings | space, key)
    "--data": ("settings", "data"),
    "--search": ("settings", "search"),
    "--num-samples": ("settings", "num_samples"),
    "--max-epochs": ("settings", "max_epochs"),
    "--grace-period": ("settings", "grace_period"),
    "--cpus-per-trial": ("settings", "cpus_per_trial"),
    "--gpus-per-trial": ("settings", "gpus_per_trial"),
    "--max-failures": ("settings", "max_failures"),
    "--seed": ("settings", "seed"),
    "--experiment": ("settings", "experiment"),
    "--tracking-uri": ("settings", "tracking_uri"),
    "--storage-path": ("settings", "storage_path"),
    "--output-dir": ("settings", "output_dir"),
    "--address": ("settings", "address"),
    "--models": ("space", "model"),
    "--weights": ("space", "weights"),
    "--img-size": ("space", "imgsz"),
    "--optimizer": ("space", "optimizer"),
    "--augment": ("space", "augment"),
    "--batch": ("space", "batch"),
}
SWEEP_PREFIX = "detect"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from sweeps.credentials import TRACKING_URI_HELP
    from sweeps.detect_config import DETECT_CONFIG

    p = argparse.ArgumentParser(
        prog="python sweeps/detect.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] + "\nFlags left out keep the recipe's value.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--config", metavar="YAML", default=str(DETECT_CONFIG), help="sweep recipe (default: %(default)s)")
    p.add_argument(
        "--data",
        metavar="DATA_YAML",
        help="a YOLO dataset's data.yaml (train/val[/test] image folders with labels/ beside them, names). "
        "Default: a generated dataset of shapes on textured backgrounds (3 classes), no download. On a "
        "cluster the path must be readable on every node.",
    )
    space = p.add_argument_group("search space (each replaces the recipe's axis)")
    space.add_argument(
        "--models", nargs="+", metavar="NAME", help="YOLO models: yolov8|yolo11|yolo12|yolo26 + n/s/m/l/x"
    )
    space.add_argument(
        "--weights",
        help="'none': random init from the model's YAML, offline; 'pretrained': Ultralytics' COCO weights "
        "(<model>.pt, downloaded once by the driver); or a local .pt file / a directory of <model>.pt files",
    )
    space.add_argument("--img-size", nargs="+", type=int, metavar="PX", help="image sizes (multiples of 32)")
    space.add_argument("--optimizer", nargs="+", help="SGD, AdamW, Adam, RMSProp")
    space.add_argument("--augment", nargs="+", help="augmentation strength: none, light, strong")
    space.add_argument("--lr-range", nargs=2, type=float, metavar=("MIN", "MAX"), help="log-uniform range of lr0")
    space.add_argument("--batch", type=int, help="images per batch")
    run = p.add_argument_group("sweep")
    run.add_argument("--search", choices=("tpe", "random", "grid"), help="Optuna TPE, random, or every combination")
    run.add_argument("--num-samples", type=int, help="number of trials")
    run.add_argument("--max-epochs", type=int, help="epochs per trial")
    run.add_argument("--no-asha", action="store_true", help="run every trial to --max-epochs")
    run.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial")
    run.add_argument("--cpus-per-trial", type=float, help="CPU cores per trial (its torch threads)")
    run.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions share a GPU")
    run.add_argument("--max-failures", type=int, help="retries of a crashed trial, from its last epoch")
    run.add_argument("--seed", type=int, help="seed of the generated data, the search and the trials")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="any recipe setting or space axis, in YAML")
    run.add_argument(
        "--smoke-test",
        action="store_true",
        help="one 2-epoch trial per model on 48 training images, the report's timings 0.2 s each",
    )
    where = p.add_argument_group("where things go")
    where.add_argument("--experiment", help="MLflow experiment name (default: detect-<data name>)")
    where.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    where.add_argument("--storage-path", help="Ray Tune results and checkpoints (default: ~/ray_results)")
    where.add_argument("--output-dir", help="comparison report directory, under <experiment>/<sweep>")
    where.add_argument(
        "--address",
        help="Ray cluster to join ('auto' on a cluster node); default: $RAY_ADDRESS, else a `ray start` instance "
        "on this machine, else a Ray of the sweep's own that listens on 127.0.0.1 only",
    )
    where.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep from its directory")
    return p.parse_args(argv)


def config_from_args(a: argparse.Namespace):
    from sweeps.classify import parse_set
    from sweeps.detect_config import SETTINGS, load_config, smoke, with_overrides

    cfg = load_config(a.config)
    given = vars(a)
    out: dict[str, dict] = {"settings": {}, "space": {}}
    flags: list[str] = []
    for flag, (where, key) in OVERRIDES.items():
        name = flag[2:].replace("-", "_")
        if name in given:
            out[where][key] = given[name]
            flags.append(flag)
    if "lr_range" in given:
        out["space"]["lr0"] = {"loguniform": list(a.lr_range)}
        flags.append("--lr-range")
    if given.get("no_asha"):
        out["settings"]["asha"] = False
        flags.append("--no-asha")
    for item in given.get("set", []):
        key, value = parse_set(item)
        out["settings" if key in SETTINGS else "space"][key] = value
        flags.append(f"--set {key}")
    cfg = with_overrides(cfg, out["settings"], out["space"], flags)
    return smoke(cfg) if given.get("smoke_test") else cfg


def log(msg: str) -> None:
    print(f"[sweep] {msg}", flush=True)


# -- checks before anything starts ------------------------------------------------------------------------


def prepare_data(cfg) -> tuple[dict, dict]:
    """(what the trials are given to find the data, a summary for the sweep's run). The generated data
    is made here once (the trials on this node reuse it); a user's data.yaml is checked by Ultralytics."""
    from trainables.shapes import CLASSES, ShapesSpec, generate

    if cfg.data is None:
        spec = ShapesSpec(
            train=cfg.shapes_train, val=max(8, cfg.shapes_train // 4), test=max(8, cfg.shapes_train // 4), seed=cfg.seed
        )
        data_yaml = generate(Path(cfg.data_cache), spec, progress=log)
        summary = {
            "data_source": f"generated shapes ({data_yaml.parent})",
            "data_name": "shapes",
            "num_classes": len(CLASSES),
            "classes": ",".join(CLASSES),
            "train_size": spec.train,
            "val_size": spec.val,
            "test_size": spec.test,
        }
        return {"shapes": dataclasses.asdict(spec), "root": str(Path(cfg.data_cache).expanduser().resolve())}, summary
    from trainables.detection import load_ultralytics

    load_ultralytics()
    from ultralytics.data.utils import check_det_dataset

    try:
        info = check_det_dataset(cfg.data, autodownload=False)
    except Exception as e:  # noqa: BLE001 - Ultralytics raises several kinds; the message names what is missing
        raise FileNotFoundError(f"--data {cfg.data}: not a usable YOLO dataset: {str(e).strip()[:600]}") from None
    sizes = {}
    for split in ("train", "val", "test"):
        if info.get(split):
            paths = info[split] if isinstance(info[split], list) else [info[split]]
            sizes[split] = sum(_count_images(Path(p)) for p in paths)
    if not sizes.get("train") or not sizes.get("val"):
        raise FileNotFoundError(f"--data {cfg.data}: needs images in its train and val splits, found {sizes}")
    if not sizes.get("test"):
        log(f"note: {cfg.data} has no test split: test metrics are left out of the runs and the table")
    names = info["names"]
    summary = {
        "data_source": str(cfg.data),
        "data_name": Path(cfg.data).stem,
        "num_classes": len(names),
        "classes": ",".join(str(n) for n in names.values())[:500],
        **{f"{k}_size": v for k, v in sizes.items()},
    }
    return {"yaml": str(cfg.data)}, summary


def _count_images(path: Path) -> int:
    from ultralytics.data.utils import IMG_FORMATS

    if path.is_file():  # a .txt list of image paths
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    return sum(1 for p in path.rglob("*") if p.suffix.lower().lstrip(".") in IMG_FORMATS)


def resolve_weights(cfg):
    """'pretrained' becomes a local file per model (Ultralytics' COCO .pt, downloaded here, once); a
    local file or directory must hold every model's weights. Trials only ever read local files."""
    from sweeps.config import Dim
    from trainables.detection import model_source

    dim = cfg.dim("weights")
    resolved = []
    for weights in dim.candidates():
        if weights == "pretrained":
            from ultralytics.utils.downloads import attempt_download_asset

            cache = Path(cfg.data_cache).expanduser().parent / "weights"
            cache.mkdir(parents=True, exist_ok=True)
            for model in cfg.models:
                target = cache / f"{model}.pt"
                if not target.is_file():
                    log(f"downloading Ultralytics' pretrained {model}.pt to {cache}")
                    try:
                        got = Path(attempt_download_asset(str(target)))
                    except Exception as e:  # noqa: BLE001 - no network, no such release asset, ...
                        raise FileNotFoundError(
                            f"--weights pretrained: could not download {model}.pt ({str(e)[:200]}). It needs "
                            f"the network; or put the file in {cache}, or pass --weights /path/to/dir."
                        ) from None
                    if not got.is_file():
                        raise FileNotFoundError(f"--weights pretrained: {model}.pt was not downloaded to {cache}")
            weights = str(cache)
        elif weights != "none":
            for model in cfg.models:
                import trainables.detection as D

                model_source(D.DetectTrialConfig(model=model, weights=weights))  # raises naming the file
        resolved.append(weights)
    if tuple(resolved) == tuple(dim.candidates()):
        return cfg
    new = Dim("fixed", (resolved[0],)) if len(resolved) == 1 else Dim("choice", tuple(resolved))
    return dataclasses.replace(cfg, space={**cfg.space, "weights": new})


def check_models(cfg, num_classes: int) -> None:
    """Every model at every image size is built and runs one forward pass here, before Ray starts."""
    import torch

    from trainables.detection import load_ultralytics

    load_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    for model in cfg.models:
        try:
            net = DetectionModel(f"{model}.yaml", nc=num_classes, verbose=False).eval()
        except Exception as e:  # noqa: BLE001 - a family this Ultralytics version does not ship
            raise ValueError(f"space.model: Ultralytics cannot build {model}.yaml: {str(e)[:200]}") from None
        for size in cfg.dim("imgsz").candidates():
            with torch.inference_mode():
                net(torch.zeros(1, 3, size, size))


# -- the sweep --------------------------------------------------------------------------------------------


def run_detect(cfg) -> int:
    import mlflow
    import ray
    from ray import tune

    from sweeps.credentials import save_credentials
    from sweeps.run import CHECK_ERRORS, RECIPE_FILE, SWEEP_FILE, check_storage, fail, start_ray, storage_root
    from sweeps.space import num_trials
    from sweeps.storage import storage_filesystem
    from sweeps.tracking import check_tracking_store, shown, start_parent_run, use_tracking_uri

    t0 = time.perf_counter()
    tracking_uri, credentials = use_tracking_uri(cfg.tracking_uri)
    if cfg.tracking_uri:  # the recipe as run, saved in the sweep directory and pickled by Tune: no credentials
        cfg = dataclasses.replace(cfg, tracking_uri=tracking_uri)
    problems, data, summary = [], None, None
    for check in (lambda: check_tracking_store(tracking_uri), lambda: check_storage(storage_root(cfg))):
        try:
            check()
        except CHECK_ERRORS as e:
            problems.append(str(e))
    try:
        data, summary = prepare_data(cfg)
        cfg = resolve_weights(cfg)
        check_models(cfg, summary["num_classes"])
    except CHECK_ERRORS as e:
        problems.append(str(e))
    if problems:
        head = f"{len(problems)} problems, nothing has started:\n- " if len(problems) > 1 else ""
        return fail(head + "\n- ".join(problems))
    log(
        f"data: {summary['data_source']}: {summary['num_classes']} classes, train/val/test = "
        f"{summary['train_size']}/{summary['val_size']}/{summary.get('test_size', 0)} images"
    )
    experiment = cfg.experiment or f"detect-{summary['data_name']}"
    sweep_name = time.strftime(f"{SWEEP_PREFIX}-%Y%m%d-%H%M%S")
    exp_dir = storage_root(cfg) / sweep_name
    log(f"MLflow: {shown(tracking_uri)}, experiment {experiment!r}")
    if error := start_ray(cfg):
        return fail(error)
    n = num_trials(cfg)
    log(f"Ray: {ray.cluster_resources()}; {n} trials, up to {cfg.max_epochs} epochs each")
    log(f"search: {cfg.search} (max val_mAP50_95), ASHA {'on' if cfg.asha else 'off'}, recipe {cfg.source}")

    with start_parent_run(experiment, sweep_name, PROJECT_ROOT) as parent:
        mlflow.set_tags({"task": "detect", "version.ultralytics": _version("ultralytics")})
        mlflow.log_params({**cfg.flat(), **summary, "trials_planned": n})
        searched = ",".join(k for k, d in cfg.space.items() if d.searched)
        mlflow.log_params({"searched": searched or "model"})
        mlflow.log_dict(cfg.to_yaml_dict(addresses=False), RECIPE_FILE)
        exp_dir.mkdir(parents=True, exist_ok=True)
        (exp_dir / RECIPE_FILE).write_text(_yaml(cfg.to_yaml_dict()))
        sweep = {
            "task": "detect",
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "experiment_id": parent.info.experiment_id,
            "parent_run_id": parent.info.run_id,
            "sweep_name": sweep_name,
            "data": data,
        }
        (exp_dir / SWEEP_FILE).write_text(json.dumps(sweep, indent=2))
        if kept := save_credentials(exp_dir, credentials):
            log(f"the credentials of {shown(tracking_uri)}: kept for --resume in {kept} (mode 0600), nowhere else")
        log(f"sweep directory: {exp_dir} (resume an interrupted sweep with --resume {exp_dir})")
        tuner = tune.Tuner(
            trainable_of(cfg, data),
            tune_config=tune.TuneConfig(
                search_alg=_search(cfg),
                scheduler=_scheduler(cfg),
                num_samples=n,
                trial_dirname_creator=lambda t: f"{t.trial_id}-{t.config['model']}",
                reuse_actors=True,  # torch and Ultralytics imported once per slot (see sweeps.run.build_tuner)
            ),
            run_config=tune.RunConfig(
                name=sweep_name,
                storage_path=str(storage_root(cfg)),
                storage_filesystem=storage_filesystem(),  # files replaced whole: see sweeps.storage
                callbacks=_callbacks(cfg, sweep, exp_dir),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                verbose=1,
            ),
        )
        return finish(cfg, tuner, sweep, exp_dir, t0)


def _search(cfg):
    from sweeps.space import search_algorithm

    return search_algorithm(cfg)


def _scheduler(cfg):
    from sweeps.space import scheduler

    return scheduler(cfg)


def _callbacks(cfg, sweep: dict, exp_dir: Path) -> list:
    from sweeps.run import StorageWatch
    from sweeps.trial_runs import DetectionTrialCallback

    callback = DetectionTrialCallback(
        sweep["tracking_uri"],
        sweep["experiment_id"],
        sweep["parent_run_id"],
        sweep["sweep_name"],
        cfg.tracking_wait_s,
        str(exp_dir),
    )
    return [callback, StorageWatch()]


def trainable_of(cfg, data: dict):
    from ray import tune

    from trainables.trainable import train_detector

    return tune.with_resources(
        tune.with_parameters(train_detector, data=data), {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}
    )


def finish(cfg, tuner, sweep: dict, exp_dir: Path, t0: float) -> int:
    import mlflow

    from analysis.detect_report import build_detection_report
    from analysis.report import default_device
    from sweeps.run import fit_trials
    from sweeps.tracking import ui_hint

    results, stopped = fit_trials(cfg, tuner, exp_dir, script="detect.py")
    if results is None:
        return stopped
    errors = [r for r in results if r.error]
    out_dir = Path(cfg.output_dir) / sweep["experiment"] / sweep["sweep_name"]
    parent = mlflow.get_run(sweep["parent_run_id"])
    report = build_detection_report(
        sweep["experiment_id"], parent, out_dir, default_device(), progress=log, timing_s=cfg.timing_s
    )
    print()
    print(report.markdown.read_text().split("\n## ")[0])
    log(f"done in {time.perf_counter() - t0:.0f} s")
    log(f"comparison report: {report.html} (also {report.markdown.name}, {report.csv.name}; logged to the parent run)")
    if not report.table.empty:
        top = report.table.iloc[0]
        log(f"best: {top['model']} (run {top['run_id']}); its weights: runs:/{top['run_id']}/weights/best.pt")
    log(f"trial checkpoints: {exp_dir}")
    log(f"browse the runs: {ui_hint(mlflow.get_tracking_uri(), sweep['experiment_id'], sweep['parent_run_id'])}")
    return 1 if errors else 0


def resume_detect(exp_dir: Path, address: str | None) -> int:
    from ray import tune

    from sweeps.credentials import restore_credentials, untrusted
    from sweeps.detect_config import ConfigError, load_config
    from sweeps.run import (
        CHECK_ERRORS,
        RECIPE_FILE,
        SWEEP_FILE,
        check_storage,
        fail,
        forget_unsaved_trials,
        saved_trials,
        start_ray,
    )
    from sweeps.storage import storage_filesystem
    from sweeps.tracking import check_tracking_store, reopen_parent_run, shown, use_tracking_uri

    t0 = time.perf_counter()
    exp_dir = exp_dir.expanduser().resolve()
    if not (exp_dir / SWEEP_FILE).is_file():
        return fail(f"--resume {exp_dir}: not a sweep directory (no {SWEEP_FILE})")
    if refused := untrusted(exp_dir):
        return fail(refused)
    log(
        f"--resume unpickles the sweep's saved Tune state (tuner.pkl, searcher and experiment state in {exp_dir}): "
        "whoever can write there can run code as you"
    )
    sweep = json.loads((exp_dir / SWEEP_FILE).read_text())
    if sweep.get("task") != "detect":
        return fail(f"--resume {exp_dir}: a classification sweep; resume it with python sweeps/classify.py")
    try:
        cfg = load_config(exp_dir / RECIPE_FILE)
    except ConfigError as e:
        return fail(str(e))
    if address is not None:
        cfg = dataclasses.replace(cfg, address=address)
    restore_credentials(exp_dir)
    tracking_uri, _ = use_tracking_uri(sweep["tracking_uri"])
    try:
        check_tracking_store(tracking_uri)
        check_storage(exp_dir)
    except CHECK_ERRORS as e:
        return fail(str(e))
    if error := start_ray(cfg):
        return fail(error)
    log(f"resuming {sweep['sweep_name']} from {exp_dir}; MLflow: {shown(tracking_uri)}")
    with reopen_parent_run(sweep["parent_run_id"]):
        forget_unsaved_trials(saved_trials(exp_dir), sweep["parent_run_id"])
        tuner = tune.Tuner.restore(
            str(exp_dir),
            trainable=trainable_of(cfg, sweep["data"]),
            storage_filesystem=storage_filesystem(),
            resume_unfinished=True,
            resume_errored=False,
        )
        return finish(cfg, tuner, sweep, exp_dir, t0)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    import importlib.util

    if argv is None:  # this process's own command line: a password or token on it moves to the environment
        from sweeps.credentials import without_credentials_on_command_line

        without_credentials_on_command_line()
    try:
        found = importlib.util.find_spec("ultralytics") is not None
    except ImportError:
        found = False
    if not found:
        print(
            'error: detection sweeps need Ultralytics: pip install -e ".[detect]" (AGPL-3.0; classification '
            "works without it)",
            file=sys.stderr,
        )
        return 2
    from trainables.detection import load_ultralytics

    load_ultralytics()  # first, before any other Ultralytics import: offline switches, no process-wide side effects
    from sweeps.detect_config import ConfigError

    args = parse_args(argv)
    if "resume" in args:
        others = [k for k in vars(args) if k not in ("resume", "address", "config")]
        if others:
            flags = ", ".join("--" + k.replace("_", "-") for k in others)
            print(f"error: --resume continues a sweep as it was set up; {flags} cannot change it", file=sys.stderr)
            return 2
        return resume_detect(Path(args.resume), getattr(args, "address", None))
    try:
        cfg = config_from_args(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_detect(cfg)


if __name__ == "__main__":
    sys.exit(main())
