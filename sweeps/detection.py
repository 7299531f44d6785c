"""The object-detection task: Ultralytics YOLO models on a YOLO dataset (or generated shapes), one row
per model."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import itertools
import random
from pathlib import Path
from typing import Any

from sweeps.detect_config import DETECT_CONFIG, DetectSweepConfig
from sweeps.recipe import ConfigError, Dim
from sweeps.task import Prepared, Task
from trainables import contracts as C


def prepare(cfg: DetectSweepConfig, log) -> Prepared:
    """The data (generated here once, on this node, or a user's data.yaml checked by Ultralytics),
    Ultralytics' pretrained weights made local files, and every model at every image size run once."""
    cfg = resolve_weights(cfg, log)  # first: a missing weights file is said before any data is made or read
    data, summary, info, left_out = prepare_data(cfg, log)
    check_models(cfg, summary["num_classes"])
    line = (
        f"data: {summary['data_source']}: {summary['num_classes']} classes, train/val/test = "
        f"{summary['train_size']}/{summary['val_size']}/{summary.get('test_size', 0)} images"
    )
    if "train_boxes" in summary:
        line += f", {summary['train_boxes']}/{summary['val_boxes']}/{summary.get('test_boxes', 0)} boxes"

    def record() -> None:  # on the sweep's run: the pairs skip_bad_images left out
        import mlflow

        if left_out:
            mlflow.log_text("".join(f"{m}\n" for m in left_out), C.SKIPPED_FILE)

    return Prepared(data, summary["data_name"], summary, line, fingerprint(info), cfg=cfg, record=record)


def prepare_data(cfg: DetectSweepConfig, log) -> tuple[dict, dict, dict, list[str]]:
    """(what the trials are given to find the data, a summary for the sweep's run, the dataset as
    Ultralytics' check_det_dataset read it, the image/label pairs left out under skip_bad_images)."""
    from trainables.detection import load_ultralytics
    from trainables.shapes import CLASSES, ShapesSpec, generate

    load_ultralytics()
    from ultralytics.data.utils import check_det_dataset

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
        root = str(Path(cfg.data_cache).expanduser().resolve())
        info = check_det_dataset(str(data_yaml), autodownload=False)
        data = {"shapes": dataclasses.asdict(spec), "root": root}  # each node makes the same files, same paths
        return {**data, **drawn(cfg, list(map(str, images(info, "train"))), summary, log)}, summary, info, []
    try:
        info = check_det_dataset(cfg.data, autodownload=False)
    except Exception as e:  # noqa: BLE001 - Ultralytics raises several kinds; the message names what is missing
        raise FileNotFoundError(f"--data {cfg.data}: not a usable YOLO dataset: {str(e).strip()[:600]}") from None
    try:
        files = {split: images(info, split) for split in ("train", "val", "test") if info.get(split)}
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--data {cfg.data}: {e}") from None
    if not files.get("train") or not files.get("val"):
        sizes = {split: len(f) for split, f in files.items()}
        raise FileNotFoundError(f"--data {cfg.data}: needs images in its train and val splits, found {sizes}")
    if not files.get("test"):
        log(f"note: {cfg.data} has no test split: test metrics are left out of the runs and the table")
    for a, b in itertools.combinations(files, 2):
        if shared := set(map(Path.resolve, files[a])) & set(map(Path.resolve, files[b])):
            log(
                f"warning: {cfg.data}: the {a} and {b} splits share {len(shared)} image(s) (e.g. {min(shared)}): "
                f"scores on them are optimistic; give each split its own images"
            )
    boxes, left_out = check_labels(cfg, info, files, log)
    dropped = {split: sum(m.startswith(f"{split}: ") for m in left_out) for split in files}
    names = info["names"]
    summary = {
        "data_source": str(cfg.data),
        # the experiment's name: a file named data.yaml (as exports name it) is called by its folder's name
        "data_name": name if (name := Path(cfg.data).stem) != "data" else Path(cfg.data).parent.name,
        "num_classes": len(names),
        "classes": ",".join(str(n) for n in names.values())[:500],
        **{f"{k}_size": len(v) - dropped[k] for k, v in files.items()},
        **{f"{k}_boxes": sum(v.values()) for k, v in boxes.items()},
        **({"skipped_images": len(left_out)} if left_out else {}),
    }
    # What a trial needs beyond the file (trainables.detection.trial_dataset): the dataset root as resolved
    # here (a relative ``path:`` is relative to where Ultralytics runs); a split given as .txt lists, as its
    # files (a line that is neither absolute nor './' is read from where Ultralytics runs too); and under
    # train_limit the training images drawn.
    data: dict[str, Any] = {"yaml": str(cfg.data), "path": str(Path(info["path"]).resolve())}
    data |= {
        split: list(map(str, files[split])) for split in files if any(Path(p).is_file() for p in _paths(info, split))
    }
    if chosen := drawn(cfg, list(boxes["train"]), summary, log):  # the files images() found: absolute
        summary["train_boxes"] = sum(boxes["train"][f] for f in chosen["train"])
        data |= chosen
    return data, summary, info, left_out


def drawn(cfg: DetectSweepConfig, usable: list[str], summary: dict, log) -> dict[str, list[str]]:
    """Under ``train_limit`` (below the usable training images): {"train": that many of them, drawn with the
    seed}, with the summary's train_size made that; else {}."""
    if cfg.train_limit is None or cfg.train_limit >= len(usable):
        return {}
    log(f"data: train_limit: training on {cfg.train_limit} of the {len(usable)} training images (drawn with the seed)")
    summary["train_size"] = cfg.train_limit
    return {"train": sorted(random.Random(cfg.seed).sample(usable, cfg.train_limit))}


def images(info: dict, split: str) -> list[Path]:
    """The image files of one split of a checked dataset, found as Ultralytics' dataset finds them
    (``BaseDataset.get_img_files``): folders searched whole, and .txt lists, in which a path starting
    with './' is relative to the list (any other relative one to where this runs: made absolute here)."""
    from ultralytics.data.utils import IMG_FORMATS

    out: list[Path] = []
    for p in map(Path, _paths(info, split)):
        if p.is_dir():  # glob, as Ultralytics: hidden files and folders (._a.jpg, .ipynb_checkpoints/) are not read
            found = glob.glob(str(Path(glob.escape(p)) / "**" / "*.*"), recursive=True)
            out += sorted(Path(f) for f in found if f.rpartition(".")[-1].lower() in IMG_FORMATS)
        elif p.is_file():
            listed = p.read_text(encoding="utf-8-sig").strip().splitlines()
            listed = [str(p.parent / x[2:]) if x.startswith("./") else x for x in map(str.strip, listed)]
            out += [Path(x).absolute() for x in listed if x.rpartition(".")[-1].lower() in IMG_FORMATS]
        else:
            raise FileNotFoundError(f"its {split} split, {p}, does not exist")
    return out


def _paths(info: dict, split: str) -> list[str]:
    """What a checked dataset gives for a split: folders, .txt lists or image files."""
    return info[split] if isinstance(info[split], list) else [info[split]]


def check_labels(cfg: DetectSweepConfig, info: dict, files: dict[str, list[Path]], log) -> tuple[dict, list[str]]:
    """Every image and its label file read as Ultralytics' trainer will read them (``read_as_trainer``),
    here, before Ray starts: ({split: {image: its boxes}} of the pairs kept, '<split>: <why>' for each pair
    left out). A pair it would
    drop (an image it cannot read, a class id beyond the names, coordinates not in [0, 1], a line of the
    wrong width) stops the sweep, naming the files, unless ``skip_bad_images``; a train or val split
    without a single box does too (every trial's mAP would be 0)."""
    from trainables.ultralytics_compat import read_as_trainer

    if (total := sum(map(len, files.values()))) >= 1000:
        log(f"data: reading {total} images and their labels as Ultralytics' trainer will")
    boxes: dict[str, dict[str, int]] = {}
    bad: list[str] = []
    for split, found in files.items():
        read = read_as_trainer([str(f) for f in found], len(info["names"]))
        boxes[split] = {str(f): n for f, (n, _) in zip(found, read, strict=True) if n is not None}
        bad += [f"{split}: {why}" for n, why in read if n is None]
    if bad and not cfg.skip_bad_images:
        listed = "".join(f"\n  {m}" for m in bad[:10]) + (f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ValueError(
            f"--data {cfg.data}: {len(bad)} image/label pair(s) that Ultralytics would leave out:{listed}\n"
            "Fix them, or set skip_bad_images: true (--set skip_bad_images=true) to train without them."
        )
    if bad:
        log(f"skip_bad_images: {len(bad)} image/label pair(s) left out, listed in the run's {C.SKIPPED_FILE}")
    if empty := [split for split in ("train", "val") if not sum(boxes[split].values())]:
        raise ValueError(
            f"--data {cfg.data}: no labelled box in its {' or '.join(empty)} split "
            f"({sum(len(files[s]) for s in empty)} images): every trial's mAP would be 0"
        )
    return boxes, bad


def fingerprint(info: dict) -> str:
    """SHA-256 over every split's image names and sizes and every label file's bytes: a resumed sweep
    refuses a dataset whose splits changed under it. ``info``: check_det_dataset's reading of it."""
    from ultralytics.data.utils import img2label_paths

    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        if not info.get(split):
            continue
        files = images(info, split)
        for image, label in zip(files, img2label_paths([str(f) for f in files]), strict=True):
            size = image.stat().st_size if image.is_file() else -1  # a listed file that is missing (skip_bad_images)
            h.update(f"{split}\0{image.name}\0{size}\0".encode())
            h.update(Path(label).read_bytes() if Path(label).is_file() else b"-")
    return h.hexdigest()[:16]


def resolve_weights(cfg: DetectSweepConfig, log) -> DetectSweepConfig:
    """'pretrained' becomes a local file per model (Ultralytics' COCO .pt, downloaded here, once); a
    local file or directory must hold every model's weights. Trials only ever read local files."""
    import trainables.detection as D

    dim = cfg.dim("weights")
    resolved = []
    for weights in dim.candidates():
        if weights == "pretrained":
            weights = str(_download_pretrained(cfg, log))
        elif weights != "none":
            for model in cfg.models:
                D.model_source(D.DetectTrialConfig(model=model, weights=weights))  # raises naming the file
        resolved.append(weights)
    if tuple(resolved) == tuple(dim.candidates()):
        return cfg
    new = Dim("fixed", (resolved[0],)) if len(resolved) == 1 else Dim("choice", tuple(resolved))
    return dataclasses.replace(cfg, space={**cfg.space, "weights": new})


def _download_pretrained(cfg: DetectSweepConfig, log) -> Path:
    from trainables.detection import load_ultralytics

    load_ultralytics()  # first, before any other Ultralytics import
    from ultralytics.utils.downloads import attempt_download_asset

    cache = Path(cfg.data_cache).expanduser().parent / "weights"
    cache.mkdir(parents=True, exist_ok=True)
    for model in cfg.models:
        target = cache / f"{model}.pt"
        if target.is_file():
            continue
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
    return cache


def check_models(cfg: DetectSweepConfig, num_classes: int) -> None:
    """Every model at every image size is built and runs one forward pass here, before Ray starts."""
    import torch

    from trainables.detection import load_ultralytics

    load_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    for model in cfg.models:
        try:
            net = DetectionModel(f"{model}.yaml", nc=num_classes, verbose=False).eval()
        except Exception as e:  # noqa: BLE001 - a family this Ultralytics version does not ship
            raise ConfigError(f"space.model: Ultralytics cannot build {model}.yaml: {str(e)[:200]}") from None
        for size in cfg.dim("imgsz").candidates():
            with torch.inference_mode():
                net(torch.zeros(1, 3, size, size))


def report(cfg: DetectSweepConfig, sweep: dict, out_dir: Path, log):
    import mlflow

    from analysis.detect_report import build_detection_report
    from analysis.report import default_device

    parent = mlflow.get_run(sweep["parent_run_id"])
    return build_detection_report(
        sweep["experiment_id"], parent, out_dir, default_device(), progress=log, timing_s=cfg.timing_s
    )


def best_weights(cfg: DetectSweepConfig, sweep: dict, report) -> list[str]:
    if report.table.empty:
        return []
    from analysis.detect_report import SELECT

    run = report.table.iloc[0]["run_id"]
    weights = f"runs:/{run}/{C.WEIGHTS_DIR}/{C.DETECT_WEIGHTS_FILE}"
    said = [f"best: {report.table.iloc[0]['model']} (run {run}); its weights: {weights}"]
    top = report.table[SELECT].max()
    if not top > 0:  # (NaN included) a tie of models that learned nothing: the first row is no winner
        rows = len(report.table)
        what = f"no model reached a validation mAP50-95 above 0 ({rows} rows): none is better than another"
        said.append(
            f"warning: {what if rows > 1 else 'its validation mAP50-95 is 0: it found no object'}. Train longer "
            "(max_epochs), on more images, or from pretrained weights."
        )
    elif (tied := int((report.table[SELECT] == top).sum())) > 1:
        said.append(f"warning: {tied} rows tie at the best validation mAP50-95 ({top:.4f}): the first is shown")
    return said


def tags() -> dict[str, str]:
    from importlib.metadata import version

    return {"version.ultralytics": version("ultralytics")}


def _trainable():
    from trainables.trainable import train_detector

    return train_detector


def _callback(*args: Any, **kwargs: Any):
    from sweeps.trial_runs import DetectionTrialCallback

    return DetectionTrialCallback(*args, **kwargs)


TASK = Task(
    name=C.DETECT_TASK,
    script="detect.py",
    sweep_prefix="detect",
    recipe=DetectSweepConfig,
    default_recipe=DETECT_CONFIG,
    trainable=_trainable,
    data_arg="data",
    prepare=prepare,
    callback=_callback,
    report=report,
    conclude=best_weights,
    tags=tags,
)
